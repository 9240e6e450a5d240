"""A stream's live accuracy and conformal intervals, fed frame by frame as the ingest thread feeds them.

The references are computed here from the same frames and forecasts by plain numpy: POCO's score
per unit (poco_rt.metric's formula), the share of targets inside the bounds that were served, and
the share of replayed residual paths that cross a value.
"""

from __future__ import annotations

import numpy as np
import pytest

from poco_rt.server.live_accuracy import AccuracyConfig, LiveAccuracy

N, P = 40, 4


def heavy_tailed_stream(frames: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) AR(1) units with Student-t noise of scales 0.1..5 and (T, N, P) damped copy-last forecasts."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.1, 5.0, N)
    values = np.zeros((frames, N), dtype=np.float32)
    for t in range(1, frames):
        values[t] = 0.9 * values[t - 1] + scale * rng.standard_t(4, N)
    forecasts = values[:, :, None] * 0.9 ** np.arange(1, P + 1, dtype=np.float32)  # (T, N, P)
    return values, forecasts.astype(np.float32)


def run(
    values: np.ndarray, forecasts: np.ndarray, config: AccuracyConfig, std: np.ndarray | None = None, every: int = 1
):
    """Frames in order, a forecast after every `every`-th (as after a backlog, forecast once per several frames)."""
    accuracy = LiveAccuracy(std=np.ones(N, np.float32) * 2 if std is None else std, horizon=P, config=config)
    served = []
    for t in range(len(values)):
        accuracy.observe(t, values[t])
        served.append(accuracy.record(t, forecasts[t]) if t % every == 0 else None)
    return accuracy, served


@pytest.mark.parametrize("every", [1, 3])
def test_served_intervals_cover_their_levels_on_a_heavy_tailed_stream_per_unit(every):
    values, forecasts = heavy_tailed_stream(3000 * every)
    accuracy, served = run(values, forecasts, AccuracyConfig(levels=(0.8, 0.95), warm_up_forecasts=50), every=every)
    inside = {0.8: [], 0.95: []}
    for t, intervals in enumerate(served[: len(values) - P]):
        if intervals is None:
            continue
        targets = values[t + 1 : t + 1 + P].T  # (N, P)
        for level in inside:
            lower, upper = intervals.bounds(level)
            inside[level].append((lower <= targets) & (targets <= upper))
    readout = accuracy.readout()
    for index, level in enumerate((0.8, 0.95)):
        per_unit = np.mean(inside[level], axis=(0, 2))  # (N,)
        assert np.mean(inside[level]) == pytest.approx(level, abs=0.02)
        assert np.abs(per_unit - level).max() < 0.03
        assert readout.coverage_all[index] == pytest.approx(np.mean(inside[level]), abs=0.005)
        np.testing.assert_allclose(readout.coverage[index], per_unit, atol=0.01)


def test_no_interval_is_served_before_every_step_has_its_warm_up_residuals():
    values, forecasts = heavy_tailed_stream(80)
    _, served = run(values, forecasts, AccuracyConfig(warm_up_forecasts=10))
    first = next(t for t, intervals in enumerate(served) if intervals is not None)
    assert first == 10 + P - 1  # step P's first residual comes at frame P
    intervals = served[first]
    lower, upper = intervals.bounds(0.95)
    inner_lower, inner_upper = intervals.bounds(0.8)
    assert np.all(lower <= inner_lower) and np.all(inner_lower <= forecasts[first])
    assert np.all(forecasts[first] <= inner_upper) and np.all(inner_upper <= upper)


@pytest.mark.parametrize("every", [1, 3])
def test_score_per_unit_is_pocos_score_over_the_scored_targets(every):
    values, forecasts = heavy_tailed_stream(300, seed=3)
    accuracy, _ = run(values, forecasts, AccuracyConfig(window_frames=10_000), every=every)  # plain means
    model_sq = np.zeros((P, N))
    copy_sq = np.zeros((P, N))
    for step in range(P):
        made = np.arange(0, len(values) - step - 1, every)  # forecasts whose step-th target arrived
        target = values[made + step + 1] / 2  # normalised by std = 2
        model_sq[step] = np.mean((forecasts[made, :, step] / 2 - target) ** 2, axis=0)
        copy_sq[step] = np.mean((values[made] / 2 - target) ** 2, axis=0)
    expected = 1 - model_sq.mean(axis=0) / copy_sq.mean(axis=0)
    np.testing.assert_allclose(accuracy.readout().score, expected, rtol=1e-3)


def test_crossing_probability_is_the_share_of_replayed_paths_that_cross():
    values, forecasts = heavy_tailed_stream(200, seed=5)
    std = np.linspace(1.0, 3.0, N).astype(np.float32)
    accuracy, _ = run(values, forecasts, AccuracyConfig(crossing_paths=16), std=std)
    forecast, unit = forecasts[-1], 7
    paths = np.stack([values[t + 1 : t + 1 + P, unit] - forecasts[t, unit] for t in range(200 - 16, 200 - P)])
    threshold = float(forecast[unit].max() + np.median(paths))
    crossing = ((forecast[unit] + paths) >= threshold).any(axis=1).mean()  # the complete paths: 12 of 16
    assert accuracy.complete_paths == 16 - P
    assert accuracy.crossing_probability(forecast, unit=unit, value=threshold, above=True) == pytest.approx(
        crossing, abs=1e-3 * abs(threshold)
    )


def test_reset_forgets_the_old_models_residuals_and_takes_the_new_std():
    values, forecasts = heavy_tailed_stream(100)
    accuracy, _ = run(values, forecasts, AccuracyConfig(warm_up_forecasts=5))
    assert accuracy.calibrated and accuracy.readout().scored_frames == 99
    accuracy.reset(std=np.full(N, 4.0, dtype=np.float32))
    assert not accuracy.calibrated
    assert accuracy.readout().scored_frames == 0 and accuracy.complete_paths == 0
    assert np.isnan(accuracy.readout().score).all()
    assert accuracy.crossing_probability(forecasts[-1], unit=0, value=0.0, above=True) is None
    with pytest.raises(ValueError, match=r"^std has shape \(3,\); this stream has 40 units$"):
        accuracy.reset(std=np.ones(3, dtype=np.float32))


def test_a_forecast_is_scored_only_against_the_frames_it_covers():
    values, forecasts = heavy_tailed_stream(40)
    accuracy = LiveAccuracy(std=np.ones(N, np.float32), horizon=P, config=AccuracyConfig())
    for t in range(20):
        accuracy.observe(t, values[t])
        accuracy.record(t, forecasts[t])
    accuracy.observe(20 + P + 1, values[20])  # a long gap: no recorded forecast covers this frame
    assert accuracy.readout().scored_frames == 19


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"levels": (0.8, 0.8)}, r"interval levels \[0.8, 0.8\] repeat a level; give each once"),
        ({"levels": (1.0,)}, r"interval level 1.0 is outside \[0.5, 0.999\]; e.g. 0.8 or 0.95"),
        ({"learning_rate": 0.0}, r"learning_rate=0.0 is outside \(0, 1\]; 0.05 suits most streams"),
        ({"crossing_paths": 0}, r"crossing_paths=0 must be at least 1"),
    ],
)
def test_a_bad_config_names_the_field_and_the_fix(fields, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        AccuracyConfig(**fields)
