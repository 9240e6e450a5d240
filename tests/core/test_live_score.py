import numpy as np
import pytest

from poco_rt.live_score import LiveScorer
from poco_rt.metric import forecast_score


def stream(traces: np.ndarray, forecaster, *, horizon: int, context: int, skip: set[int] = frozenset()) -> LiveScorer:
    scorer = LiveScorer(horizon=horizon, std=traces.std(axis=0))
    for index, frame in enumerate(traces):
        if index in skip:
            continue
        scorer.add_frame(index, frame)
        if index >= context - 1:
            scorer.add_forecast(index, forecaster(index), frame)
    return scorer


def test_live_score_equals_the_offline_metric_on_the_same_windows():
    rng = np.random.default_rng(0)
    traces = rng.normal(size=(40, 3)).cumsum(axis=0)
    horizon, context = 4, 5
    noisy = {i: traces[i + 1 : i + 1 + horizon].T + rng.normal(size=(3, horizon)) for i in range(len(traces) - horizon)}

    def forecaster(i: int) -> np.ndarray:
        return noisy.get(i, np.zeros((3, horizon)))  # the last forecasts are never scored

    scorer = stream(traces, forecaster, horizon=horizon, context=context)
    std = traces.std(axis=0)
    made_at = range(context - 1, len(traces) - horizon)
    expected = forecast_score(
        np.stack([noisy[i] / std[:, None] for i in made_at]),
        np.stack([traces[i + 1 : i + 1 + horizon].T / std[:, None] for i in made_at]),
        np.stack([traces[i] / std for i in made_at]),
    )
    assert scorer.score == pytest.approx(expected)
    assert scorer.scored_forecasts == len(made_at)


def test_forecasts_whose_target_frames_went_missing_are_not_scored():
    traces = np.random.default_rng(1).normal(size=(30, 2))
    scorer = stream(traces, lambda i: np.repeat(traces[i][:, None], 3, axis=1), horizon=3, context=4, skip={20})
    assert scorer.score == pytest.approx(0.0)  # copy-last scores exactly zero
    assert scorer.scored_forecasts == (30 - 3 - 3) - 3 - 1  # 3 forecasts need frame 20, 1 is made at it
