"""Run one server in this process until SIGINT/SIGTERM: what `poco-rt serve` calls.

The HTTP socket is bound here, before uvicorn starts, so that port 0 can be resolved and logged
with the ZeroMQ endpoints; uvicorn then serves on that socket and drives the app's lifespan.
"""

from __future__ import annotations

import logging
import socket

import uvicorn

from poco_rt.server.app import create_app
from poco_rt.server.settings import ServerSettings

logger = logging.getLogger(__name__)


def serve(settings: ServerSettings) -> None:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    http_socket = socket.socket(family, socket.SOCK_STREAM)
    http_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    http_socket.bind((settings.host, settings.http_port))
    host, port = http_socket.getsockname()[:2]
    logger.info("HTTP on http://%s:%d (API docs at /docs, metrics at /metrics)", host, port)
    config = uvicorn.Config(
        create_app(settings),
        lifespan="on",
        ws="websockets-sansio",
        log_config=None,  # the CLI configured logging; uvicorn's loggers go through it
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
    )
    try:
        uvicorn.Server(config).run(sockets=[http_socket])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after its graceful shutdown: stopped as asked
    finally:
        http_socket.close()
