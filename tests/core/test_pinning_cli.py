"""`poco-rt pinning` and `poco-rt pinning sweep` on small networks, and the recording target they read."""

import json
from pathlib import Path

import numpy as np
import pytest

from poco_rt.cli.main import main
from poco_rt.models.pinning.targets import recording_target
from poco_rt.models.recording import Recording, Session

FAST = ["--runs", "3", "--free-runs", "1", "--lesion-runs", "0", "--quiet"]


def _recording() -> Recording:
    """4 units over 10 s at 5 Hz: a ramp, a sine, a step, and a constant (which cannot be scaled)."""
    times = np.arange(50) / 5.0
    traces = np.stack([times, np.sin(times), (times > 5).astype(float), np.full_like(times, 3.0)], axis=1)
    session = Session(name="s0", traces=traces, frame_rate_hz=5.0, unit_ids=("a", "b", "c", "d"))
    return Recording(name="rec", sessions=(session,))


def test_pinning_trains_a_bump_network_and_writes_its_results(tmp_path: Path):
    assert main(["pinning", "--target", "bump", "--units", "30", "--p", "0.2", "--out", str(tmp_path), *FAST]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["target"] == "bump30"
    assert summary["plastic_units"] == 6
    assert summary["config"]["runs"] == 3
    assert (tmp_path / "pinning.npz").exists()


def test_pinning_sweep_trains_every_p_and_seed_and_writes_the_curve(tmp_path: Path):
    args = ["pinning", "sweep", "--target", "two-bump", "--units", "20", "--p", "0,0.5", "--seeds", "2"]
    assert main([*args, "--workers", "2", "--out", str(tmp_path), *FAST]) == 0
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert [point["plastic_fraction"] for point in summary["curve"]] == [0.0, 0.5]
    assert [(n["config"]["plastic_fraction"], n["config"]["seed"]) for n in summary["networks"]] == [
        (0.0, 0),
        (0.0, 1),
        (0.5, 0),
        (0.5, 1),
    ]
    with np.load(tmp_path / "sweep.npz") as arrays:
        assert arrays["pvar"].shape == (2, 2)
        assert arrays["pvar"][0].mean() == pytest.approx(summary["curve"][0]["pvar_mean"])


def test_pinning_fits_chosen_units_of_a_recording_file(tmp_path: Path):
    path = tmp_path / "rec.npz"
    _recording().save_npz(path)
    out = tmp_path / "out"
    assert main(["pinning", "--target", str(path), "--units", "0:2,2", "--p", "1", "--out", str(out), *FAST]) == 0
    with np.load(out / "pinning.npz") as arrays:
        assert arrays["target_rates"].shape == (1, 50, 3)
        assert arrays["weights"].shape == (3, 3)


def test_pinning_without_sweep_refuses_several_p_values(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    assert main(["pinning", "--units", "20", "--p", "0.1,0.2", "--out", str(tmp_path), *FAST]) == 2
    assert "train takes one plastic fraction; use 'sweep'" in caplog.text


def test_each_pinning_mode_has_its_own_help(capsys: pytest.CaptureFixture[str]):
    helps = {}
    for mode in ("train", "sweep"):
        with pytest.raises(SystemExit):
            main(["pinning", mode, "--help"])
        helps[mode] = capsys.readouterr().out
    assert "usage: poco-rt pinning sweep" in helps["sweep"] and "--scheduler" in helps["sweep"]
    assert "usage: poco-rt pinning train" in helps["train"] and "--scheduler" not in helps["train"]


def test_recording_target_scales_each_unit_to_0_1_over_the_window_and_resamples():
    target = recording_target(_recording(), units=[0, 1, 2], start_s=2.0, duration_s=4.0, frame_interval_s=0.1)
    assert target.rates.shape == (1, 40, 3)  # 2.0, 2.1, ..., 5.9 s: the window is half-open
    assert target.frame_interval_s == 0.1
    np.testing.assert_allclose(target.rates[0, :, 0], np.linspace(0, 1, 40), atol=1e-6)  # the ramp, rescaled
    np.testing.assert_allclose(target.rates[0].min(axis=0), 0.0)
    np.testing.assert_allclose(target.rates[0].max(axis=0), 1.0)
    np.testing.assert_array_equal(target.initial_state, target.rates[:, 0])


def test_recording_target_names_the_constant_units_it_cannot_scale():
    with pytest.raises(ValueError, match=r"units \[3\] are constant in the window"):
        recording_target(_recording())


def test_recording_target_rejects_units_outside_the_session():
    with pytest.raises(ValueError, match=r"column indices in \[0, 4\)"):
        recording_target(_recording(), units=[0, 4])
