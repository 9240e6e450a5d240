"""JSON request bodies parsed strictly: finite numbers and valid text only, and a reason for every refusal.

Python's json module, which FastAPI parses bodies with, accepts `NaN`, `Infinity` and numbers
beyond float64 (`1e999` becomes inf), none of which JSON (RFC 8259) has. Let through, they reach
handlers as non-finite floats: a job parameter bounded by `ge=0` takes `Infinity`, and a
validation error that echoes a NaN input cannot itself be written as JSON (a 500). It also
accepts a lone UTF-16 surrogate escape (backslash-u D800 to DFFF, unpaired), a string that cannot
be written back as UTF-8, so any error message echoing one was a 500 too. Every router that takes
a body therefore reads it with `StrictJSONRequest`, which refuses such numbers and strings, and
says what is wrong with a body that is not UTF-8 or nests too deeply, where FastAPI says only
"There was an error parsing the body". Malformed JSON stays FastAPI's 422 `json_invalid`, which
gives the position.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # how a lone surrogate gets into parsed text


OFF_LOOP_BYTES = 256 * 1024  # bodies above this are parsed in a worker thread, not on the event loop


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        """The parsed body; a large one parsed off the event loop, so that /healthz, the WebSockets and
        other requests are served between its floats (the parser calls back into Python for each)."""
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > OFF_LOOP_BYTES:
                self._json = await asyncio.to_thread(parse_json_body, body)
            else:
                self._json = parse_json_body(body)
        return self._json


def parse_json_body(body: bytes) -> Any:
    """The body as JSON, or an HTTPException saying why not (json.JSONDecodeError passes through for FastAPI)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=f"the body is not UTF-8 (byte {error.start} cannot be decoded); send JSON as UTF-8 text",
        ) from error
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="the body's JSON nests arrays or objects too deeply to be read"
        ) from error
    if _SURROGATE_ESCAPE.search(text):  # a pair is fine (json joins it); only then is the value walked
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail="the body holds a string with an unpaired UTF-16 surrogate escape, which is not text; "
                "send valid Unicode",
            ) from error
    return value


def _refuse_constant(name: str) -> float:
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=f"the body holds {name}, which is not a JSON number; send finite numbers only",
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"the body holds {text[:40]}, beyond the range of a float64; send finite numbers only",
        )
    return value


class StrictJSONRoute(APIRoute):
    """An APIRoute whose handler reads its body with StrictJSONRequest (every router's `route_class`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
