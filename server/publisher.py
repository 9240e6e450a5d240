"""Hands one forecast to all three channels: ZeroMQ PUB, the REST snapshot, the WebSocket hub.

Runs on the ingest thread, which owns the PUB socket and attaches it here while it runs. ZeroMQ's
PUB never blocks its sender: a subscriber that falls `forecast_queue_messages` behind loses
forecasts (ZeroMQ drops them for that subscriber only), so no subscriber can slow the server down.

With `wire_intervals`, every forecast goes out as protocol version 2 (its interval bounds in the
payload; no levels while the session warms up), for subscribers that read it; otherwise as
version 1, which every subscriber reads, and the bounds reach REST and WebSocket JSON only.
"""

from __future__ import annotations

import time

import numpy as np
import zmq

from poco_rt.errors import NotRunning
from poco_rt.server.forecasts import LatestForecasts, PublishedForecast
from poco_rt.server.hub import ForecastHub
from poco_rt.wire import ForecastHeader, ForecastIntervals, FrameHeader, WireLimits, encode_forecast


class ForecastPublisher:
    def __init__(
        self,
        *,
        latest: LatestForecasts,
        hub: ForecastHub,
        limits: WireLimits,
        wire_intervals: bool = False,
    ) -> None:
        self._socket: zmq.Socket | None = None  # the ingest thread's PUB socket, while it runs
        self._latest = latest
        self._hub = hub
        self._limits = limits
        self._wire_intervals = wire_intervals
        self.published = 0  # forecasts sent so far (the ingest thread's drain logs how many it made)

    def attach(self, socket: zmq.Socket) -> None:
        """On the ingest thread, once its PUB socket is bound: forecasts go out on it from now on."""
        self._socket = socket

    def detach(self) -> None:
        """On the ingest thread, before it closes the socket."""
        self._socket = None

    def publish(
        self,
        values: np.ndarray,
        *,
        frame: FrameHeader,
        received_ns: int,
        inferred_ns: int,
        model_version: str,
        calibration_hash: str,
        intervals: ForecastIntervals | None = None,
    ) -> PublishedForecast:
        """values (N, P) float32, raw units, and their bounds; from here on shared and never written again."""
        values.flags.writeable = False
        if intervals is not None:
            intervals.lower.flags.writeable = False
            intervals.upper.flags.writeable = False
        on_wire = None
        if self._wire_intervals:
            none = np.empty((0, *values.shape), dtype=np.float32)
            on_wire = intervals or ForecastIntervals(levels=(), lower=none, upper=none)
        sent_ns = time.time_ns()
        message = encode_forecast(
            values,
            session=frame.session,
            frame_index=frame.frame_index,
            acquisition_time_ns=frame.acquisition_time_ns,
            model_version=model_version,
            received_ns=received_ns,
            inferred_ns=inferred_ns,
            sent_ns=sent_ns,
            intervals=on_wire,
            limits=self._limits,
        )
        forecast = PublishedForecast(
            header=ForecastHeader(
                session=frame.session,
                frame_index=frame.frame_index,
                acquisition_time_ns=frame.acquisition_time_ns,
                model_version=model_version,
                received_ns=received_ns,
                inferred_ns=inferred_ns,
                sent_ns=sent_ns,
                unit_count=values.shape[0],
                horizon=values.shape[1],
            ),
            values=values,
            parts=message.parts,
            calibration_hash=calibration_hash,
            intervals=intervals,
        )
        socket = self._socket
        if socket is None:
            raise NotRunning("the forecast publisher has no socket: the ingest thread is not running")
        # The REST snapshot first: a controller that has the ZeroMQ message then never reads an older one.
        self._latest.put(forecast)
        socket.send_multipart(message.parts, copy=message.copy)
        self._hub.handoff(forecast)
        self.published += 1
        return forecast
