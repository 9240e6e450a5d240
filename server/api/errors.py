"""The server's errors as HTTP statuses, in one table, so handlers stay free of try/except."""

from __future__ import annotations

import concurrent.futures

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from poco_rt.errors import (
    BundleError,
    DataDirUnusable,
    FrameError,
    IncompatibleSwap,
    JobQueueFull,
    JobStateConflict,
    JobStoreUnavailable,
    NotRunning,
    SessionExists,
    SessionLimitReached,
    UnknownBundle,
    UnknownJob,
    UnknownSession,
)

STATUS_OF: dict[type[Exception], int] = {
    UnknownSession: status.HTTP_404_NOT_FOUND,
    UnknownBundle: status.HTTP_404_NOT_FOUND,
    UnknownJob: status.HTTP_404_NOT_FOUND,
    JobQueueFull: status.HTTP_429_TOO_MANY_REQUESTS,
    JobStateConflict: status.HTTP_409_CONFLICT,
    SessionExists: status.HTTP_409_CONFLICT,
    SessionLimitReached: status.HTTP_409_CONFLICT,
    IncompatibleSwap: status.HTTP_409_CONFLICT,
    BundleError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    FrameError: status.HTTP_422_UNPROCESSABLE_CONTENT,  # a posted context or frame the wire would refuse too
    NotRunning: status.HTTP_503_SERVICE_UNAVAILABLE,
    JobStoreUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,  # locked, full or corrupt: the message says which
    DataDirUnusable: status.HTTP_503_SERVICE_UNAVAILABLE,
    concurrent.futures.TimeoutError: status.HTTP_503_SERVICE_UNAVAILABLE,  # the ingest thread did not answer
}


def install_error_handlers(app: FastAPI) -> None:
    for error_type, code in STATUS_OF.items():
        app.add_exception_handler(error_type, _handler(code))


def _handler(code: int):
    async def handle(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(status_code=code, content={"detail": str(error) or type(error).__name__})

    return handle
