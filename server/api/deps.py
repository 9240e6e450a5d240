"""Dependencies shared by the routers, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket, status

from poco_rt.server.auth import bearer_token_matches
from poco_rt.server.runtime import ServerRuntime


def get_runtime(request: Request) -> ServerRuntime:
    return request.app.state.runtime


RuntimeDep = Annotated[ServerRuntime, Depends(get_runtime)]


def token_matches(runtime: ServerRuntime, authorization: str | None, query_token: str | None = None) -> bool:
    """Whether a request carries the configured bearer token (always true when none is configured)."""
    return bearer_token_matches(runtime.settings.auth_token, authorization, query_token)


def require_token(request: Request, runtime: RuntimeDep) -> None:
    if not token_matches(runtime, request.headers.get("authorization")):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = [Depends(require_token)]  # router-level: every route of the router needs the token


def websocket_runtime(websocket: WebSocket) -> ServerRuntime:
    return websocket.app.state.runtime


WebSocketRuntimeDep = Annotated[ServerRuntime, Depends(websocket_runtime)]
