"""A session's forecasts over the server's WebSocket, as an iterator or an async iterator.

    with WebSocketForecastSubscriber("http://127.0.0.1:8700", session="rig1") as forecasts:
        for frame_index, forecast, timing in forecasts:     # forecast: (N, P) float32
            ...

    async with AsyncWebSocketForecastSubscriber(url, session="rig1", token=token) as forecasts:
        async for frame_index, forecast, timing in forecasts:
            ...

WebSocket passes proxies and firewalls that ZeroMQ does not, and carries the bearer token. It
uses the binary format (the wire forecast message, see docs/protocol.md), so values arrive as
exact float32. The server sends its latest forecast first, then each new one; a subscriber slower
than the frame rate gets the newest forecast each time and skips the ones in between, so
frame indices may jump but never go back. With `intervals=(0.8, 0.95)` each forecast also carries
those levels' bounds (`update.interval(0.95)`; none while the session warms up). Iteration ends
when the server stops (close code 1001 or 1012); any other close, e.g. 4404 for a session that
is not open, raises SubscriptionClosed.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Sequence

import websockets.asyncio.client
import websockets.sync.client
from websockets.exceptions import ConnectionClosed

from poco_rt.clients.rest_calls import DEFAULT_SERVER_URL
from poco_rt.clients.updates import USE_CLIENT_TIMEOUT, ForecastUpdate, Timeout, decode_update, timeout_seconds
from poco_rt.errors import BadHeader, SubscriptionClosed
from poco_rt.wire import DEFAULT_LIMITS, WireLimits, forecast_topic, unpack_parts

# Closed as agreed; going away (the app stopping); service restart (uvicorn closing its connections at shutdown).
NORMAL_CLOSE_CODES = (1000, 1001, 1012)


class _WebSocketSubscription:
    """What both subscribers share: the URL, headers, limits, decoding and the meaning of a close."""

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER_URL,
        *,
        session: str,
        token: str | None = None,
        timeout_s: float | None = 10.0,
        intervals: Sequence[float] = (),
        limits: WireLimits = DEFAULT_LIMITS,
    ) -> None:
        """`base_url`: the server's HTTP address; `timeout_s` bounds the handshake and every receive;
        `intervals`: levels whose bounds to receive with each forecast (each one the server tracks)."""
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s}; give a positive number of seconds, or None to wait for ever")
        forecast_topic(session, limits=limits)  # a session name the server would refuse fails here
        self.session = session
        self.timeout_s = timeout_s
        self.limits = limits
        self.model_version: str | None = None  # of the last forecast received
        self.url = _websocket_url(base_url, session, intervals)
        self._options = {
            "additional_headers": {"Authorization": f"Bearer {token}"} if token else None,
            "open_timeout": timeout_s,
            "close_timeout": timeout_s,
            "max_size": limits.max_payload_bytes + 65_536,  # the largest forecast plus its headers
        }

    def _decode(self, message: bytes | str) -> ForecastUpdate:
        if isinstance(message, str):
            raise BadHeader("a text message on the binary forecast stream: the URL must ask for ?format=binary")
        update, header = decode_update(unpack_parts(message), limits=self.limits)
        self.model_version = header.model_version
        return update

    def _timeout(self, timeout_s: Timeout) -> float | None:
        return timeout_seconds(timeout_s, self.timeout_s)

    @staticmethod
    def _closed(error: ConnectionClosed) -> SubscriptionClosed:
        close = error.rcvd
        return SubscriptionClosed(
            code=close.code if close else 1006, reason=close.reason if close else "connection lost"
        )


class WebSocketForecastSubscriber(_WebSocketSubscription):
    _connection: websockets.sync.client.ClientConnection | None = None
    _stack: contextlib.ExitStack | None = None

    def connect(self) -> None:
        self._stack = contextlib.ExitStack()  # websockets 17 wants its connection used as a context manager
        self._connection = self._stack.enter_context(websockets.sync.client.connect(self.url, **self._options))

    def receive(self, timeout_s: Timeout = USE_CLIENT_TIMEOUT) -> ForecastUpdate:
        """The next forecast; TimeoutError after timeout_s, SubscriptionClosed when the server ends it."""
        if self._connection is None:
            raise RuntimeError("not connected: use the subscriber in a `with` block (or call connect())")
        try:
            return self._decode(self._connection.recv(timeout=self._timeout(timeout_s)))
        except ConnectionClosed as error:
            raise self._closed(error) from None

    def __iter__(self) -> Iterator[ForecastUpdate]:
        while True:
            try:
                yield self.receive()
            except SubscriptionClosed as closed:
                if closed.code in NORMAL_CLOSE_CODES:
                    return
                raise

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = self._connection = None

    def __enter__(self) -> WebSocketForecastSubscriber:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncWebSocketForecastSubscriber(_WebSocketSubscription):
    _connection: websockets.asyncio.client.ClientConnection | None = None
    _stack: contextlib.AsyncExitStack | None = None

    async def connect(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._connection = await self._stack.enter_async_context(
            websockets.asyncio.client.connect(self.url, **self._options)
        )

    async def receive(self, timeout_s: Timeout = USE_CLIENT_TIMEOUT) -> ForecastUpdate:
        """The next forecast; TimeoutError after timeout_s, SubscriptionClosed when the server ends it."""
        if self._connection is None:
            raise RuntimeError("not connected: use the subscriber in an `async with` block (or await connect())")
        try:
            async with asyncio.timeout(self._timeout(timeout_s)):
                message = await self._connection.recv()
        except ConnectionClosed as error:
            raise self._closed(error) from None
        return self._decode(message)

    async def __aiter__(self) -> AsyncIterator[ForecastUpdate]:
        while True:
            try:
                yield await self.receive()
            except SubscriptionClosed as closed:
                if closed.code in NORMAL_CLOSE_CODES:
                    return
                raise

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = self._connection = None

    async def __aenter__(self) -> AsyncWebSocketForecastSubscriber:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _websocket_url(base_url: str, session: str, intervals: Sequence[float] = ()) -> str:
    """http(s)://host:port[/prefix] -> ws(s)://host:port[/prefix]/v1/sessions/<session>/forecasts/ws?format=binary."""
    parts = urllib.parse.urlsplit(base_url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"base_url={base_url!r}; give the server's HTTP address, e.g. {DEFAULT_SERVER_URL}")
    path = f"{parts.path.rstrip('/')}/v1/sessions/{urllib.parse.quote(session, safe='')}/forecasts/ws"
    levels = ",".join(f"{float(level):g}" for level in intervals)
    query = f"format=binary&intervals={levels}" if levels else "format=binary"
    return urllib.parse.urlunsplit((schemes[parts.scheme], parts.netloc, path, query, ""))
