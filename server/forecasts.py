"""A published forecast, shared read-only by every channel, and the latest one per session (what REST reads).

Legend: N units, P horizon.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from poco_rt.wire import ForecastHeader, ForecastIntervals, WirePart


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no single truth value
class PublishedForecast:
    header: ForecastHeader
    values: np.ndarray  # (N, P) float32, raw units, read-only: REST and WebSocket readers share it
    parts: tuple[WirePart, ...]  # the wire message [topic, header, payload], as sent on ZeroMQ
    calibration_hash: str  # which embeddings made it (the network is header.model_version)
    intervals: ForecastIntervals | None = None  # read-only; None while the session's live accuracy warms up


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
