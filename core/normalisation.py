"""Per-unit normalisation of raw frames, estimated from the frames themselves (numpy only).

Legend: T frames, N units.

A bundle's calibration carries the mean and std that turn a recording's raw values into what the
network was trained on. A new animal has none: its stream estimates them from its own frames as
they arrive (`WindowedNormalisation`, over its most recent frames, on the schedule that
`stream_estimate_span` states and training reproduces), and a fine-tune fits them on the frames it
trains on (`normalisation_of`). Both floor the std the same way, relative to the population's
typical std: a unit that happened to be flat while the
estimate was made would otherwise be divided by ~0 once it moves, and the population encoder
would see its values in the millions, which spoils every unit's forecast, not only its own.
"""

from __future__ import annotations

import numpy as np

RELATIVE_STD_FLOOR = 1e-2  # of the median unit's std
ABSOLUTE_STD_FLOOR = 1e-6  # when every unit is flat
# A new animal's stream is normalised over its last 4 C frames (192 at C = 48): on flavell_dag2023's worms,
# zero-shot, 2, 4 and 8 contexts all beat an estimate of every frame so far, 4 by the most on average.
STREAM_WINDOW_CONTEXTS = 4


def floored_std(std: np.ndarray) -> np.ndarray:
    """(..., N) std -> float32 std no smaller than 1 % of the median unit's of its row (and never 0)."""
    if not std.size:
        return std.astype(np.float32)
    floor = np.maximum(RELATIVE_STD_FLOOR * np.median(std, axis=-1, keepdims=True), ABSOLUTE_STD_FLOOR)
    return np.maximum(std, floor).astype(np.float32)


def normalisation_of(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and floored std (both (N,) float32) of raw frames (T, N)."""
    mean = frames.mean(axis=0, dtype=np.float64)
    std = frames.std(axis=0, dtype=np.float64)
    return mean.astype(np.float32), floored_std(std)


class WindowedNormalisation:
    """Mean and std of every unit over the last `window` frames added; preallocated, O(N) per frame.

    The recent frames rather than all of them: a calcium recording drifts (bleaching, baseline and
    gain changes over minutes), and a network trained on whole-recording z-scores forecasts a
    drifting stream better in the scale it has now than in the mean of its past scales (on
    flavell_dag2023's worms, zero-shot, the last 4 contexts' frames against an estimate frozen
    after 16: bench/README.md, new animals)."""

    def __init__(self, num_units: int, *, window: int) -> None:
        if window < 1:
            raise ValueError(f"the window must hold at least one frame, not {window}")
        self.count = 0
        self._frames = np.empty((window, num_units), dtype=np.float32)

    def add(self, frame: np.ndarray) -> None:
        """One raw (N,) frame, finite (the pipeline has checked it): it replaces the oldest once the window is full."""
        self._frames[self.count % len(self._frames)] = frame
        self.count += 1

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and floored std (population std, as `normalisation_of`) of the window's frames, both (N,) float32."""
        if self.count == 0:
            raise ValueError("no frame has been added yet")
        return normalisation_of(self._frames[: min(self.count, len(self._frames))])


def stream_estimate_span(frames_seen: int, context_frames: int) -> tuple[int, int]:
    """[start, stop) of a new animal's frames (0 = its first) whose estimate normalises the forecast made
    when its `frames_seen`-th frame arrives (frames_seen >= C), as a live stream schedules it: the first
    estimate at C frames, before the first forecast; then one every C frames, each taken in after the
    forecast of the frame that completes it; each over the last STREAM_WINDOW_CONTEXTS x C frames.

    Training uses it to show the network windows normalised as a new animal's will be served
    (poco_rt.models.data); the server keeps the same schedule incrementally (poco_rt.server.session)."""
    if frames_seen < context_frames:
        raise ValueError(f"a stream forecasts from its first {context_frames} frames on, not at {frames_seen}")
    stop = max(context_frames, (frames_seen - 1) // context_frames * context_frames)
    return max(0, stop - STREAM_WINDOW_CONTEXTS * context_frames), stop
