"""What ships in the package: the default bundle, the demo recording, and the demo itself."""

import pytest

from poco_rt.bundle import load_bundle
from poco_rt.cli.main import main
from poco_rt.clients.local_replay import replay
from poco_rt.models.recording import load_recording
from poco_rt.resources import default_bundle_path, demo_recording_path
from poco_rt.server.engine import Engine


def test_the_default_bundle_loads_and_knows_the_demo_sessions():
    bundle = load_bundle(default_bundle_path())
    recording = load_recording(demo_recording_path())
    assert set(recording.session_names) <= set(bundle.sessions)
    assert bundle.manifest["evaluation"]["score"] > 0  # it beat copy-last on its own test split


def test_replaying_held_out_frames_beats_copy_last_with_every_forecast_made():
    bundle = load_bundle(default_bundle_path())
    session = load_recording(demo_recording_path()).sessions[0]
    status = replay(Engine(bundle), session.name, session.traces, frame_rate_hz=session.frame_rate_hz, speed=0)
    assert status.forecasts == session.num_frames - bundle.context_frames + 1
    assert status.score > 0.2


def test_demo_command_runs_to_the_end(capsys: pytest.CaptureFixture[str]):
    assert main(["demo", "--speed", "0", "--seconds", "10"]) == 0
    assert "live score" in capsys.readouterr().out
