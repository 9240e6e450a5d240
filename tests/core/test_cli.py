"""The documented command line, end to end on simulator data: simulate, train, evaluate, export, predict."""

import json
from pathlib import Path

import numpy as np
import pytest

from poco_rt.bundle import load_bundle
from poco_rt.cli.main import main
from poco_rt.models.recording import load_recording
from poco_rt.server.engine import Engine


def test_simulate_train_evaluate_export_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data, run, bundle_dir = tmp_path / "sim.npz", tmp_path / "run", tmp_path / "bundle"
    assert main(["simulate", "--out", str(data), "--sessions", "2", "--frames", "1100", "--holdout-frames", "100"]) == 0
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(run),
                "--preset",
                "small",
                "--steps",
                "20",
                "--eval-every",
                "10",
                "--batch-windows",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [s["session"] for s in report["sessions"]] == ["sim00", "sim01"]
    assert report["score"] == pytest.approx(np.mean([s["score"] for s in report["sessions"]]))
    assert main(["export", str(run), "--data", str(data), "--out", str(bundle_dir)]) == 0

    bundle = load_bundle(bundle_dir)
    assert bundle.manifest["evaluation"]["score"] == pytest.approx(report["score"])
    holdout = load_recording(tmp_path / "sim.holdout.npz").session("sim00")
    forecast = Engine(bundle).forecast("sim00", holdout.traces[:48])
    assert forecast.shape == (holdout.num_units, 16)
    assert np.all(np.isfinite(forecast))


def test_a_bad_recording_is_an_error_message_not_a_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    (tmp_path / "x.txt").write_text("nope")
    assert main(["train", "--data", str(tmp_path / "x.txt"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "unknown recording format '.txt'" in caplog.text


def test_the_command_line_itself_never_imports_torch():
    """`poco-rt serve` and `demo` run in the serving install, which has no torch."""
    import subprocess
    import sys

    code = "import sys; from poco_rt.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"
