"""Per-unit normalisation of raw frames, estimated from the frames themselves (numpy only).

Legend: T frames, N units.

A bundle's calibration carries the mean and std that turn a recording's raw values into what the
network was trained on. A new animal has none: its stream estimates them from its own frames as
they arrive (`WindowedNormalisation`, over its most recent frames), and a fine-tune fits them on
the frames it trains on (`normalisation_of`). Both floor the std the
same way, relative to the population's typical std: a unit that happened to be flat while the
estimate was made would otherwise be divided by ~0 once it moves, and the population encoder
would see its values in the millions, which spoils every unit's forecast, not only its own.
"""

from __future__ import annotations

import numpy as np

RELATIVE_STD_FLOOR = 1e-2  # of the median unit's std
ABSOLUTE_STD_FLOOR = 1e-6  # when every unit is flat


def floored_std(std: np.ndarray) -> np.ndarray:
    """(N,) std -> float32 std no smaller than 1 % of the median unit's (and never 0)."""
    floor = max(RELATIVE_STD_FLOOR * float(np.median(std)), ABSOLUTE_STD_FLOOR) if std.size else ABSOLUTE_STD_FLOOR
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
