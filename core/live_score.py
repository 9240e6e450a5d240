"""POCO's score of live forecasts, updated as each forecast's target frames arrive.

A forecast made after frame t covers frames t+1..t+P; it is scored when frame t+P arrives,
against copy-last (frame t repeated), in each unit's normalised units so that the number is the
same one `poco-rt evaluate` reports. Missing frames simply leave their forecasts unscored.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from poco_rt.metric import ScoreAccumulator


class LiveScorer:
    def __init__(self, *, horizon: int, std: np.ndarray) -> None:
        self.horizon = horizon
        self.std = np.asarray(std, dtype=np.float64)
        self.accumulator = ScoreAccumulator()
        self._frames: dict[int, np.ndarray] = {}
        self._pending: deque[tuple[int, np.ndarray, np.ndarray]] = deque()

    def add_frame(self, index: int, frame: np.ndarray) -> None:
        """Record frame `index` (N,) raw, and score every forecast whose horizon it completes."""
        self._frames[index] = frame / self.std
        self._frames.pop(index - self.horizon - 1, None)
        while self._pending and self._pending[0][0] + self.horizon <= index:
            made_at, forecast, last = self._pending.popleft()
            wanted = range(made_at + 1, made_at + self.horizon + 1)
            if all(i in self._frames for i in wanted):
                target = np.stack([self._frames[i] for i in wanted], axis=-1)  # (N, P)
                self.accumulator.add(forecast, target, last)

    def add_forecast(self, index: int, forecast: np.ndarray, last_frame: np.ndarray) -> None:
        """forecast (N, P) raw, made after frame `index` whose values were last_frame (N,)."""
        self._pending.append((index, forecast / self.std[:, None], last_frame / self.std))

    @property
    def score(self) -> float:
        return self.accumulator.score

    @property
    def scored_forecasts(self) -> int:
        return self.accumulator.count // (self.horizon * len(self.std)) if len(self.std) else 0
