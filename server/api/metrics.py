"""/metrics: Prometheus text format, with session states counted at scrape time."""

from __future__ import annotations

import time
from collections import Counter

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.session import SessionState

router = APIRouter(tags=["metrics"], dependencies=Authorized)


@router.get("/metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    now = time.monotonic()
    states = Counter(
        session.state(now, runtime.settings.stall_after_s) for session in runtime.sessions.snapshot().values()
    )
    for state in SessionState:
        runtime.metrics.sessions.labels(state.value).set(states[state])
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
