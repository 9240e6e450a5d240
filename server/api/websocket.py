"""/v1/sessions/{name}/forecasts/ws: a session's forecasts as they are made, newest first, never queued.

`?format=binary` (default): one binary message per forecast, the wire forecast message's three
parts each after its u32 little-endian length (`poco_rt.wire.unpack_parts`, then
`poco_rt.wire.decode_forecast`). `?format=json`: the same fields as GET .../forecast.
`?intervals=0.8,0.95`: those levels' bounds too, in the JSON or as a protocol version 2 message.
The current latest forecast, if any, is sent first. A subscriber slower than the frame rate
gets the newest forecast each time it is ready and skips the ones in between (counted). With a
token configured, send `Authorization: Bearer <token>` or `?token=<token>`. Clients send nothing.
Close codes: 1008 no or wrong token, or a message from the client; 1013 `max_websocket_subscribers`
subscriptions are open already (try again later); 4404 the session is not open, or was closed;
1001 the server is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from poco_rt.errors import SubscriptionLimitReached, UnknownSession
from poco_rt.server.api.deps import WebSocketRuntimeDep
from poco_rt.server.api.schemas import ForecastOut, IntervalLevels, SessionName, parse_levels
from poco_rt.server.hub import Subscriber
from poco_rt.server.runtime import ServerRuntime
from poco_rt.wire import pack_parts

router = APIRouter(tags=["forecasts"])

GOING_AWAY = 1001  # WebSocket close code: the server is stopping
POLICY_VIOLATION = 1008  # WebSocket close code: no or wrong token, or a message from the client
TRY_AGAIN_LATER = 1013  # WebSocket close code: max_websocket_subscribers subscriptions are open
SESSION_NOT_OPEN = 4404  # application close code: the session is not (or no longer) open


class WebSocketFormat(enum.StrEnum):
    BINARY = "binary"
    JSON = "json"


@router.websocket("/v1/sessions/{name}/forecasts/ws")
async def forecasts_ws(
    websocket: WebSocket,
    name: SessionName,
    runtime: WebSocketRuntimeDep,
    format: WebSocketFormat = WebSocketFormat.BINARY,
    token: str | None = None,
    intervals: IntervalLevels = None,
) -> None:
    if not runtime.authorizes(websocket.headers.get("authorization"), token):
        await _deny(websocket, POLICY_VIOLATION, "missing or wrong token")
        return
    try:
        tracked = runtime.interval_levels(name)
    except UnknownSession:
        await _deny(websocket, SESSION_NOT_OPEN, f"session {name!r} is not open")
        return
    try:
        levels = parse_levels(intervals, tracked)
    except ValueError as error:
        await _deny(websocket, POLICY_VIOLATION, str(error))
        return
    try:
        runtime.take_subscription_slot()  # before the first await
    except SubscriptionLimitReached as error:
        await _deny(websocket, TRY_AGAIN_LATER, str(error))
        return
    try:
        await websocket.accept()
        await _subscribe(websocket, name, runtime, format, levels)
    finally:
        runtime.release_subscription_slot()


async def _subscribe(
    websocket: WebSocket, name: str, runtime: ServerRuntime, format: WebSocketFormat, levels: tuple[float, ...]
) -> None:
    subscriber = runtime.subscribe(name)
    watcher = asyncio.create_task(_close_on_disconnect(websocket, subscriber))
    try:
        await _send_forecasts(websocket, subscriber, format, levels, runtime.count_websocket_sent)
        if WebSocketState.DISCONNECTED not in (websocket.client_state, websocket.application_state):
            session_open = runtime.is_open(name)
            code, reason = (GOING_AWAY, "server stopping") if session_open else (SESSION_NOT_OPEN, "session closed")
            await websocket.close(code=code, reason=reason)
    except WebSocketDisconnect:
        pass  # the client left; its subscription ends below
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        runtime.unsubscribe(subscriber)


async def _deny(websocket: WebSocket, close_code: int, detail: str) -> None:
    """Accept, then close with a code and reason: browsers show neither for a refused handshake (HTTP 403)."""
    await websocket.accept()
    await websocket.close(code=close_code, reason=detail)


async def _send_forecasts(
    websocket: WebSocket,
    subscriber: Subscriber,
    format: WebSocketFormat,
    levels: tuple[float, ...],
    count: Callable[[], None],
) -> None:
    while (forecast := await subscriber.next()) is not None:
        if format is WebSocketFormat.JSON:
            await websocket.send_text(ForecastOut.of(forecast, levels).model_dump_json())
        elif levels:
            await websocket.send_bytes(pack_parts(forecast.parts_with_intervals(levels)))
        else:
            await websocket.send_bytes(pack_parts(forecast.parts))
        count()


async def _close_on_disconnect(websocket: WebSocket, subscriber: Subscriber) -> None:
    """Clients send nothing; reading still tells when one leaves, so its subscription ends at once.

    A client that sends a message anyway is closed (1008) rather than having each message read and
    dropped: a client could otherwise make the server take in uvicorn's ws_max_size (16 MiB) a message
    for as long as it liked. The subscription ends first, so that no forecast is sent after the close.
    """
    message = await websocket.receive()
    subscriber.close()
    if message["type"] != "websocket.disconnect":
        with contextlib.suppress(WebSocketDisconnect):  # it may have left already
            await websocket.close(code=POLICY_VIOLATION, reason="this subscription takes no messages; send nothing")
