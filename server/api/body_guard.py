"""Every HTTP request body checked before a byte of it is read, then read whole within its limits.

What FastAPI and uvicorn do not do, in the order it is done here:

1. A request that carries a body must carry the token (when one is configured), checked on its
   headers: 401 before the body is read. FastAPI reads and parses a body before it runs a route's
   dependencies, so without this an unauthenticated client could make the server hold and parse
   `max_body_bytes` per connection.
2. A body over `max_body_bytes` is a 413 naming the limit, on the Content-Length or as it streams
   (FastAPI's own answer names no limit, and is plain text or JSON depending on how it found out).
3. The bytes held across all connections stay within `max_buffered_body_bytes`: an announced body
   reserves its length before it is read, a chunked one as it arrives, and what does not fit is a
   503 with Retry-After. Without it, clients that each send most of a maximal body and stall
   hold `max_body_bytes` apiece, as many as there are connections.
4. The body must arrive within `body_timeout_s` of the request's start, else 408: nothing in
   uvicorn bounds it, and a client that announces 1 kB and sends 10 bytes (a slow-body attack, or a
   crashed client behind a proxy) would hold a connection and a route's wait for ever.

Bodies are buffered in full (at most the limit), which is what a JSON route does anyway; the route
then reads the buffered copy, and the reservation is returned when the route has answered.
Every refusal closes the connection (what is left of the body is never read) and is JSON in the
form of the route's API (errors.py). WebSocket and
lifespan traffic passes through untouched.
"""

from __future__ import annotations

import asyncio
import json

from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poco_rt.server.api.errors import speaks_protocol
from poco_rt.server.auth import bearer_token_matches

RETRY_AFTER_S = 1  # what a 503 for a full body budget asks the client to wait


class BodyBudget:
    """Request body bytes held now across all connections; used on the event loop only, so no lock."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0

    def reserve(self, size_bytes: int) -> bool:
        if self.held_bytes + size_bytes > self.limit_bytes:
            return False
        self.held_bytes += size_bytes
        return True

    def release(self, size_bytes: int) -> None:
        self.held_bytes -= size_bytes


class BodyGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        timeout_s: float,
        budget: BodyBudget,
        auth_token: SecretStr | None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.budget = budget
        self.auth_token = auth_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = _declared_length(headers)
        has_body = declared > 0 or "transfer-encoding" in headers
        if has_body and not bearer_token_matches(self.auth_token, headers.get("authorization")):
            detail = "missing or wrong bearer token: send 'Authorization: Bearer <token>' (the body was not read)"
            await _refuse(scope, send, 401, detail, [(b"www-authenticate", b"Bearer")])
            return
        if declared > self.max_bytes:
            await _refuse(scope, send, 413, self._too_large())
            return
        reservation = _Reservation(self.budget)
        if not reservation.cover(declared):  # an announced body is reserved whole before it is read
            await self._refuse_busy(scope, send)
            return
        try:
            body = await self._read_body(scope, receive, send, reservation)
            if body is not None:
                await self.app(scope, _replay(body, receive), send)
        finally:
            reservation.release()

    async def _read_body(self, scope: Scope, receive: Receive, send: Send, reservation: _Reservation) -> bytes | None:
        """The whole body, or None once it is refused (or the client left mid-body: no one to answer)."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await _refuse(scope, send, 413, self._too_large())
                        return None
                    if not reservation.cover(size):
                        await self._refuse_busy(scope, send)
                        return None
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            await _refuse(
                scope, send, 408, f"the request body did not arrive within body_timeout_s={self.timeout_s:g} s"
            )
            return None

    def _too_large(self) -> str:
        return f"the request body is over max_body_bytes={self.max_bytes} bytes"

    async def _refuse_busy(self, scope: Scope, send: Send) -> None:
        detail = (
            f"the server holds {self.budget.held_bytes} bytes of request bodies already and "
            f"max_buffered_body_bytes={self.budget.limit_bytes}; retry in {RETRY_AFTER_S} s"
        )
        await _refuse(scope, send, 503, detail, [(b"retry-after", str(RETRY_AFTER_S).encode())])


class _Reservation:
    """One request's share of the BodyBudget: its announced length, grown as a chunked body arrives."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size_bytes = 0

    def cover(self, size_bytes: int) -> bool:
        """Whether `size_bytes` are reserved now, reserving the difference if need be."""
        if size_bytes <= self.size_bytes:
            return True
        if not self.budget.reserve(size_bytes - self.size_bytes):
            return False
        self.size_bytes = size_bytes
        return True

    def release(self) -> None:
        self.budget.release(self.size_bytes)
        self.size_bytes = 0


async def _refuse(
    scope: Scope, send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON refusal in the form of the route's API: `{"error": ...}` under the inference protocol."""
    key = "error" if speaks_protocol(scope["path"]) else "detail"
    body = json.dumps({key: detail}).encode()
    all_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    all_headers.append((b"connection", b"close"))  # what is left of the body is never read
    await send({"type": "http.response.start", "status": status, "headers": all_headers + (headers or [])})
    await send({"type": "http.response.body", "body": body})


def _declared_length(headers: Headers) -> int:
    value = headers.get("content-length")
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return 0  # uvicorn's parser refuses a malformed Content-Length before we see it


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body as one message, then the client's own messages (its disconnect)."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
