import numpy as np
import pytest

from poco_rt.metric import ScoreAccumulator, dataset_score, forecast_score


def test_score_matches_a_hand_computed_example():
    # one window, one unit, P = 2: last frame 1, target [2, 3], forecast [2, 2]
    # MSE_model = (0 + 1) / 2 = 0.5; MSE_copy = (1 + 4) / 2 = 2.5; score = 1 - 0.5 / 2.5 = 0.8
    score = forecast_score(np.array([[[2.0, 2.0]]]), np.array([[[2.0, 3.0]]]), np.array([[1.0]]))
    assert score == pytest.approx(0.8)


def test_copy_last_scores_exactly_zero_and_perfect_scores_one():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(5, 3, 4))
    last = rng.normal(size=(5, 3))
    assert forecast_score(np.repeat(last[..., None], 4, axis=-1), target, last) == pytest.approx(0.0)
    assert forecast_score(target, target, last) == pytest.approx(1.0)


def test_accumulating_window_by_window_equals_all_at_once():
    rng = np.random.default_rng(1)
    forecast, target, last = rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2))
    accumulator = ScoreAccumulator()
    for w in range(6):
        accumulator.add(forecast[w], target[w], last[w])
    assert accumulator.score == pytest.approx(forecast_score(forecast, target, last))


def test_dataset_score_is_the_unweighted_session_mean():
    assert dataset_score([0.1, 0.3]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="at least one"):
        dataset_score([])
