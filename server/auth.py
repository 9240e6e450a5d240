"""The bearer token check every transport shares (REST, WebSocket, gRPC), so that one token means one rule."""

from __future__ import annotations

import secrets

from pydantic import SecretStr

BEARER = "bearer "


def bearer_token_matches(expected: SecretStr | None, authorization: str | None, query_token: str | None = None) -> bool:
    """Whether `Authorization: Bearer <token>` (or, where a client cannot set headers, `query_token`) is the
    configured token; always true when none is configured. Compared in constant time."""
    if expected is None:
        return True
    given = query_token
    if authorization is not None and authorization.lower().startswith(BEARER):
        given = authorization[len(BEARER) :]
    return given is not None and secrets.compare_digest(given.encode(), expected.get_secret_value().encode())
