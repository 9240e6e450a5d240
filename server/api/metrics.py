"""/metrics: Prometheus text format, with session states counted at scrape time."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from poco_rt.server.api.deps import Authorized, RuntimeDep

router = APIRouter(tags=["metrics"], dependencies=Authorized)


@router.get("/metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.render_metrics(), media_type=CONTENT_TYPE_LATEST)
