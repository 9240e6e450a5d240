"""Replay a recording through a bundle in this process, paced like a microscope, scoring live.

The server path (ZeroMQ in, forecasts out) replaces the in-process engine in the served demo;
this keeps the same loop for a rig that only wants to check a bundle against a recording.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from poco_rt.live_score import LiveScorer
from poco_rt.server.engine import Engine


@dataclasses.dataclass
class ReplayStatus:
    session: str
    frames: int = 0
    forecasts: int = 0
    score: float = float("nan")
    latencies_ms: list[float] = dataclasses.field(default_factory=list)

    def latency_percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def replay(
    engine: Engine,
    session: str,
    traces: np.ndarray,
    *,
    frame_rate_hz: float,
    speed: float = 1.0,
    on_update: Callable[[ReplayStatus], None] | None = None,
    update_every: int = 10,
) -> ReplayStatus:
    """Stream traces (T, N) frame by frame at frame_rate_hz x speed (speed <= 0: as fast as possible)."""
    calibration = engine.bundle.session(session)
    if traces.shape[1] != calibration.num_units:
        raise ValueError(
            f"recording has {traces.shape[1]} units, bundle session {session!r} has {calibration.num_units}"
        )
    context_frames = engine.bundle.context_frames
    context = np.zeros((context_frames, traces.shape[1]), dtype=np.float32)  # (C, N), oldest first
    scorer = LiveScorer(horizon=engine.bundle.horizon, std=calibration.std)
    status = ReplayStatus(session)
    interval = 1.0 / (frame_rate_hz * speed) if speed > 0 else 0.0
    started = time.perf_counter()
    for index, frame in enumerate(traces):
        delay = started + index * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        scorer.add_frame(index, frame)
        context[:-1] = context[1:]
        context[-1] = frame
        if index >= context_frames - 1:
            t0 = time.perf_counter()
            forecast = engine.forecast(session, context)
            status.latencies_ms.append((time.perf_counter() - t0) * 1e3)
            scorer.add_forecast(index, forecast, frame)
            status.forecasts += 1
        status.frames, status.score = index + 1, scorer.score
        if on_update and index % update_every == 0:
            on_update(status)
    if on_update:
        on_update(status)
    return status
