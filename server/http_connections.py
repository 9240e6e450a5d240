"""HTTP connections bounded in number and in the time their request headers take; accept failures logged once.

uvicorn's h11 protocol (what uvicorn runs without httptools) closes an idle connection only after
a response (`timeout_keep_alive`): a connection that never sends a request, or sends its headers
a byte at a time, stays open for ever, and nothing bounds how many there are. Enough of them
take every file descriptor of a server under the usual 1,024 limit: REST stops answering, and
asyncio logs a traceback for every failed accept, thousands a second.

`guarded_protocol` makes the h11 protocol that `uvicorn_config` runs:

- a connection must send a whole request head within `request_header_timeout_s` of its first
  byte (or of being opened), else it is closed, as nginx's `client_header_timeout` does;
- beyond `max_http_connections` open connections (WebSockets included), a new one is answered
  503 and closed at once, so that descriptors stay well within the process's limit.

`log_accept_failures_once` turns asyncio's per-failure traceback for an accept that ran out of
descriptors into one warning line per interval. asyncio retries such an accept a second later on
the listening socket it had; when the server stops within that second, the retry finds the socket
closed and raises ValueError (fd -1) from the event loop: that too is one line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from poco_rt.server.ratelog import RateLimitedLog

logger = logging.getLogger(__name__)
ACCEPT_FAILURE_LOG_INTERVAL_S = 10.0
_ACCEPT_FAILURE = "socket.accept() out of system resource"  # asyncio's message (selector_events.py)
_ACCEPT_RETRY = "._start_serving("  # in asyncio's message for an exception in its accept retry's callback


def guarded_protocol(*, max_connections: int, header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's H11Protocol with a header deadline and a cap on open connections (pass as `http=`)."""
    detail = f"{max_connections} connections are open, the limit (max_http_connections); try again later"
    body = json.dumps({"detail": detail}).encode()
    refusal = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\nconnection: close\r\nretry-after: 1\r\n\r\n".encode()
        + body
    )

    class GuardedH11Protocol(H11Protocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(refusal)
                transport.close()
                return
            self._arm_header_deadline()

        def data_received(self, data: bytes) -> None:
            if self._header_deadline is None and self.conn.their_state is h11.IDLE:
                self._arm_header_deadline()  # the first byte of the next request on a kept-alive connection
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the request's head is in (or the connection is done)
                self._cancel_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_deadline()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            self._header_deadline = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _cancel_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _headers_too_slow(self) -> None:
            self._header_deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def log_accept_failures_once(loop: asyncio.AbstractEventLoop) -> None:
    """Make `loop` log a failed accept (out of descriptors) as one line per interval, with no traceback.

    asyncio retries the accept a second later by itself; the traceback says nothing more than the
    errno, and under a flood of connections it was written thousands of times a second.
    """
    log = RateLimitedLog(logger, interval_s=ACCEPT_FAILURE_LOG_INTERVAL_S)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = context.get("message", "")
        if isinstance(context.get("exception"), ValueError) and _ACCEPT_RETRY in message:
            logger.info("a retry of a failed HTTP accept came after the listening socket closed; nothing to accept")
            return
        if message != _ACCEPT_FAILURE:
            loop.default_exception_handler(context)
            return
        log.warning(
            "accept",
            "cannot accept HTTP connections: %s (raise the open-file limit, or lower max_http_connections)",
            context.get("exception"),
        )

    loop.set_exception_handler(handle)
