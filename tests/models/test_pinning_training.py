"""PINning end to end: N = 200 bump networks learn (p = 0.3) or do not (p = 0); the fast loop agrees
with the plain per-step loop; results do not depend on how networks are batched."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.network import fill_gaussian, frame_steps, frozen_input
from poco_rt.models.pinning.reference import train_reference
from poco_rt.models.pinning.results import ARRAYS_FILE, SUMMARY_FILE, PinningResult, save_result
from poco_rt.models.pinning.targets import bump_target, two_bump_target
from poco_rt.models.pinning.trainer import train_networks
from tests.torchless import BLOCK_TORCH

SHORT = PinningConfig(runs=4, free_runs=1, lesion_runs=1)


@pytest.fixture(scope="module")
def bump200() -> tuple[PinningResult, PinningResult]:
    """p = 0 and p = 0.3 on the N = 200 bump, 125 runs, trained as one batch (about 15 s on 2 cores)."""
    untrained, trained = train_networks(
        bump_target(200), [PinningConfig(plastic_fraction=0.0), PinningConfig(plastic_fraction=0.3)]
    )
    return untrained, trained


def test_p03_network_learns_the_n200_bump_and_p0_does_not(bump200: tuple[PinningResult, PinningResult]):
    untrained, trained = bump200
    assert trained.pvar >= 0.80
    assert untrained.pvar < 0.0
    assert trained.run_pvar[0] < trained.pvar  # it learned: the first pass scores lower than the free ones


def test_removing_the_external_input_or_the_learned_columns_breaks_the_sequence(
    bump200: tuple[PinningResult, PinningResult],
):
    _, trained = bump200
    assert trained.lesion_input_pvar.max() < 0.2  # h = 0: recurrence alone does not carry the sequence
    assert trained.lesion_weights_pvar.max() < 0.0  # J[:, C] = J0[:, C]: back to the untrained network


def test_only_the_plastic_columns_of_j_change(bump200: tuple[PinningResult, PinningResult]):
    untrained, trained = bump200
    changed_columns = np.flatnonzero(np.any(trained.weights != trained.initial_weights, axis=0))
    assert changed_columns.tolist() == trained.plastic_units.tolist()
    assert trained.plastic_units.size == 60
    np.testing.assert_array_equal(untrained.weights, untrained.initial_weights)


def test_networks_of_one_seed_share_j0_and_h_and_have_nested_plastic_sets(
    bump200: tuple[PinningResult, PinningResult],
):
    untrained, trained = bump200
    np.testing.assert_array_equal(untrained.initial_weights, trained.initial_weights)
    np.testing.assert_array_equal(untrained.free_external, trained.free_external)
    (small,) = train_networks(bump_target(200), [dataclasses.replace(SHORT, plastic_fraction=0.1)])
    assert set(small.plastic_units.tolist()) < set(trained.plastic_units.tolist())


def test_free_run_noise_has_the_configured_sd(bump200: tuple[PinningResult, PinningResult]):
    _, trained = bump200
    assert trained.free_noise.std() == pytest.approx(0.5 * np.sqrt(10), rel=0.01)  # 0.5 sqrt(τ / dt)
    assert abs(trained.free_noise.mean()) < 0.01


def test_fast_trainer_matches_the_plain_per_step_loop_without_noise():
    target = bump_target(60, frames=12, frame_interval_s=0.02)  # a 0.22 s trial, short enough to stay in step
    config = PinningConfig(plastic_fraction=0.5, runs=6, free_runs=1, lesion_runs=0, noise_level=0.0)
    (fast,) = train_networks(target, [config])
    plain_pvar, plain_weights = train_reference(target, config)
    np.testing.assert_allclose(fast.run_pvar, plain_pvar, rtol=0, atol=1e-4)
    np.testing.assert_allclose(fast.weights, plain_weights, rtol=0, atol=1e-4)
    assert fast.run_pvar[-1] > fast.run_pvar[0] + 1.0  # the comparison covers real learning


def test_a_network_trains_the_same_alone_in_a_chunk_and_on_worker_threads():
    target = bump_target(40)
    configs = [dataclasses.replace(SHORT, plastic_fraction=p, seed=s) for p, s in ((0.2, 0), (0.5, 1), (0.3, 2))]
    alone = [train_networks(target, [c])[0] for c in configs]
    chunked = train_networks(target, configs, networks_per_chunk=2, workers=2)
    for one, other in zip(alone, chunked, strict=True):
        assert one.config == other.config
        np.testing.assert_allclose(one.run_pvar, other.run_pvar, rtol=0, atol=1e-5)
        np.testing.assert_allclose(one.weights, other.weights, rtol=0, atol=1e-4)


def test_the_cue_selects_which_of_two_sequences_one_network_plays():
    (result,) = train_networks(two_bump_target(200), [PinningConfig(plastic_fraction=1.0, lesion_runs=0)])
    assert result.free_conditions.tolist() == [0, 1] * 5
    assert min(result.pvar_by_condition()) >= 0.85


def test_saved_result_holds_the_arrays_and_the_summary(tmp_path: Path):
    target = bump_target(30)
    (result,) = train_networks(target, [SHORT])
    save_result(result, target, tmp_path)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["pvar"] == result.pvar
    assert PinningConfig.from_dict(summary["config"]) == SHORT
    assert summary["plastic_units"] == 3
    with np.load(tmp_path / ARRAYS_FILE) as arrays:
        np.testing.assert_array_equal(arrays["weights"], result.weights)
        assert arrays["free_rates"].shape == (1, 166, 30)
        assert arrays["band_mean"].shape == (59,)
        assert arrays["histogram_trained"].sum() == 900


def test_frame_steps_are_the_integration_steps_nearest_each_frame():
    steps = frame_steps(166, 0.0641, 0.001)
    assert steps[:4].tolist() == [0, 64, 128, 192]
    assert steps[-1] == round(165 * 64.1)
    with pytest.raises(ValueError, match="shorter than dt_s"):
        frame_steps(10, 0.0004, 0.001)


def test_fill_gaussian_gives_standard_normal_draws_and_fills_odd_sizes():
    out = np.full(1_000_001, np.nan, dtype=np.float32)
    fill_gaussian(np.random.default_rng(0), out)
    assert np.isfinite(out).all()
    assert abs(out.mean()) < 0.003 and out.std() == pytest.approx(1.0, abs=0.003)
    assert np.mean(np.abs(out) > 1.959964) == pytest.approx(0.05, abs=0.001)


def test_frozen_input_starts_at_h0_and_settles_to_sd_h0_over_sqrt2():
    config = PinningConfig(input_amplitude=2.0)
    h = frozen_input(30_001, 40, config, np.random.default_rng(0))  # 30 s at dt = 1 ms
    np.testing.assert_array_equal(h[0], np.full(40, 2.0, np.float32))
    assert h[5000:].std() == pytest.approx(2.0 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("plastic_fraction", 1.5, "plastic_fraction must be in"),
        ("runs", 0, "runs must be > 0"),
        ("dt_s", 0.02, "smaller than tau_s"),
        ("noise_level", -1.0, "noise_level must be a finite number >= 0"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: float, match: str):
    with pytest.raises(ValueError, match=match):
        PinningConfig(**{field: value})


def test_train_networks_rejects_a_schedule_without_room_for_the_free_runs():
    with pytest.raises(ValueError, match="free_runs"):
        train_networks(two_bump_target(20), [PinningConfig(runs=8, free_runs=5)])


def test_train_networks_refuses_to_batch_networks_with_different_dynamics():
    with pytest.raises(ValueError, match="differ only in plastic_fraction and seed"):
        train_networks(bump_target(20), [PinningConfig(), PinningConfig(gain=1.2)])


TORCHLESS_SWEEP = (
    BLOCK_TORCH
    + """
from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.sweep import sweep
from poco_rt.models.pinning.targets import bump_target
result = sweep(bump_target(20), [0.5], [0], base=PinningConfig(runs=2, free_runs=1, lesion_runs=0))
print(result.pvar.shape, "torch" in sys.modules)
"""
)


def test_pinning_trains_in_a_process_where_torch_cannot_be_imported():
    completed = subprocess.run(
        [sys.executable, "-c", TORCHLESS_SWEEP], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "(1, 1) False"


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_training_runs_on_one_blas_thread_and_restores_the_count_after():
    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library found in this process")
    seen: list[list[int]] = []
    train_networks(bump_target(20), [SHORT], on_run=lambda _report: seen.append(blas_threads()))
    assert seen == [[1] * len(before)] * 6  # 3 training, 1 free, 2 lesion passes
    assert blas_threads() == before
