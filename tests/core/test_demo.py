"""What ships in the package: the default bundle, the demo recording, and the demo itself (a real server)."""

import re

import pytest

from poco_rt.bundle import load_bundle
from poco_rt.cli.main import main
from poco_rt.models.recording import load_recording
from poco_rt.resources import default_bundle_path, demo_recording_path


def test_the_default_bundle_loads_and_knows_the_demo_sessions():
    bundle = load_bundle(default_bundle_path())
    recording = load_recording(demo_recording_path())
    assert set(recording.session_names) <= set(bundle.sessions)
    assert bundle.manifest["evaluation"]["score"] > 0  # it beat copy-last on its own test split


def test_the_demo_serves_replays_and_beats_copy_last_on_held_out_frames(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("COLUMNS", "200")  # rich's width off a terminal: the summary on one line
    assert main(["demo", "--speed", "5", "--seconds", "20"]) == 0  # 200 frames at 50 Hz
    out = capsys.readouterr().out
    assert re.search(r"server on http://127\.0\.0\.1:\d+ ", out)
    summary = re.search(r"(\d+) forecasts over 200 frames in [\d.]+ s; live score ([+-]\d\.\d+) against copy-last", out)
    assert summary is not None, out
    assert int(summary[1]) > 100  # of 153 possible: the server coalesces only when it falls behind
    assert float(summary[2]) > 0.2


def test_demo_command_runs_to_the_end_flat_out(capsys: pytest.CaptureFixture[str]):
    assert main(["demo", "--speed", "0", "--seconds", "10"]) == 0
    assert "live score" in capsys.readouterr().out


def test_the_shipped_networks_hold_no_record_of_the_machine_that_exported_them():
    """The exporter writes per-node stack traces with absolute paths; a shipped bundle carries the network only."""
    bundle = default_bundle_path()
    for network in sorted(bundle.glob("*.onnx")):
        content = network.read_bytes()
        assert b'File "' not in content and b"stack_trace" not in content, network.name
