"""Run one server in this process until SIGINT/SIGTERM: what `poco-rt serve` calls.

The HTTP socket is bound here, before uvicorn starts, so that port 0 can be resolved and logged
with the ZeroMQ endpoints; uvicorn then serves on that socket and drives the app's lifespan.

Stopping drains (DrainingServer): uvicorn's own shutdown closes every WebSocket (code 1012)
before it runs the lifespan's, too late for a subscriber to get the forecasts of the last frames.
So the stream is drained first, while the connections are still open: no new HTTP connection is
taken, the ingest thread takes, forecasts and publishes the frames already sent, each WebSocket
subscription sends what it holds and closes with 1001 (going away), and then uvicorn shuts down
as usual, the lifespan stopping the rest (the recorder completes its chunks).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Any

import uvicorn
import zmq
from fastapi import FastAPI

from poco_rt.errors import PocoRtError
from poco_rt.server.app import create_app
from poco_rt.server.http_connections import guarded_protocol, log_accept_failures_once
from poco_rt.server.log_redaction import redact_tokens_in_uvicorn_logs
from poco_rt.server.runtime import ServerRuntime
from poco_rt.server.settings import ServerSettings

logger = logging.getLogger(__name__)

KEEP_ALIVE_S = 65  # longer than any polling interval a controller or dashboard uses
WEBSOCKET_MAX_MESSAGE_BYTES = 4096  # subscribers send nothing; a message at all is closed with 1008
HTTP_BACKLOG = 2048  # connections the kernel queues before uvicorn accepts them (uvicorn's own default)


class DrainingServer(uvicorn.Server):
    """uvicorn's Server, with the stream drained before uvicorn closes the connections."""

    def __init__(self, config: uvicorn.Config, *, runtime: ServerRuntime) -> None:
        super().__init__(config)
        self._runtime = runtime
        self.refusal: Exception | None = None  # why the runtime could not start, if it could not

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the runtime before uvicorn's lifespan does: a refusal (a bad bundle, an unusable data
        directory or job table, a ZeroMQ port taken, a bad session name) then ends the serve with its
        reason in one line and exit status 2, where the lifespan would have logged a traceback and
        uvicorn exited 3."""
        try:
            await asyncio.to_thread(self._runtime.start, asyncio.get_running_loop())
        except (PocoRtError, ValueError, zmq.ZMQError) as refusal:
            await asyncio.to_thread(self._runtime.stop)
            self.refusal = refusal
            self.should_exit = True  # uvicorn's serve then returns without its main loop
            return
        log_accept_failures_once(asyncio.get_running_loop())
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting; uvicorn's shutdown closes them again, which is harmless
        await asyncio.to_thread(self._runtime.stop_stream)
        await self._runtime.close_subscriptions_and_wait()
        await super().shutdown(sockets)


def bind_http(settings: ServerSettings) -> socket.socket:
    """The HTTP socket, bound before uvicorn starts so that port 0 resolves; a ValueError if it cannot bind.

    Made with IPPROTO_TCP, not the default 0: asyncio turns TCP_NODELAY on only for a socket that
    says it is TCP, and without it every REST reply waited ~40 ms for the client's delayed ACK. It
    listens at once, so that a client that read the logged address while the app still starts is
    queued by the kernel until uvicorn accepts, not refused.
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    http_socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    http_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        http_socket.bind((settings.host, settings.http_port))
    except OSError as error:
        http_socket.close()
        raise ValueError(
            f"cannot listen for HTTP on {settings.host}:{settings.http_port}: {error.strerror} "
            "(another server on the port, or an address this machine does not have?)"
        ) from None
    http_socket.listen(HTTP_BACKLOG)
    return http_socket


def uvicorn_config(app: FastAPI, settings: ServerSettings, **logging_options: Any) -> uvicorn.Config:
    """uvicorn as every poco-rt server runs it. WebSocket compression is off: deflating each 64 kB
    forecast once per subscriber cost the event loop ~5 ms for a 7 % smaller message, and with 50
    subscribers forecasts were skipped and REST replies took seconds (bench/README.md, Soak).
    Idle connections are kept KEEP_ALIVE_S, not uvicorn's 5 s: a controller polling every 5 s
    raced the server's close and got "disconnected without a response" (the soak's sampler did).
    A WebSocket client sends nothing, so a message over WEBSOCKET_MAX_MESSAGE_BYTES is closed by
    uvicorn (1009) before it is read whole, not buffered up to its default 16 MiB.
    HTTP runs on h11 with a header deadline and a cap on connections (http_connections.py), and
    uvicorn's log lines never show a `?token=` (log_redaction.py)."""
    redact_tokens_in_uvicorn_logs()
    return uvicorn.Config(
        app,
        lifespan="on",
        http=guarded_protocol(
            max_connections=settings.max_http_connections, header_timeout_s=settings.request_header_timeout_s
        ),
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        ws_max_size=WEBSOCKET_MAX_MESSAGE_BYTES,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        **logging_options,
    )


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the limit now.

    The usual soft limit, 1,024, is what systemd and most shells give; each HTTP connection,
    ZeroMQ peer, recording chunk and job log takes a descriptor. The hard limit is what the
    administrator (or `LimitNOFILE` in deploy/poco-rt.service) allows; raising the soft one to it
    needs no privilege.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:  # a hard limit the kernel will not grant (over fs.nr_open)
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, error)
    return soft


def serve(settings: ServerSettings) -> None:
    app = create_app(settings)  # a bad setting (a CURVE certificate, say) fails here, before a port is bound
    open_files = raise_open_file_limit()
    if open_files < 2 * settings.max_http_connections:
        logger.warning(
            "the open-file limit (%d) leaves little beside max_http_connections=%d; raise LimitNOFILE "
            "(ulimit -n) or lower max_http_connections",
            open_files,
            settings.max_http_connections,
        )
    http_socket = bind_http(settings)
    host, port = http_socket.getsockname()[:2]
    logger.info("HTTP on http://%s:%d (API docs at /docs, metrics at /metrics)", host, port)
    config = uvicorn_config(app, settings, log_config=None)  # the CLI configured logging; uvicorn's goes through it
    server = DrainingServer(config, runtime=app.state.runtime)
    try:
        server.run(sockets=[http_socket])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after its graceful shutdown: stopped as asked
    finally:
        http_socket.close()
    if server.refusal is not None:
        raise ValueError(f"the server cannot start: {server.refusal}") from None
