"""Dependencies shared by the routers, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket, status

from poco_rt.server.runtime import ServerRuntime


def get_runtime(request: Request) -> ServerRuntime:
    return request.app.state.runtime


RuntimeDep = Annotated[ServerRuntime, Depends(get_runtime)]


def require_token(request: Request, runtime: RuntimeDep) -> None:
    if not runtime.authorizes(request.headers.get("authorization")):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = [Depends(require_token)]  # router-level: every route of the router needs the token


def websocket_runtime(websocket: WebSocket) -> ServerRuntime:
    return websocket.app.state.runtime


WebSocketRuntimeDep = Annotated[ServerRuntime, Depends(websocket_runtime)]
