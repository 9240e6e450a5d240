"""What every forecast subscriber yields: `(frame_index, forecast, timing)`, decoded from the wire.

Legend: N units, P horizon. Server times are the server's `time.time_ns()`, `delivered_ns` this
process's, so `age_ms` is end to end (acquisition to here) only when the clocks are synced;
on one machine they are the same clock.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from poco_rt.wire import DEFAULT_LIMITS, ForecastHeader, ForecastIntervals, WireLimits, WirePart, decode_forecast


class _Default(enum.Enum):
    TIMEOUT = "the client's own timeout_s"


USE_CLIENT_TIMEOUT = _Default.TIMEOUT  # a call's timeout_s default: the one the client was made with
Timeout = float | None | _Default  # seconds; None waits for ever


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ForecastTiming:
    acquisition_time_ns: int  # the frame's acquisition time, as the publisher stamped it
    received_ns: int  # server: the frame was taken off its socket
    inferred_ns: int  # server: the forecast came out of the engine
    sent_ns: int  # server: the forecast was handed to its publishing socket
    delivered_ns: int  # this process: the forecast was received

    @property
    def inference_ms(self) -> float:
        return (self.inferred_ns - self.received_ns) / 1e6

    @property
    def server_ms(self) -> float:
        """Frame in to forecast out, inside the server."""
        return (self.sent_ns - self.received_ns) / 1e6

    @property
    def age_ms(self) -> float:
        """Acquisition to delivery: the latency a closed loop sees (clocks permitting)."""
        return (self.delivered_ns - self.acquisition_time_ns) / 1e6


class _UpdateFields(NamedTuple):
    frame_index: int  # the frame it was made after; it covers frame_index + 1 .. frame_index + P
    forecast: np.ndarray  # (N, P) float32, raw units
    timing: ForecastTiming


class ForecastUpdate(_UpdateFields):
    """One forecast as a subscriber yields it; unpacks as `frame_index, forecast, timing`.

    Interval bounds, when the message carried them (protocol version 2: a server publishing with
    `wire_intervals`, or a WebSocket subscription asking for `intervals`), come from `interval(level)`;
    they are an attribute rather than a fourth field so that the three-name unpacking keeps working.
    """

    intervals: ForecastIntervals | None

    def __new__(
        cls, frame_index: int, forecast: np.ndarray, timing: ForecastTiming, intervals: ForecastIntervals | None = None
    ) -> ForecastUpdate:
        update = super().__new__(cls, frame_index, forecast, timing)
        update.intervals = intervals
        return update

    @property
    def levels(self) -> tuple[float, ...]:
        """The interval levels this update carries (none for a version 1 message or a warming-up session)."""
        return () if self.intervals is None else self.intervals.levels

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper), each (N, P) float32 raw units, of the `level` interval (e.g. 0.95).

        ValueError when the update does not carry that level: the message was version 1, the
        session is still warming up, or the level is not one the server tracks.
        """
        if self.intervals is None:
            raise ValueError(
                f"forecast {self.frame_index} carries no intervals: subscribe with intervals=[{level}] (WebSocket) "
                "or run the server with wire_intervals (ZeroMQ)"
            )
        if not self.intervals.levels:
            raise ValueError(f"forecast {self.frame_index} carries no intervals yet: the session is warming up")
        return self.intervals.bounds(level)


def update_from_header(
    header: ForecastHeader, values: np.ndarray, *, delivered_ns: int, intervals: ForecastIntervals | None = None
) -> ForecastUpdate:
    timing = ForecastTiming(
        acquisition_time_ns=header.acquisition_time_ns,
        received_ns=header.received_ns,
        inferred_ns=header.inferred_ns,
        sent_ns=header.sent_ns,
        delivered_ns=delivered_ns,
    )
    return ForecastUpdate(header.frame_index, values, timing, intervals)


def decode_update(
    parts: Sequence[WirePart], *, limits: WireLimits = DEFAULT_LIMITS
) -> tuple[ForecastUpdate, ForecastHeader]:
    """A wire forecast message as an update, stamped now, and its header (session, model version)."""
    delivered_ns = time.time_ns()
    forecast = decode_forecast(parts, limits=limits)
    header, intervals = forecast.header, forecast.intervals
    return update_from_header(header, forecast.values, delivered_ns=delivered_ns, intervals=intervals), header


def timeout_seconds(timeout_s: Timeout, default: float | None) -> float | None:
    return default if timeout_s is USE_CLIENT_TIMEOUT else timeout_s
