"""POCO's forecasting score, exactly: score = 1 − MSE_model / MSE_copy-last.

For one session, both MSEs run over every test window, every forecast step k = 1..P and every unit;
the copy-last forecast repeats the last context frame. A dataset's score is the unweighted mean of
its sessions' scores. 0 means "as good as copying the last frame", 1 is perfect. numpy only, so
that the replay tool and the server score live forecasts with the very same code.
"""

from __future__ import annotations

import numpy as np


class ScoreAccumulator:
    """Running sums for one session's score; feed it window by window or all at once."""

    def __init__(self) -> None:
        self.model_sq_error = 0.0
        self.copy_sq_error = 0.0
        self.count = 0

    def add(self, forecast: np.ndarray, target: np.ndarray, last_frame: np.ndarray) -> None:
        """forecast, target: (..., N, P); last_frame: (..., N), the last context frame."""
        forecast = np.asarray(forecast, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        if forecast.shape != target.shape:
            raise ValueError(f"forecast shape {forecast.shape} differs from target shape {target.shape}")
        copy = np.asarray(last_frame, dtype=np.float64)[..., None]
        self.model_sq_error += float(np.sum((forecast - target) ** 2))
        self.copy_sq_error += float(np.sum((copy - target) ** 2))
        self.count += target.size

    @property
    def model_mse(self) -> float:
        return self.model_sq_error / self.count if self.count else float("nan")

    @property
    def copy_mse(self) -> float:
        return self.copy_sq_error / self.count if self.count else float("nan")

    @property
    def score(self) -> float:
        return score_from_errors(self.model_sq_error, self.copy_sq_error) if self.count else float("nan")


def score_from_errors(model_sq_error: float, copy_sq_error: float) -> float:
    """The score from the two summed squared errors over the same entries; NaN where copy-last is exact."""
    if copy_sq_error == 0.0:
        return float("nan")
    return 1.0 - model_sq_error / copy_sq_error


def forecast_score(forecast: np.ndarray, target: np.ndarray, last_frame: np.ndarray) -> float:
    """One session's score from all its test windows: forecast, target (W, N, P); last_frame (W, N)."""
    accumulator = ScoreAccumulator()
    accumulator.add(forecast, target, last_frame)
    return accumulator.score


def dataset_score(session_scores: list[float]) -> float:
    """The unweighted mean over sessions, as POCO reports it."""
    if not session_scores:
        raise ValueError("dataset_score needs at least one session score")
    return float(np.mean(session_scores))
