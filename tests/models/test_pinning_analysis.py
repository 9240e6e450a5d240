"""pVar's identities and the connectivity analyses, on inputs whose answers are known by hand."""

import numpy as np
import pytest

from poco_rt.models.pinning import analysis


@pytest.fixture
def target() -> np.ndarray:
    return np.random.default_rng(0).random((30, 8))  # (K, N)


def test_pvar_of_a_perfect_fit_is_one(target: np.ndarray):
    assert analysis.pvar(target, target) == 1.0


def test_pvar_of_predicting_the_one_global_mean_is_zero(target: np.ndarray):
    assert analysis.pvar(target, np.full_like(target, target.mean())) == pytest.approx(0.0, abs=1e-12)


def test_pvar_uses_one_global_mean_not_one_per_unit(target: np.ndarray):
    per_unit_means = np.broadcast_to(target.mean(axis=0), target.shape)
    expected = 1 - np.sum((target - per_unit_means) ** 2) / np.sum((target - target.mean()) ** 2)
    assert analysis.pvar(target, per_unit_means) == pytest.approx(expected, rel=1e-12)
    assert expected > 0  # per-unit means explain the between-unit part of the variance


def test_connectivity_change_is_the_relative_frobenius_distance():
    initial = np.array([[3.0, 0.0], [0.0, 4.0]])  # ‖J0‖ = 5
    trained = initial + np.array([[0.0, 1.0], [0.0, 0.0]])
    assert analysis.connectivity_change(initial, trained) == pytest.approx(0.2)


def test_band_structure_finds_a_feedforward_chain_on_the_first_lower_diagonal():
    units = 6
    chain = np.eye(units, k=-1)  # J[i + 1, i] = 1: unit i drives the unit that peaks after it
    shuffle = np.random.default_rng(1).permutation(units)
    shuffled = chain[np.ix_(shuffle, shuffle)]  # the same chain, units in a scrambled order
    order = np.argsort(shuffle)  # sorting by peak time undoes the scramble
    offsets, mean, sd = analysis.band_structure(shuffled, order)
    assert offsets.tolist() == list(range(-5, 6))
    assert mean.tolist() == [0.0] * 4 + [1.0] + [0.0] * 6
    assert sd.tolist() == [0.0] * 11


def test_peak_order_sorts_units_by_the_frame_of_their_peak():
    rates = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # (K, N): peaks at frames 2, 0, 1
    assert analysis.peak_order(rates).tolist() == [1, 2, 0]


def test_symmetric_energy_fraction_of_symmetric_antisymmetric_and_mixed_matrices():
    symmetric = np.array([[1.0, 2.0], [2.0, 1.0]])
    antisymmetric = np.array([[0.0, 1.0], [-1.0, 0.0]])
    assert analysis.symmetric_energy_fraction(symmetric) == 1.0
    assert analysis.symmetric_energy_fraction(antisymmetric) == 0.0
    assert analysis.symmetric_energy_fraction(np.array([[0.0, 1.0], [0.0, 0.0]])) == 0.5


def test_current_rms_reports_each_part_and_their_sum():
    recurrent, external, noise = np.full((1, 2, 2), 3.0), np.full((1, 2, 2), 4.0), np.zeros((1, 2, 2))
    assert analysis.current_rms(recurrent, external, noise) == {
        "recurrent": 3.0,
        "external": 4.0,
        "noise": 0.0,
        "total": 7.0,
    }


def test_weight_histograms_count_every_entry_once_on_shared_edges():
    rng = np.random.default_rng(2)
    initial = rng.standard_normal((5, 5))
    trained = initial.copy()
    trained[:, [1, 3]] *= 4
    histograms = analysis.weight_histograms(initial, trained, np.array([1, 3]), bins=11)
    assert histograms["edges"][0] == trained.min() and histograms["edges"][-1] == trained.max()
    assert histograms["initial"].sum() == histograms["trained"].sum() == 25
    assert histograms["initial_plastic"].sum() == histograms["trained_plastic"].sum() == 10
