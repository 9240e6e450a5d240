"""One minute of the soak bench: 4 sessions x 1000 units at 30 Hz, 50 WebSocket subscribers, PINning jobs.

The test runs bench/soak.py itself (the code of the 10-minute benchmark, not a copy), as a child
process that starts its own `poco-rt serve`, and asserts on the summary.json it writes what must
hold absolutely, whatever else the machine runs: no frame lost anywhere, every subscriber served
up to the last frame, serving undisturbed by the job, and the server's memory flat within a
generous bound. Latency is the bench's to report, never asserted here: on a shared 2-core
machine it measures the neighbours as much as the server.

The full shape holds on 2 cores, so it is not scaled down. The one engine thread cannot forecast
4 x 1000 units at 30 Hz there (about 13 ms a forecast, 4 per frame interval of 33 ms), and on a busy
machine the WebSocket fan-out falls behind too; neither may lose a frame, which is the point:
backlogs are coalesced into the newest frame's forecast and slow subscribers skip to the newest
(latest-wins), while every frame is still taken, recorded and counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MINUTES, SESSIONS, RATE_HZ, SUBSCRIBERS = 1, 4, 30, 50
FRAMES_PER_SESSION = MINUTES * 60 * RATE_HZ
DISTURBANCES = ("frames_gap_filled", "resets", "frames_dropped", "frames_rejected")  # per session, all must stay 0
# From after warm-up to the end (about 43 s). Five runs here grew by 0.00-0.12 MiB (0.5 MiB between samples at
# most); a leak of a forecast (64 kB) per frame at 4 x 30 Hz passes the bound within 3 s, of a frame (4 kB) within 35 s.
RSS_GROWTH_BOUND_MIB = 16.0


def test_a_minute_of_the_soak_loses_no_frame_and_serves_every_subscriber_to_the_end(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", str(MINUTES), "--out", str(tmp_path)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "samples.jsonl").read_text().count("\n") == summary["samples"]

    sessions = summary["frames"]["per_session"]
    assert len(sessions) == SESSIONS
    for name, frames in sessions.items():
        sent_accepted_recorded = (frames["sent"], frames["accepted"], frames["recorded_on_disk"])
        assert sent_accepted_recorded == (FRAMES_PER_SESSION,) * 3, name
        assert frames["distinct_frames_on_disk"] == FRAMES_PER_SESSION, name
        assert frames["publisher_dropped"] == 0, name
        disturbances = {key: frames[key] for key in DISTURBANCES}
        assert disturbances == dict.fromkeys(DISTURBANCES, 0), name
    serving = summary["serving"]
    assert (serving["recorder_dropped_frames"], serving["recorder_write_errors"]) == (0, 0)
    assert serving["ready_at_every_sample"]

    subscribers = summary["forecasts"]["per_subscriber"]
    assert len(subscribers) == SUBSCRIBERS
    for subscriber in subscribers:
        assert subscriber["error"] is None, subscriber
        assert subscriber["last_frame_index"] == FRAMES_PER_SESSION - 1, subscriber

    jobs = summary["jobs"]
    assert jobs and jobs[0]["started_at"] is not None, jobs
    assert not [job for job in jobs if job["state"] == "failed"], jobs

    rss = summary["memory"]["rss_mib"]
    assert rss["end"] - rss["after_warm_up"] < RSS_GROWTH_BOUND_MIB, rss
