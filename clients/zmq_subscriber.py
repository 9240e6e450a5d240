"""A session's forecasts from the server's ZeroMQ PUB socket, as an iterator or an async iterator.

    with ZmqForecastSubscriber("tcp://127.0.0.1:8702", session="rig1") as forecasts:
        for frame_index, forecast, timing in forecasts:     # forecast: (N, P) float32
            ...

    async with AsyncZmqForecastSubscriber(endpoint, session="rig1") as forecasts:
        async for frame_index, forecast, timing in forecasts:
            ...

ZeroMQ is the lowest-latency channel and never slows the server: a subscriber that falls more
than `queue_forecasts` behind loses the oldest ones. Subscriptions reach the server a few
milliseconds after connecting (ZeroMQ's "slow joiner"), so forecasts made in that moment are not
seen; connect before the stream starts. Every receive waits at most `timeout_s` (TimeoutError),
so a stopped stream is noticed; give None to wait for ever. CURVE keys as in poco_rt.clients.curve.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import zmq
import zmq.asyncio

from poco_rt.clients.curve import CurveKeys
from poco_rt.clients.updates import USE_CLIENT_TIMEOUT, ForecastUpdate, Timeout, decode_update, timeout_seconds
from poco_rt.wire import DEFAULT_LIMITS, WireLimits, forecast_topic

DEFAULT_FORECAST_ENDPOINT = "tcp://127.0.0.1:8702"


class _ZmqSubscription:
    """What both subscribers share: options, the socket's set-up, decoding and closing; they differ in I/O only."""

    _context_class: type[zmq.Context] = zmq.Context

    def __init__(
        self,
        endpoint: str = DEFAULT_FORECAST_ENDPOINT,
        *,
        session: str,
        timeout_s: float | None = 10.0,
        queue_forecasts: int = 1000,
        server_public_key: bytes | str | None = None,
        public_key: bytes | str | None = None,
        secret_key: bytes | str | None = None,
        limits: WireLimits = DEFAULT_LIMITS,
    ) -> None:
        """`endpoint`: the server's forecast PUB socket (`GET /v1/server`, or ForecastClient.endpoints())."""
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s}; give a positive number of seconds, or None to wait for ever")
        if queue_forecasts < 1:
            raise ValueError(f"queue_forecasts={queue_forecasts}; it must be at least 1")
        self.endpoint = endpoint
        self.session = session
        self.timeout_s = timeout_s
        self.limits = limits
        self.model_version: str | None = None  # of the last forecast received
        topic = forecast_topic(session, limits=limits)
        curve = CurveKeys.of(server_public_key=server_public_key, public_key=public_key, secret_key=secret_key)
        self._context = self._context_class()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, queue_forecasts)
        self._socket.setsockopt(zmq.SUBSCRIBE, topic)
        if curve is not None:
            curve.apply(self._socket)
        self._socket.connect(endpoint)

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)
            self._context.term()

    def _poll_ms(self, timeout_s: Timeout) -> int:
        seconds = timeout_seconds(timeout_s, self.timeout_s)
        return -1 if seconds is None else max(0, round(seconds * 1000))

    def _decode(self, parts: list[bytes]) -> ForecastUpdate:
        update, header = decode_update(parts, limits=self.limits)
        self.model_version = header.model_version
        return update

    def _timed_out(self, timeout_s: Timeout) -> TimeoutError:
        seconds = timeout_seconds(timeout_s, self.timeout_s)
        return TimeoutError(f"no forecast for session {self.session!r} from {self.endpoint} within {seconds} s")


class ZmqForecastSubscriber(_ZmqSubscription):
    def receive(self, timeout_s: Timeout = USE_CLIENT_TIMEOUT) -> ForecastUpdate:
        """The next forecast; TimeoutError after timeout_s (default: the subscriber's)."""
        if not self._socket.poll(self._poll_ms(timeout_s)):
            raise self._timed_out(timeout_s)
        return self._decode(self._socket.recv_multipart())

    def __iter__(self) -> Iterator[ForecastUpdate]:
        while True:
            yield self.receive()

    def __enter__(self) -> ZmqForecastSubscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncZmqForecastSubscriber(_ZmqSubscription):
    _context_class = zmq.asyncio.Context

    async def receive(self, timeout_s: Timeout = USE_CLIENT_TIMEOUT) -> ForecastUpdate:
        """The next forecast; TimeoutError after timeout_s (default: the subscriber's)."""
        if not await self._socket.poll(self._poll_ms(timeout_s)):
            raise self._timed_out(timeout_s)
        return self._decode(await self._socket.recv_multipart())

    async def __aiter__(self) -> AsyncIterator[ForecastUpdate]:
        while True:
            yield await self.receive()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> AsyncZmqForecastSubscriber:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
