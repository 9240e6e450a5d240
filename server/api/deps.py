"""Dependencies shared by the routers, as `Annotated` aliases."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket, status
from pydantic import SecretStr

from poco_rt.server.runtime import ServerRuntime


def get_runtime(request: Request) -> ServerRuntime:
    return request.app.state.runtime


RuntimeDep = Annotated[ServerRuntime, Depends(get_runtime)]


def token_matches(runtime: ServerRuntime, authorization: str | None, query_token: str | None = None) -> bool:
    """Whether a request carries the configured bearer token (always true when none is configured)."""
    return bearer_token_matches(runtime.settings.auth_token, authorization, query_token)


def bearer_token_matches(expected: SecretStr | None, authorization: str | None, query_token: str | None = None) -> bool:
    """Whether `Authorization: Bearer ...` (or else `query_token`) is `expected`, compared in constant time."""
    if expected is None:
        return True
    given = query_token
    if authorization is not None and authorization.lower().startswith("bearer "):
        given = authorization[len("bearer ") :]
    return given is not None and secrets.compare_digest(given.encode(), expected.get_secret_value().encode())


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
