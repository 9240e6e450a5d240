"""Every HTTP request body read whole before a route sees it: at most `max_body_bytes`, within `body_timeout_s`.

Two things FastAPI's own `max_body_size` does not do. It answers "Content Too Large" without
naming the limit (and as plain text when the Content-Length gives it away, JSON otherwise); this
answers both ways with the same JSON refusal, naming the setting. And nothing in uvicorn bounds
the time a body takes: a client that announces 1 kB and sends 10 bytes holds a connection and a
route's wait forever (a slow-body attack, or a crashed client behind a proxy that keeps the
socket). Here the body must arrive within `body_timeout_s` of the request's start, else 408.
Bodies are buffered in full (at most the limit), which is what a JSON route does anyway; the
route then reads the buffered copy. Refusals are JSON in the form of the route's API (errors.py).
WebSocket and lifespan traffic passes through untouched.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poco_rt.server.api.errors import speaks_protocol


class BodyGuard:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_bytes:
            await self._refuse(scope, send, 413, self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left mid-body: there is no one to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await self._refuse(scope, send, 413, self._too_large())
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            detail = f"the request body did not arrive within body_timeout_s={self.timeout_s:g} s"
            await self._refuse(scope, send, 408, detail)
            return
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _too_large(self) -> str:
        return f"the request body is over max_body_bytes={self.max_bytes} bytes"

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
        key = "error" if speaks_protocol(scope["path"]) else "detail"
        body = json.dumps({key: detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers.append((b"connection", b"close"))  # what is left of the body is never read
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # uvicorn's parser refuses a malformed Content-Length before we see it
    return 0


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
