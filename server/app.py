"""`create_app(settings)`: the FastAPI app whose lifespan starts and stops the whole server.

One app is one server: its runtime (bundles, recorder, ingest thread, sockets) is built from the
settings passed in and lives in `app.state.runtime`, so a test process can run several servers
side by side. Starting happens in the lifespan (a failed bind or a bad bundle stops the start
with the reason), off the event loop since it binds sockets and loads ONNX; stopping ends the
WebSocket subscriptions, then the threads, each within `shutdown_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

import poco_rt
from poco_rt.server.api import (
    accuracy,
    api_docs,
    bundles,
    context,
    dashboard,
    forecasts,
    frames,
    health,
    inference_v2,
    jobs,
    metrics,
    server_info,
    sessions,
    websocket,
)
from poco_rt.server.api.body_guard import BodyBudget, BodyGuard
from poco_rt.server.api.errors import install_error_handlers
from poco_rt.server.api.host_guard import HostGuard
from poco_rt.server.runtime import ServerRuntime
from poco_rt.server.settings import ServerSettings

DESCRIPTION = """Real-time POCO forecasts of every imaged unit's next frames.

Frames stream in over ZeroMQ (see `GET /v1/server` for the endpoints) or, at low rates, over
`POST /v1/sessions/{name}/frames`; forecasts go out over ZeroMQ PUB, `GET
/v1/sessions/{name}/forecast` and the WebSocket `/v1/sessions/{name}/forecasts/ws`."""


def create_app(settings: ServerSettings) -> FastAPI:
    runtime = ServerRuntime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not runtime.started:  # `poco-rt serve` starts it before the lifespan (poco_rt.server.serve)
            try:
                await asyncio.to_thread(runtime.start, asyncio.get_running_loop())
            except BaseException:
                await asyncio.to_thread(runtime.stop)
                raise
        try:
            yield
        finally:
            runtime.close_subscriptions()
            await asyncio.to_thread(runtime.stop)

    app = FastAPI(
        title="poco-rt",
        version=poco_rt.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # api_docs serves /docs from the package
        redoc_url=None,
    )
    app.add_middleware(
        BodyGuard,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_s,
        budget=BodyBudget(settings.max_buffered_body_bytes),
        auth_token=settings.auth_token,
    )
    app.add_middleware(HostGuard, hosts=settings.http_hosts(), origins=frozenset(settings.allowed_origins))
    app.state.runtime = runtime
    install_error_handlers(app)
    api = (
        health, metrics, server_info, sessions, context, forecasts, accuracy, frames, bundles, inference_v2, jobs,
        websocket,
    )  # fmt: skip
    for module in (*api, api_docs, dashboard):  # the page's `/` and `/static` last: they never shadow an API route
        app.include_router(module.router)
    return app
