"""/v1/sessions/{name}/forecasts/ws: a session's forecasts as they are made, newest first, never queued.

`?format=binary` (default): one binary message per forecast, the wire forecast message's three
parts each after its u32 little-endian length (`poco_rt.wire.unpack_parts`, then
`poco_rt.wire.decode_forecast`). `?format=json`: the same fields as GET .../forecast.
The current latest forecast, if any, is sent first. A subscriber slower than the frame rate
gets the newest forecast each time it is ready and skips the ones in between (counted). With a
token configured, send `Authorization: Bearer <token>` or `?token=<token>`. Close codes: 1008
no or wrong token; 4404 the session is not open, or was closed; 1001 the server is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from poco_rt.server.api.deps import WebSocketRuntimeDep, token_matches
from poco_rt.server.api.schemas import ForecastOut, SessionName
from poco_rt.server.hub import Subscriber
from poco_rt.wire import pack_parts

router = APIRouter(tags=["forecasts"])

GOING_AWAY = 1001  # WebSocket close code: the server is stopping
POLICY_VIOLATION = 1008  # WebSocket close code: no or wrong token
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
) -> None:
    if not token_matches(runtime, websocket.headers.get("authorization"), token):
        await _deny(websocket, POLICY_VIOLATION, "missing or wrong token")
        return
    if name not in runtime.sessions.snapshot():
        await _deny(websocket, SESSION_NOT_OPEN, f"session {name!r} is not open")
        return
    await websocket.accept()
    subscriber = runtime.hub.subscribe(name)
    latest = runtime.latest.get(name)
    if latest is not None:
        subscriber.offer(latest)
    watcher = asyncio.create_task(_close_on_disconnect(websocket, subscriber))
    try:
        await _send_forecasts(websocket, subscriber, format, runtime.metrics.websocket_sent.inc)
        if websocket.client_state is not WebSocketState.DISCONNECTED:
            session_open = name in runtime.sessions.snapshot()
            code, reason = (GOING_AWAY, "server stopping") if session_open else (SESSION_NOT_OPEN, "session closed")
            await websocket.close(code=code, reason=reason)
    except WebSocketDisconnect:
        pass  # the client left; its subscription ends below
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        runtime.hub.unsubscribe(subscriber)


async def _deny(websocket: WebSocket, close_code: int, detail: str) -> None:
    """Accept, then close with a code and reason: browsers show neither for a refused handshake (HTTP 403)."""
    await websocket.accept()
    await websocket.close(code=close_code, reason=detail)


async def _send_forecasts(
    websocket: WebSocket, subscriber: Subscriber, format: WebSocketFormat, count: Callable[[], None]
) -> None:
    while (forecast := await subscriber.next()) is not None:
        if format is WebSocketFormat.BINARY:
            await websocket.send_bytes(pack_parts(forecast.parts))
        else:
            await websocket.send_text(ForecastOut.of(forecast).model_dump_json())
        count()


async def _close_on_disconnect(websocket: WebSocket, subscriber: Subscriber) -> None:
    """Clients send nothing; reading still tells when one leaves, so its subscription ends at once."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
    subscriber.close()
