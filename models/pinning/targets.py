"""What a PINning network is trained to produce: target rates in [0, 1] on a grid of data frames.

Three sources, one type (`Target`):
- `bump_target`: the Gaussian bump that sweeps across the units once per trial, the synthetic sequence of
  Rajan, Harvey & Tank (2016) and of the lab's `PINningDevIdealBump` demo;
- `two_bump_target`: two bump sequences over different unit orders, selected by a brief cue input, one
  shared J: the stand-in for the paper's left/right choice data (a cued memory);
- `recording_target`: chosen units and a time window of any `Recording`, each unit scaled to [0, 1].

Legend: M conditions, K data frames, N units.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from poco_rt.models.recording import Recording

BUMP_FRAMES = 166  # frames t_k = k dtData, k = 0..165: a trial of about 10.58 s
BUMP_FRAME_INTERVAL_S = 0.0641  # dtData of the demo
BUMP_WIDTH_FRACTION = 0.0343  # σ of the bump, as a fraction of N
RATE_OFFSET = 0.01  # f = ln((d + 0.01) / (1 - d + 0.01)) stays finite at d = 0 and d = 1


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """Target rates for M conditions that share one network.

    `rates` (M, K, N) float32 in [0, 1], frame k at time k * frame_interval_s. Each condition starts from
    `initial_state` (M, N) (the x(0) of its runs) and receives `cue_inputs` (M, N) for the first
    `cue_duration_s` of the trial, on top of the frozen input h.
    """

    name: str
    rates: np.ndarray
    frame_interval_s: float
    initial_state: np.ndarray
    cue_inputs: np.ndarray
    cue_duration_s: float = 0.0

    def __post_init__(self) -> None:
        rates = np.ascontiguousarray(self.rates, dtype=np.float32)
        if rates.ndim != 3 or 0 in rates.shape:
            raise ValueError(f"Target.rates must be a non-empty (M, K, N) array, got shape {rates.shape}")
        if rates.shape[1] < 2:
            raise ValueError(f"Target.rates has {rates.shape[1]} frame; a trial needs at least 2 frames")
        if not (np.isfinite(rates).all() and rates.min() >= 0.0 and rates.max() <= 1.0):
            raise ValueError("Target.rates must be finite and in [0, 1]; normalise each unit first")
        conditions, _, units = rates.shape
        for name in ("initial_state", "cue_inputs"):
            array = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if array.shape != (conditions, units) or not np.isfinite(array).all():
                raise ValueError(f"Target.{name} must be finite with shape {(conditions, units)}, got {array.shape}")
            object.__setattr__(self, name, array)
        if not (np.isfinite(self.frame_interval_s) and self.frame_interval_s > 0):
            raise ValueError(f"Target.frame_interval_s must be > 0, got {self.frame_interval_s}")
        if not (np.isfinite(self.cue_duration_s) and self.cue_duration_s >= 0):
            raise ValueError(f"Target.cue_duration_s must be >= 0, got {self.cue_duration_s}")
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "frame_interval_s", float(self.frame_interval_s))
        object.__setattr__(self, "cue_duration_s", float(self.cue_duration_s))

    @property
    def num_conditions(self) -> int:
        return self.rates.shape[0]

    @property
    def num_frames(self) -> int:
        return self.rates.shape[1]

    @property
    def num_units(self) -> int:
        return self.rates.shape[2]

    @property
    def total_inputs(self) -> np.ndarray:
        """f(d) (M, K, N): the total input z that gives rate d through the logistic φ, the RLS target."""
        rates = self.rates.astype(np.float64)
        return np.log((rates + RATE_OFFSET) / (1.0 - rates + RATE_OFFSET)).astype(np.float32)


def _bump(units: int, frames: int) -> np.ndarray:
    """d_i(t_k) = exp(-(i - N t_k / T)² / (2σ²)), σ = 0.0343 N: (K, N)."""
    position = units * np.arange(frames) / (frames - 1)  # the bump's centre at each frame, 0 .. N
    width = BUMP_WIDTH_FRACTION * units
    offsets = np.arange(units)[None, :] - position[:, None]  # (K, N)
    return np.exp(-(offsets**2) / (2 * width**2))


def bump_target(
    units: int = 500, *, frames: int = BUMP_FRAMES, frame_interval_s: float = BUMP_FRAME_INTERVAL_S
) -> Target:
    """The demo's synthetic sequence: one Gaussian bump crossing all N units once per trial."""
    if units < 2:
        raise ValueError(f"bump_target: units must be >= 2, got {units}")
    rates = _bump(units, frames)[None]  # (1, K, N)
    return Target(
        name=f"bump{units}",
        rates=rates,
        frame_interval_s=frame_interval_s,
        initial_state=rates[:, 0],  # x(0) = d(:, 0), as in the demo
        cue_inputs=np.zeros((1, units)),
    )


def two_bump_target(
    units: int = 500,
    *,
    seed: int = 0,
    cue_amplitude: float = 2.0,
    cue_duration_s: float = 0.1,
    frames: int = BUMP_FRAMES,
    frame_interval_s: float = BUMP_FRAME_INTERVAL_S,
) -> Target:
    """Two bump sequences (units in order; units in a fixed random order), one shared J.

    Both conditions start from the same state (the mean of their first frames), so only the cue, a
    random input pattern per condition for the first `cue_duration_s`, tells the network which sequence
    to play: a cued memory, the stand-in for the paper's left/right choice trials.
    """
    if units < 2:
        raise ValueError(f"two_bump_target: units must be >= 2, got {units}")
    rng = np.random.default_rng(seed)
    first = _bump(units, frames)  # (K, N)
    second = first[:, rng.permutation(units)]
    rates = np.stack([first, second])  # (2, K, N)
    shared_start = rates[:, 0].mean(axis=0)
    return Target(
        name=f"two-bump{units}",
        rates=rates,
        frame_interval_s=frame_interval_s,
        initial_state=np.stack([shared_start, shared_start]),
        cue_inputs=cue_amplitude * rng.standard_normal((2, units)),
        cue_duration_s=cue_duration_s,
    )


def recording_target(
    recording: Recording,
    *,
    session: str | None = None,
    units: Sequence[int] | None = None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    frame_interval_s: float | None = None,
) -> Target:
    """Chosen units of one session over [start_s, start_s + duration_s), each scaled to [0, 1].

    The network has one unit per chosen recorded unit (as in the paper, every model unit is matched to
    a neuron). Frames are resampled by linear interpolation onto a grid of `frame_interval_s` (default:
    the recording's own frame interval), since the RLS updates happen once per data frame.
    """
    chosen = recording.session(session) if session else recording.sessions[0]
    columns = np.arange(chosen.num_units) if units is None else np.asarray(units, dtype=np.int64)
    if columns.size == 0 or columns.min() < 0 or columns.max() >= chosen.num_units:
        raise ValueError(
            f"recording_target: units must be column indices in [0, {chosen.num_units}) of session "
            f"{chosen.name!r}, got {columns.tolist()[:10]}"
        )
    recorded_interval_s = 1.0 / chosen.frame_rate_hz
    interval_s = recorded_interval_s if frame_interval_s is None else float(frame_interval_s)
    recorded_times = np.arange(chosen.num_frames) * recorded_interval_s
    frames = math.floor((recorded_times[-1] - start_s) / interval_s + 1e-9) + 1  # grid points up to the last frame
    if duration_s is not None:
        frames = min(frames, math.ceil(duration_s / interval_s - 1e-9))  # and before start_s + duration_s
    times = start_s + np.arange(max(frames, 0)) * interval_s
    if start_s < 0 or times.size < 2:
        raise ValueError(
            f"recording_target: window start {start_s} s, duration {duration_s} s holds fewer than 2 frames of "
            f"session {chosen.name!r} ({recorded_times[-1]:.1f} s long); choose a window inside the recording"
        )
    traces = chosen.traces[:, columns].astype(np.float64)  # (T, N)
    resampled = np.stack([np.interp(times, recorded_times, traces[:, i]) for i in range(columns.size)], axis=1)
    low, high = resampled.min(axis=0), resampled.max(axis=0)
    flat = np.flatnonzero(high - low <= 0)
    if flat.size:
        raise ValueError(
            f"recording_target: units {columns[flat].tolist()} are constant in the window and cannot be scaled "
            "to [0, 1]; leave them out with --units"
        )
    rates = ((resampled - low) / (high - low))[None]  # (1, K, N)
    return Target(
        name=f"{recording.name}/{chosen.name}",
        rates=rates,
        frame_interval_s=interval_s,
        initial_state=rates[:, 0],
        cue_inputs=np.zeros((1, columns.size)),
    )
