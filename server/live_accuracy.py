"""Live accuracy and calibrated forecast intervals of one stream, measured as its frames arrive.

Legend: N units, P horizon (steps ahead, k = 1..P), L interval levels, W residual paths kept.

A forecast made after frame t covers frames t+1..t+P. Each one the server publishes is recorded
here (`record`), and when frame T arrives (`stage`, then `score_staged` once T's own forecast is
out; `observe` does both) every recorded forecast that targets it is scored: the residual of
step k is frame T minus the forecast made after frame T-k. From those residuals, per unit and
per step:

1. the running error, model and copy-last (frame T-k repeated), as exponentially weighted mean
   squares over about `window_frames` frames, whose ratio is POCO's score (1 - MSE_model /
   MSE_copy-last; poco_rt.metric) as it stands now rather than since the session opened;
2. a conformal interval per level: forecast +- m * s * std, where s is the unit's running mean
   absolute normalised residual |x - f| / std at that step and m tracks the level's quantile of
   the score |x - f| / (s * std) by online quantile tracking (Angelopoulos, Candes and Tibshirani
   2023, "Conformal PID Control for Time Series Prediction", the P term alone):
   `m += learning_rate * (miss - alpha)`, alpha = 1 - level, miss = 1 when the target fell outside
   the interval that was served with that forecast. Its long-run miscoverage is alpha for any score
   sequence, with no distributional assumption and no retraining (their Proposition 1);
3. the coverage those served intervals actually reached, per unit and over all units and steps.

Why quantile tracking: one update per (level, step, unit) per frame, O(L P N), against O(W) per
update for an exact quantile over a sliding window of W residuals (and W N P floats to hold it);
adaptive conformal inference (Gibbs and Candes 2021) would need that window anyway, since it
moves the level fed to a quantile of stored scores. Dividing the score by the unit's own scale s
makes it scale-free, so one learning rate suits every unit and recording and a unit whose errors
grow or shrink is followed by s at once, leaving m only the shape of the distribution to learn.
Every m starts where normal residuals would put it (1.60 at 80 %, 2.46 at 95 %), so the first
intervals are already about right; intervals are served once each step has `warm_up_forecasts`
residuals, and coverage is counted from then on. Residuals are in normalised units (divided by
the calibration's std); bounds are served in raw units.

The probability that a unit crosses a value within the horizon (`crossing_probability`) replays
the last W complete residual paths (all P steps of one forecast, in normalised units) onto the
current forecast: the share of paths that cross. Paths keep the dependence between steps that
per-step quantiles lose.

Memory is preallocated: predictions and served widths are kept in target order, (P + 1, P, N) and
(P + 1, L, P, N) float32, so the forecasts that frame T completes are one contiguous row;
paths are (W, P, N) float16. While every frame gets a forecast nothing of size N is allocated to
score it; after a backlog only the steps that had a forecast are gathered and scored. Scoring and
`record` run on the ingest thread only; readers on other threads may see a half-updated frame's statistics,
which are plain floats, never a broken object. A calibration or network swap changes what the
residuals mean, so the swap path calls `reset()`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np

from poco_rt.wire import ForecastIntervals

MIN_LEVEL, MAX_LEVEL = 0.5, 0.999  # an interval below the median or beyond 1-in-1000 is not what this tracks
MAX_LEVELS = 8
MIN_STD = 1e-6  # the replay tool's floor too: a flat unit does not explode


def _inverse(std: np.ndarray) -> np.ndarray:
    """1 / std, float32, with std floored at MIN_STD: a constant unit's residuals stay finite."""
    return (1.0 / np.maximum(std, MIN_STD)).astype(np.float32)


def _normal_multiplier(level: float) -> float:
    """The level's quantile of |r| / E|r| for normal residuals r: where each tracked multiplier starts."""
    return float(statistics.NormalDist().inv_cdf(0.5 + level / 2) / math.sqrt(2 / math.pi))


def check_levels(levels: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """Levels sorted, each in [MIN_LEVEL, MAX_LEVEL], at most MAX_LEVELS, no duplicates; ValueError otherwise."""
    ordered = tuple(sorted(float(level) for level in levels))
    if len(ordered) > MAX_LEVELS:
        raise ValueError(f"{len(ordered)} interval levels; at most {MAX_LEVELS} are tracked")
    if len(set(ordered)) != len(ordered):
        raise ValueError(f"interval levels {list(ordered)} repeat a level; give each once")
    for level in ordered:
        if not MIN_LEVEL <= level <= MAX_LEVEL:
            raise ValueError(f"interval level {level} is outside [{MIN_LEVEL}, {MAX_LEVEL}]; e.g. 0.8 or 0.95")
    return ordered


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class AccuracyConfig:
    """How a stream's accuracy and intervals are measured (from the server's settings)."""

    enabled: bool = True  # off: no per-frame work, no intervals, no readout
    levels: tuple[float, ...] = (0.8, 0.95)  # interval coverage levels
    learning_rate: float = 0.05  # quantile tracking step, in units of the mean absolute residual
    window_frames: int = 1000  # the running errors' memory (exponential weights); also the scale's
    warm_up_forecasts: int = 50  # residuals per step before coverage is counted and intervals are served
    crossing_paths: int = 64  # W, residual paths kept for crossing probabilities

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", check_levels(self.levels))
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate={self.learning_rate} is outside (0, 1]; 0.05 suits most streams")
        for field in ("window_frames", "warm_up_forecasts", "crossing_paths"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field}={getattr(self, field)} must be at least 1")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class UnitAccuracy:
    """A copy of the live readout, for REST and the dashboard. Arrays are per unit, (N,)."""

    levels: tuple[float, ...]
    scored_frames: int  # frames whose residuals were counted (all steps that had a forecast)
    score: np.ndarray  # (N,) POCO score now, over all steps: 1 - MSE_model / MSE_copy-last; NaN before any
    model_rmse: np.ndarray  # (N,) normalised units
    coverage: np.ndarray  # (L, N) share of targets inside the served intervals, after warm-up; NaN before
    coverage_all: tuple[float, ...]  # (L,) the same over all units and steps
    width: np.ndarray  # (L, N) mean interval half-width over steps now, normalised units
    calibrated: bool  # every step has had warm_up_forecasts residuals: intervals are served


class LiveAccuracy:
    def __init__(self, *, std: np.ndarray, horizon: int, config: AccuracyConfig) -> None:
        std = np.asarray(std, dtype=np.float32)
        if std.ndim != 1 or horizon < 1:
            raise ValueError(f"std must be (N,) and horizon >= 1; got {std.shape} and {horizon}")
        num_units, levels = std.shape[0], config.levels
        self.config = config
        self.horizon = horizon
        self._std = std
        self._inv_std = _inverse(std)
        self._alpha = np.array([1.0 - level for level in levels], dtype=np.float32)[:, None, None]  # (L, 1, 1)
        self._steps = np.arange(horizon)  # step k - 1
        self._ahead = np.arange(1, horizon + 1)  # k
        # Forecasts in target order: row T mod (P + 1) holds, per step, what was forecast for frame T.
        # P + 1 rows, so that recording the forecast made after frame T never overwrites row T, still to score.
        rows = horizon + 1
        self._predicted = np.zeros((rows, horizon, num_units), dtype=np.float32)  # (P + 1 target, P step, N) raw
        self._served = np.zeros((rows, len(levels), horizon, num_units), dtype=np.float32)  # widths, normalised
        self._target_index = np.full((rows, horizon), -1, dtype=np.int64)  # which frame each entry is for
        # Frames a forecast was made after (copy-last), by frame index mod P + 1: frame T and T - P both fit.
        self._origin = np.zeros((horizon + 1, num_units), dtype=np.float32)  # (P + 1, N) raw
        self._staged: int | None = None  # the frame taken but not scored yet
        # Tracked statistics, (P, N) per step and unit unless said.
        self._multiplier = np.zeros((len(levels), horizon, num_units), dtype=np.float32)  # (L, P, N) m
        self._normal_multiplier = np.array([_normal_multiplier(level) for level in levels], dtype=np.float32)[:, None]
        self._width = np.zeros((len(levels), horizon, num_units), dtype=np.float32)  # m * scale, normalised
        self._abs_mean = np.zeros((horizon, num_units), dtype=np.float32)
        self._model_sq = np.zeros((horizon, num_units), dtype=np.float32)
        self._copy_sq = np.zeros((horizon, num_units), dtype=np.float32)
        self._residuals_seen = np.zeros(horizon, dtype=np.int64)  # (P,)
        self._covered = np.zeros((len(levels), num_units), dtype=np.int64)  # (L, N), after warm-up
        self._covered_count = 0  # (unit, step) residuals counted in _covered, per unit
        # Residual paths by forecast, (W, P, N) normalised, and how many steps of each have arrived.
        paths = config.crossing_paths
        self._paths = np.zeros((paths, horizon, num_units), dtype=np.float16)
        self._path_origin = np.full(paths, -1, dtype=np.int64)
        self._path_steps = np.zeros(paths, dtype=np.int64)
        # Per-frame scratch, so that scoring every step allocates nothing of size N.
        self._residual = np.empty((horizon, num_units), dtype=np.float32)
        self._score = np.empty((horizon, num_units), dtype=np.float32)
        self._copy = np.empty((horizon, num_units), dtype=np.float32)
        self._square = np.empty((horizon, num_units), dtype=np.float32)
        self._miss = np.empty((len(levels), horizon, num_units), dtype=np.bool_)
        self._step = np.empty((len(levels), horizon, num_units), dtype=np.float32)
        self._misses = np.empty((len(levels), num_units), dtype=np.int64)
        self._rate = np.empty((horizon, 1), dtype=np.float32)

    @property
    def num_units(self) -> int:
        return self._std.shape[0]

    @property
    def levels(self) -> tuple[float, ...]:
        return self.config.levels

    @property
    def calibrated(self) -> bool:
        return bool(self._residuals_seen.min() >= self.config.warm_up_forecasts)

    def reset(self, *, std: np.ndarray | None = None) -> None:
        """Forget every forecast and statistic: after a swap, the residuals of the old model say nothing.

        `std` (N,): the new calibration's, when the swap changes it (the unit count stays).
        """
        if std is not None:
            self.renormalise(std=std)
        self._target_index.fill(-1)
        self._staged = None
        self._residuals_seen.fill(0)
        self._covered.fill(0)
        self._covered_count = 0
        self._path_origin.fill(-1)
        self._path_steps.fill(0)

    def renormalise(self, *, std: np.ndarray) -> None:
        """Residuals from now on in units of this (N,) std; the statistics are kept (the same forecaster)."""
        std = np.asarray(std, dtype=np.float32)
        if std.shape != self._std.shape:
            raise ValueError(f"std has shape {std.shape}; this stream has {self.num_units} units")
        self._std = std
        self._inv_std = _inverse(std)

    def forget_pending(self) -> None:
        """Drop unscored forecasts but keep the statistics (the frame count restarted; same animal, same model)."""
        self._target_index.fill(-1)
        self._staged = None
        self._path_origin.fill(-1)

    def observe(self, frame_index: int, raw: np.ndarray) -> None:
        """Frame `frame_index`, raw (N,): score every recorded forecast it completes, update the statistics."""
        self.stage(frame_index, raw)
        self.score_staged()

    def stage(self, frame_index: int, raw: np.ndarray) -> None:
        """Keep frame `frame_index` (raw (N,), copied: O(N)) to be scored by `score_staged`.

        The ingest thread stages a frame as it takes it and scores it once the frame's forecast is
        out, so that scoring never delays a forecast. A frame still staged when the next one comes
        (a backlog forecast once, from its newest frame) is scored first.
        """
        if self._staged is not None:
            self.score_staged()
        self._origin[frame_index % (self.horizon + 1)] = raw
        self._staged = frame_index

    def score_staged(self) -> None:
        """Score the staged frame, if any, against every recorded forecast it completes."""
        frame_index, self._staged = self._staged, None
        if frame_index is None:
            return
        row = frame_index % (self.horizon + 1)
        steps = np.flatnonzero(self._target_index[row] == frame_index)  # steps whose forecast for this frame exists
        if steps.size == self.horizon:
            self._score_steps(frame_index, row, _Steps(slice(None), self._steps))
        elif steps.size:  # after a backlog, forecast once per several frames: only these steps, gathered
            self._score_steps(frame_index, row, _Steps(steps, steps))

    def record(self, frame_index: int, forecast: np.ndarray) -> ForecastIntervals | None:
        """`intervals` and `keep` at once: for a caller with nothing to send in between."""
        intervals = self.intervals(forecast)
        self.keep(frame_index, forecast)
        return intervals

    def intervals(self, forecast: np.ndarray) -> ForecastIntervals | None:
        """The (N, P) raw forecast's intervals at the current widths, once calibrated (else None).

        The only part of a forecast's bookkeeping that goes out with it: the ingest thread calls this
        before the send and `keep` after it. Allocates only the returned bounds, 2 L N P float32, which
        the publisher shares read-only. The widths stay in a scratch buffer for `keep`, so the two are
        called in turn for one forecast, with no other forecast's in between.
        """
        width = self._current_width()
        if not self.calibrated:
            return None
        half_width = width.transpose(0, 2, 1) * self._std[:, None]  # (L, P, N) -> (L, N, P), raw units
        return ForecastIntervals(levels=self.levels, lower=forecast - half_width, upper=forecast + half_width)

    def keep(self, frame_index: int, forecast: np.ndarray) -> None:
        """Keep the (N, P) raw forecast made after frame `frame_index`, and the widths `intervals` served it
        with, to be scored as its target frames arrive."""
        horizon = self.horizon
        targets = frame_index + self._ahead  # (P,) the frames it covers
        rows = targets % (horizon + 1)
        self._predicted[rows, self._steps] = forecast.T  # (N, P) -> (P, N), one step per target row
        self._served[rows, :, self._steps] = self._width.transpose(1, 0, 2)  # (L, P, N) -> (P, L, N)
        self._target_index[rows, self._steps] = targets
        path = frame_index % self.config.crossing_paths
        self._path_origin[path] = frame_index
        self._path_steps[path] = 0

    def crossing_probability(self, forecast: np.ndarray, *, unit: int, value: float, above: bool) -> float | None:
        """P(unit goes above, or below, `value` at some step 1..P) for this (N, P) raw forecast; None without paths.

        Each complete residual path of the last W forecasts, scaled to raw units, is added to the
        unit's forecast; the probability is the share of those trajectories that cross.
        """
        complete = self._path_steps == self.horizon
        if not complete.any():
            return None
        paths = self._paths[complete, :, unit].astype(np.float32) * self._std[unit]  # (m, P)
        trajectories = forecast[unit][None, :] + paths
        crossed = trajectories >= value if above else trajectories <= value
        return float(crossed.any(axis=1).mean())

    @property
    def complete_paths(self) -> int:
        return int(np.count_nonzero(self._path_steps == self.horizon))

    def readout(self) -> UnitAccuracy:
        """A copy of the per-unit statistics (allocates; for requests, not per frame)."""
        seen = self._residuals_seen > 0
        model = self._model_sq[seen].mean(axis=0) if seen.any() else np.full(self.num_units, np.nan)
        copy = self._copy_sq[seen].mean(axis=0) if seen.any() else np.full(self.num_units, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(copy > 0, 1.0 - model / copy, np.nan)
            count = self._covered_count
            coverage = self._covered / count if count else np.full(self._covered.shape, np.nan)
        coverage_all = tuple(float(row.mean()) if count else float("nan") for row in coverage)
        return UnitAccuracy(
            levels=self.levels,
            scored_frames=int(self._residuals_seen.max()),
            score=score.astype(np.float64),
            model_rmse=np.sqrt(model).astype(np.float64),
            coverage=np.asarray(coverage, dtype=np.float64),
            coverage_all=coverage_all,
            # not _current_width(): its buffer is the ingest thread's, and this runs on a request's thread
            width=(np.maximum(self._multiplier, 0.0) * self._abs_mean).mean(axis=1).astype(np.float64),
            calibrated=self.calibrated,
        )

    def _current_width(self) -> np.ndarray:
        """(L, P, N) half-widths now, normalised units: multiplier (at least 0) times the running scale.

        Into a scratch buffer of the ingest thread's: call it from there only."""
        np.maximum(self._multiplier, 0.0, out=self._width)
        np.multiply(self._width, self._abs_mean, out=self._width)
        return self._width

    # --- the steps of `observe`, each over the steps that had a forecast for this frame -------------

    def _score_steps(self, frame_index: int, row: int, steps: _Steps) -> None:
        """Score frame `frame_index` at `steps`; the statistics of those steps are read, updated, written back.

        With every step (the steady state) `steps.index` is a slice, so every array below is a view
        into the state and the scratch buffers, and nothing is allocated; with some steps only, the
        state is gathered into k-row copies and scattered back, which costs k/P of the full update.
        """
        index, k = steps.index, steps.count
        raw = self._origin[frame_index % (self.horizon + 1)]
        residual, score, copy = self._residual[:k], self._score[:k], self._copy[:k]  # (k, N) each
        np.subtract(raw, self._predicted[row][index], out=residual)  # (N,) - (k, N) -> (k, N)
        np.multiply(residual, self._inv_std, out=residual)
        np.abs(residual, out=score)
        origins = np.remainder(frame_index - 1 - steps.absolute, self.horizon + 1)  # frame T-k, observed before
        np.take(self._origin, origins, axis=0, out=copy)  # (k, N): copy-last for step k is frame T-k
        np.subtract(raw, copy, out=copy)
        np.multiply(copy, self._inv_std, out=copy)
        seen = self._residuals_seen[index].copy()  # (k,)
        multiplier = self._multiplier[:, index]  # (L, k, N)
        abs_mean, model_sq, copy_sq = self._abs_mean[index], self._model_sq[index], self._copy_sq[index]
        for step in np.flatnonzero(seen == 0):  # a step's first residual: at most P times after each reset
            multiplier[:, step, :] = self._normal_multiplier
            abs_mean[step] = score[step]
            model_sq[step] = 0.0
            copy_sq[step] = 0.0
        miss = self._miss[:, :k]  # (L, k, N): the target outside the interval served with its forecast
        np.greater(score, self._served[row][:, index], out=miss)
        self._count_coverage(miss, seen >= self.config.warm_up_forecasts)
        update = self._step[:, :k]  # m += learning_rate * (miss - alpha)
        np.subtract(miss, self._alpha, out=update)
        np.multiply(update, self.config.learning_rate, out=update)
        np.add(multiplier, update, out=multiplier)
        rate = self._rate[:k]  # exponential weights: 1/n for the first frames (a plain mean), then 1/window_frames
        np.divide(1.0, np.minimum(seen + 1, self.config.window_frames)[:, None], out=rate)
        square = self._square[:k]
        np.square(residual, out=square)
        _move_towards(model_sq, square, rate)
        np.square(copy, out=square)
        _move_towards(copy_sq, square, rate)
        _move_towards(abs_mean, score, rate)
        if not isinstance(index, slice):
            self._multiplier[:, index] = multiplier
            self._abs_mean[index], self._model_sq[index], self._copy_sq[index] = abs_mean, model_sq, copy_sq
        self._store_path(frame_index, steps.absolute, residual)
        self._residuals_seen[index] += 1

    def _count_coverage(self, miss: np.ndarray, counted: np.ndarray) -> None:
        """Add the misses (L, k, N) of the steps that are past their warm-up (k,) to the per-unit counts."""
        if not counted.any():
            return
        misses = self._misses
        np.sum(miss if counted.all() else miss[:, counted], axis=1, out=misses)
        count = int(counted.sum())
        self._covered += count
        self._covered -= misses
        self._covered_count += count

    def _store_path(self, frame_index: int, steps: np.ndarray, residual: np.ndarray) -> None:
        """Step k's residual into the path of the forecast made after frame T-k, if that path is still kept."""
        origins = frame_index - 1 - steps  # steps: (k,) zero-based
        slots = origins % self.config.crossing_paths
        kept = self._path_origin[slots] == origins
        if not kept.any():
            return
        self._paths[slots[kept], steps[kept]] = residual[kept]
        self._path_steps[slots[kept]] += 1


@dataclasses.dataclass(frozen=True, slots=True)
class _Steps:
    """Which steps a frame completes: `index` selects them from (P, ...) state (a slice: all, a view)."""

    index: slice | np.ndarray
    absolute: np.ndarray  # (k,) zero-based step numbers, k - 1

    @property
    def count(self) -> int:
        return self.absolute.size


def _move_towards(mean: np.ndarray, latest: np.ndarray, rate: np.ndarray) -> None:
    """mean += rate * (latest - mean), in place; `latest` is overwritten."""
    np.subtract(latest, mean, out=latest)
    np.multiply(latest, rate, out=latest)
    np.add(mean, latest, out=mean)
