"""The examples in clients/examples/ run as written against a real server: a microscope loop feeds it, a
stimulation controller watches a unit's forecasts and triggers on a threshold crossing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "clients" / "examples"


def test_the_microscope_loop_feeds_a_server_and_the_controller_triggers_on_its_forecasts(start_default_server):
    server = start_default_server(open_sessions={"rig1": "sim00"})
    controller = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "stimulation_controller.py"), "--server", server.url, "--session", "rig1",
         "--unit", "0", "--threshold", "0.5", "--max-triggers", "2", "--idle-timeout", "20"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = [controller.stderr.readline()]
        while lines[-1] and "listening" not in lines[-1]:
            lines.append(controller.stderr.readline())
        assert "listening for 'rig1' forecasts" in lines[-1], "".join(lines)
        microscope = subprocess.run(
            [sys.executable, str(EXAMPLES / "microscope_loop.py"), "--endpoint", server.runtime.endpoints.frames,
             "--session", "rig1", "--rate", "50", "--seconds", "4"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        _, controller_log = controller.communicate(timeout=30)
    finally:
        controller.kill()
        controller.wait()
    assert controller.returncode == 0, controller_log
    assert controller_log.count("TRIGGER unit 0") == 2
    assert "done: 2 triggers" in controller_log
    assert "dropped 0" in microscope.stderr.splitlines()[-1]
    assert server.runtime.session_status("rig1").frames_accepted > 150  # ~200 frames in 4 s at 50 Hz
