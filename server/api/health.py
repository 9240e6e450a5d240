"""/healthz (the process answers) and /readyz (bundle loaded, recorder and ingest running); no token needed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from poco_rt.server.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    readiness = runtime.readiness()
    content: dict[str, object] = {"ready": readiness.ready}
    if readiness.ingest_failure is not None:
        content["ingest_failure"] = readiness.ingest_failure
    return JSONResponse(status_code=200 if readiness.ready else 503, content=content)
