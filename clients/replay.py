"""Replay recorded frames to a server as a microscope would, and score the forecasts that come back.

One thread does both, on an absolute schedule: frame k is due at start + k / rate_hz, and the
time until it is spent receiving forecasts, so a late frame never delays the ones after it (no
drift) and no forecast waits for a frame. Frames go out through a FramePublisher (dropped and
counted when its queue is full); forecasts come from any subscriber's `receive(timeout_s)`.

Scoring is POCO's (poco_rt.live_score), per unit in units of the replayed frames' own standard
deviation. A frame joins the scorer once a forecast made at or after it has arrived, so a
forecast that arrives late (a backlog, a slow link) is still scored against its target frames.

Legend: T frames replayed, N units, C context frames, P horizon.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from poco_rt.clients.publisher import FramePublisher
from poco_rt.clients.updates import ForecastUpdate
from poco_rt.live_score import LiveScorer

LATENCY_SAMPLES = 100_000  # the latency percentiles cover the most recent forecasts (a looped replay runs for ever)


class ForecastReceiver(Protocol):
    def receive(self, timeout_s: float | None) -> ForecastUpdate: ...


@dataclasses.dataclass
class ReplayStatus:
    session: str
    context_frames: int  # C: the server makes no forecast before C frames
    frames_sent: int = 0
    frames_dropped: int = 0  # by the publisher, its queue full
    forecasts_received: int = 0
    score: float = math.nan  # 0: copy-last, 1: perfect
    scored_forecasts: int = 0
    elapsed_s: float = 0.0
    above_copy_last_since_s: float | None = None  # when the score last went above 0 and stayed there
    latencies_ms: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_SAMPLES)
    )  # acquisition stamp to forecast received
    server_ms: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_SAMPLES)
    )  # frame in to forecast out, inside the server

    @property
    def possible_forecasts(self) -> int:
        """Forecasts the server could have made: one per frame from the C-th on (it coalesces a backlog)."""
        return max(0, self.frames_sent - self.context_frames + 1)

    @staticmethod
    def percentile(samples: collections.deque[float], q: float) -> float:
        return float(np.percentile(samples, q)) if samples else math.nan


class Replay:
    def __init__(
        self,
        traces: np.ndarray,
        *,
        session: str,
        publisher: FramePublisher,
        subscriber: ForecastReceiver,
        context_frames: int,
        horizon: int,
        rate_hz: float,
        first_index: int = 0,
        loop: bool = False,
        max_frames: int | None = None,
    ) -> None:
        """traces (T, N) raw; `rate_hz` <= 0 sends as fast as the publisher takes them.

        Frame k of the replay carries index `first_index + k` and the values of row k mod T. It
        stops after T frames, or with `loop` never, and in either case after `max_frames` if given.
        """
        traces = np.asarray(traces)
        if traces.ndim != 2 or traces.shape[0] == 0:
            raise ValueError(f"traces have shape {traces.shape}; give (T, N) with at least one frame")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames={max_frames}; give a positive count or None")
        self.traces = traces
        self.publisher = publisher
        self.subscriber = subscriber
        self.rate_hz = rate_hz
        self.first_index = first_index
        self.total_frames = min(math.inf if loop else traces.shape[0], math.inf if max_frames is None else max_frames)
        self.status = ReplayStatus(session=session, context_frames=context_frames)
        std = traces.std(axis=0, dtype=np.float64)
        self._scorer = LiveScorer(horizon=horizon, std=np.maximum(std, 1e-6))  # flat units do not explode
        self._scored_through = -1  # frames 0 .. this one are in the scorer
        self._last_forecast = -1  # replay-relative index of the newest forecast received
        self._started = 0.0

    def run(
        self,
        on_update: Callable[[ReplayStatus], None] | None = None,
        *,
        update_interval_s: float = 0.25,
        tail_timeout_s: float = 5.0,
    ) -> ReplayStatus:
        """Send every frame on schedule, then wait up to tail_timeout_s for the last frame's forecast."""
        self._started = time.monotonic()
        next_update = self._started
        k = 0
        while k < self.total_frames:
            due = self._started + k / self.rate_hz if self.rate_hz > 0 else time.monotonic()
            self._receive_until(due)
            if self.publisher.send(self.traces[k % len(self.traces)], self.first_index + k):
                self.status.frames_sent += 1
            else:
                self.status.frames_dropped += 1
            k += 1
            if on_update is not None and time.monotonic() >= next_update:
                on_update(self._refresh())
                next_update = time.monotonic() + update_interval_s
        last_due = self.status.frames_sent + self.status.frames_dropped - 1
        deadline = time.monotonic() + tail_timeout_s
        while self._last_forecast < last_due and time.monotonic() < deadline:
            self._receive_until(min(deadline, time.monotonic() + update_interval_s))
            if on_update is not None:
                on_update(self._refresh())
        self._score_through(last_due)
        status = self._refresh()
        if on_update is not None:
            on_update(status)
        return status

    def _receive_until(self, deadline: float) -> None:
        """Take forecasts until `deadline` (monotonic s); returns at once when it has passed and none is waiting.

        A receive that times out early (a poll rounded to whole milliseconds) is simply repeated.
        """
        while True:
            try:
                update = self.subscriber.receive(timeout_s=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    return
                continue
            self._take(update)

    def _take(self, update: ForecastUpdate) -> None:
        k = update.frame_index - self.first_index
        if k <= self._last_forecast:
            return  # from before this replay (a WebSocket sends its latest first), or a repeat
        self._score_through(k)
        self._scorer.add_forecast(k, update.forecast, self.traces[k % len(self.traces)])
        self._last_forecast = k
        self.status.forecasts_received += 1
        self.status.latencies_ms.append(update.timing.age_ms)
        self.status.server_ms.append(update.timing.server_ms)

    def _score_through(self, k: int) -> None:
        while self._scored_through < k:
            self._scored_through += 1
            self._scorer.add_frame(self._scored_through, self.traces[self._scored_through % len(self.traces)])

    def _refresh(self) -> ReplayStatus:
        status = self.status
        status.elapsed_s = time.monotonic() - self._started
        status.score, status.scored_forecasts = self._scorer.score, self._scorer.scored_forecasts
        if not status.score > 0:
            status.above_copy_last_since_s = None
        elif status.above_copy_last_since_s is None:
            status.above_copy_last_since_s = status.elapsed_s
        return status
