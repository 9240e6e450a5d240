"""The server's errors as HTTP statuses, in one table, so handlers stay free of try/except.

Every refusal is JSON, whatever the request held. Under /v2 (the Open Inference Protocol) the body
is the protocol's `{"error": "..."}` and a malformed request is a 400, as its clients expect;
elsewhere it is `{"detail": ...}`. FastAPI's own validation handler echoes each invalid input in
its reply, and a body that is not JSON reaches it as raw bytes, which it cannot write as JSON (a
500 for any body of non-UTF-8 bytes sent with a non-JSON Content-Type); here such an input is
left out and the message says how the body was taken.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from poco_rt.errors import (
    AdaptationBusy,
    BundleError,
    DataDirUnusable,
    FrameError,
    IncompatibleSwap,
    InferenceRequestError,
    InvalidSessionOptions,
    JobQueueFull,
    JobStateConflict,
    JobStoreUnavailable,
    NotEnoughFrames,
    NotRunning,
    SessionExists,
    SessionLimitReached,
    UnknownBundle,
    UnknownJob,
    UnknownModel,
    UnknownSession,
)

STATUS_OF: dict[type[Exception], int] = {
    UnknownSession: status.HTTP_404_NOT_FOUND,
    UnknownBundle: status.HTTP_404_NOT_FOUND,
    UnknownJob: status.HTTP_404_NOT_FOUND,
    UnknownModel: status.HTTP_404_NOT_FOUND,
    JobQueueFull: status.HTTP_429_TOO_MANY_REQUESTS,
    JobStateConflict: status.HTTP_409_CONFLICT,
    SessionExists: status.HTTP_409_CONFLICT,
    SessionLimitReached: status.HTTP_409_CONFLICT,
    IncompatibleSwap: status.HTTP_409_CONFLICT,
    InferenceRequestError: status.HTTP_400_BAD_REQUEST,  # the Open Inference Protocol's status for a bad request
    NotEnoughFrames: status.HTTP_409_CONFLICT,
    InvalidSessionOptions: status.HTTP_422_UNPROCESSABLE_CONTENT,
    AdaptationBusy: status.HTTP_409_CONFLICT,
    BundleError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    FrameError: status.HTTP_422_UNPROCESSABLE_CONTENT,  # a posted context or frame the wire would refuse too
    NotRunning: status.HTTP_503_SERVICE_UNAVAILABLE,
    JobStoreUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,  # locked, full or corrupt: the message says which
    DataDirUnusable: status.HTTP_503_SERVICE_UNAVAILABLE,
    concurrent.futures.TimeoutError: status.HTTP_503_SERVICE_UNAVAILABLE,  # the ingest thread did not answer
}
PROTOCOL_PREFIX = "/v2"


def speaks_protocol(path: str) -> bool:
    """Whether a request path is the Open Inference Protocol's, whose refusals are `{"error": "..."}`."""
    return path == PROTOCOL_PREFIX or path.startswith(PROTOCOL_PREFIX + "/")


def install_error_handlers(app: FastAPI) -> None:
    for error_type, code in STATUS_OF.items():
        app.add_exception_handler(error_type, _handler(code))
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)


def refusal(request: Request, code: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    if speaks_protocol(request.url.path):
        return JSONResponse(status_code=code, content={"error": _sentence(detail)}, headers=headers)
    return JSONResponse(status_code=code, content={"detail": detail}, headers=headers)


def _handler(code: int):
    async def handle(request: Request, error: Exception) -> JSONResponse:
        return refusal(request, code, str(error) or type(error).__name__)

    return handle


async def _http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return refusal(request, error.status_code, error.detail, headers=getattr(error, "headers", None))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [_writable(problem, request.headers.get("content-type")) for problem in error.errors()]
    if speaks_protocol(request.url.path):
        return refusal(request, status.HTTP_400_BAD_REQUEST, problems)
    return refusal(request, status.HTTP_422_UNPROCESSABLE_CONTENT, jsonable_encoder(problems))


def _writable(problem: dict[str, Any], content_type: str | None) -> dict[str, Any]:
    """One validation problem without an input that is raw bytes: a body FastAPI did not read as JSON."""
    if not isinstance(problem.get("input"), bytes | bytearray):
        return problem
    problem = {key: value for key, value in problem.items() if key != "input"}
    problem["msg"] += (
        f" (the body was not read as JSON: its Content-Type is {content_type[:80]!r}; send application/json)"
        if content_type
        else " (the body was not read as JSON: send it with Content-Type: application/json)"
    )
    return problem


def _sentence(detail: Any) -> str:
    """A refusal's detail (a sentence, or FastAPI's list of invalid fields) as one sentence."""
    if isinstance(detail, list):
        parts = []
        for problem in detail[:3]:
            where = "/".join(str(part) for part in problem.get("loc", ()))
            parts.append(f"{where}: {problem.get('msg', '')}")
        return "; ".join(parts) or "the request is invalid"
    return str(detail)
