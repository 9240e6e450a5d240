"""A published forecast, shared read-only by every channel, and the latest one per session (what REST reads).

Legend: N units, P horizon.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from poco_rt.wire import ForecastHeader, ForecastIntervals, WirePart, encode_forecast


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no single truth value
class PublishedForecast:
    header: ForecastHeader
    values: np.ndarray  # (N, P) float32, raw units, read-only: REST and WebSocket readers share it
    parts: tuple[WirePart, ...]  # the wire message [topic, header, payload], as sent on ZeroMQ
    calibration_hash: str  # which embeddings made it (the network is header.model_version)
    intervals: ForecastIntervals | None = None  # read-only; None while the session's live accuracy warms up

    def parts_with_intervals(self, levels: tuple[float, ...]) -> tuple[WirePart, ...]:
        """This forecast as a version 2 wire message carrying `levels` (none while warming up); encodes anew."""
        header, values = self.header, self.values
        carried = self.intervals
        if carried is None or not levels:
            none = np.empty((0, *values.shape), dtype=np.float32)
            chosen = ForecastIntervals(levels=(), lower=none, upper=none)
        else:
            ordered = tuple(sorted(set(levels)))  # the wire wants them increasing
            bounds = [carried.bounds(level) for level in ordered]
            chosen = ForecastIntervals(
                levels=ordered,
                lower=np.stack([lower for lower, _ in bounds]),
                upper=np.stack([upper for _, upper in bounds]),
            )
        message = encode_forecast(
            values,
            session=header.session,
            frame_index=header.frame_index,
            acquisition_time_ns=header.acquisition_time_ns,
            model_version=header.model_version,
            received_ns=header.received_ns,
            inferred_ns=header.inferred_ns,
            sent_ns=header.sent_ns,
            intervals=chosen,
        )
        return message.parts


class LatestForecasts:
    """The newest forecast per session. Written by the ingest thread only; a dict item swap is atomic."""

    def __init__(self) -> None:
        self._latest: dict[str, PublishedForecast] = {}

    def put(self, forecast: PublishedForecast) -> None:
        self._latest[forecast.header.session] = forecast

    def get(self, session: str) -> PublishedForecast | None:
        return self._latest.get(session)

    def discard(self, session: str) -> None:
        self._latest.pop(session, None)
