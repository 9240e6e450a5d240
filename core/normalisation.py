"""Per-unit normalisation of raw frames, estimated from the frames themselves (numpy only).

Legend: T frames, N units.

A bundle's calibration carries the mean and std that turn a recording's raw values into what the
network was trained on. A new animal has none: its stream estimates them from its own frames as
they arrive (`RunningNormalisation`, Welford's update: one pass, O(N) per frame, no frame kept),
and a fine-tune fits them on the frames it trains on (`normalisation_of`). Both floor the std the
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


class RunningNormalisation:
    """Mean and std of every unit over all frames added so far; preallocated, O(N) per frame."""

    def __init__(self, num_units: int) -> None:
        self.count = 0
        self._mean = np.zeros(num_units, dtype=np.float64)
        self._sum_sq = np.zeros(num_units, dtype=np.float64)  # sum of squared deviations (Welford's M2)
        self._delta = np.empty(num_units, dtype=np.float64)
        self._scratch = np.empty(num_units, dtype=np.float64)

    def add(self, frame: np.ndarray) -> None:
        """One raw (N,) frame, finite (the pipeline has checked it); allocates nothing."""
        self.count += 1
        np.subtract(frame, self._mean, out=self._delta)  # x - old mean
        np.multiply(self._delta, 1.0 / self.count, out=self._scratch)
        self._mean += self._scratch
        np.subtract(frame, self._mean, out=self._scratch)  # x - new mean
        np.multiply(self._delta, self._scratch, out=self._scratch)
        self._sum_sq += self._scratch

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and floored std (population std, as `normalisation_of`), both (N,) float32."""
        if self.count == 0:
            raise ValueError("no frame has been added yet")
        return self._mean.astype(np.float32), floored_std(np.sqrt(self._sum_sq / self.count))
