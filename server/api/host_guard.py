"""Requests for a name the server does not go by, and WebSockets opened by another site's pages, refused.

Two browser attacks on a server without a token, which is the default on loopback:

- DNS rebinding: a page on evil.example has its own name resolve to 127.0.0.1, and its scripts'
  requests then reach this server as same-origin requests, with `Host: evil.example`. Refusing
  Host values the server does not go by (`ServerSettings.http_hosts`) ends that: 400, naming the
  setting. A request without a Host (HTTP/1.0) comes from no browser and passes.
- Cross-site WebSocket: browsers let any page open a WebSocket to any address, sending the
  page's `Origin`. A WebSocket whose Origin is neither this server's own (the dashboard's: the
  same scheme-less host and port as its Host) nor in `allowed_origins` is refused before the
  handshake (uvicorn answers 403). Clients outside a browser send no Origin and pass.

See RFC 6454 (the Origin concept) and RFC 6455 section 10.2 (origin considerations for WebSocket
servers).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send


class HostGuard:
    def __init__(self, app: ASGIApp, *, hosts: frozenset[str] | None, origins: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts  # None: any Host
        self.origins = frozenset(origin.lower().rstrip("/") for origin in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        if host is not None and self.hosts is not None and host_name(host) not in self.hosts:
            detail = f"this server does not answer to the Host {host[:100]!r}; add the name to allowed_hosts"
            await _refuse(scope, send, detail)
            return
        origin = headers.get("origin")
        if scope["type"] == "websocket" and origin is not None and not self._origin_allowed(origin, host):
            await send({"type": "websocket.close", "code": 1008, "reason": "cross-origin WebSocket refused"})
            return
        await self.app(scope, receive, send)

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        origin = origin.lower().rstrip("/")
        return origin in self.origins or (host is not None and urlsplit(origin).netloc == host.lower())


def host_name(host: str) -> str:
    """The name in a Host header, lower case, without its port or an IPv6 address's brackets."""
    host = host.lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


async def _refuse(scope: Scope, send: Send, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": "unexpected Host"})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})
