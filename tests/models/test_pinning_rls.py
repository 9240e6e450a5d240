"""RLS with one shared P: against closed-form ridge regression and against one RLS per row."""

import numpy as np
import pytest

from poco_rt.models.pinning.rls import rls_update

ROWS, REGRESSORS, SAMPLES = 7, 5, 40


def _problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    initial = rng.standard_normal((ROWS, REGRESSORS))  # W0 (N, M)
    inputs = rng.random((SAMPLES, REGRESSORS))  # r_k in (0, 1), as rates are
    targets = rng.standard_normal((SAMPLES, ROWS))  # f_k
    return initial, inputs, targets


def _run_shared(initial, inputs, targets, p0: float) -> tuple[np.ndarray, np.ndarray]:
    weights = np.asfortranarray(initial.copy())
    inverse_correlation = p0 * np.eye(REGRESSORS, order="F")
    for r, f in zip(inputs, targets, strict=True):
        rls_update(weights, inverse_correlation, r, weights @ r - f)
    return weights, inverse_correlation


@pytest.mark.parametrize("p0", [1.0, 0.25])
def test_shared_p_rls_ends_at_the_ridge_regression_solution_in_float64(p0: float):
    initial, inputs, targets = _problem()
    weights, inverse_correlation = _run_shared(initial, inputs, targets, p0)

    gram = np.eye(REGRESSORS) / p0 + inputs.T @ inputs
    ridge = (initial / p0 + targets.T @ inputs) @ np.linalg.inv(gram)
    np.testing.assert_allclose(weights, ridge, rtol=0, atol=1e-8)
    np.testing.assert_allclose(inverse_correlation, np.linalg.inv(gram), rtol=0, atol=1e-8)


def test_shared_p_equals_one_rls_per_row():
    initial, inputs, targets = _problem(seed=1)
    weights, _ = _run_shared(initial, inputs, targets, p0=1.0)

    for row in range(ROWS):  # textbook RLS for one output, its own P
        w, p = initial[row].copy(), np.eye(REGRESSORS)
        for r, f in zip(inputs, targets[:, row], strict=True):
            gain = p @ r / (1.0 + r @ p @ r)
            w -= (w @ r - f) * gain
            p -= np.outer(gain, r @ p)
        np.testing.assert_allclose(weights[row], w, rtol=0, atol=1e-12)


def test_rls_updates_the_plastic_columns_of_a_float32_matrix_in_place_and_nothing_else():
    rng = np.random.default_rng(2)
    weights = np.asfortranarray(rng.standard_normal((6, 6)).astype(np.float32))
    before = weights.copy()
    inverse_correlation = np.eye(2, order="F")
    rls_update(weights[:, :2], inverse_correlation, np.array([0.5, 0.25], np.float32), np.ones(6, np.float32))

    scale = 1.0 / (1.0 + 0.5**2 + 0.25**2)
    np.testing.assert_allclose(weights[:, :2] - before[:, :2], -scale * np.outer(np.ones(6), [0.5, 0.25]), atol=1e-6)
    np.testing.assert_array_equal(weights[:, 2:], before[:, 2:])


def test_rls_refuses_a_row_major_matrix_rather_than_updating_a_copy():
    weights = np.zeros((4, 3))  # C order: BLAS would update a copy
    with pytest.raises(ValueError, match="Fortran-ordered"):
        rls_update(weights, np.eye(3, order="F"), np.ones(3), np.ones(4))
