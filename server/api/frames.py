"""/v1/sessions/{name}/frames: frames over HTTP for low-rate use; the same pipeline and counters as ZeroMQ."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import REFUSED, SessionName, float32_array
from poco_rt.server.api.strict_json import StrictJSONRoute
from poco_rt.server.pipeline import FrameStatus

router = APIRouter(
    prefix="/v1/sessions", tags=["frames"], dependencies=Authorized, route_class=StrictJSONRoute, responses=REFUSED
)

STATUS_CODE_OF = {FrameStatus.ACCEPTED: 202, FrameStatus.DROPPED: 200, FrameStatus.REJECTED: 422}
U64_MAX, I64_MIN, I64_MAX = 2**64 - 1, -(2**63), 2**63 - 1  # the wire header's frame_index and time fields


class FrameIn(BaseModel):
    frame_index: int = Field(ge=0, le=U64_MAX, description="the acquisition's frame counter")
    acquisition_time_ns: int = Field(ge=I64_MIN, le=I64_MAX, description="acquisition PC time.time_ns() of the frame")
    values: list[float] = Field(description="(N,) raw values, one per unit")


class FrameResultOut(BaseModel):
    status: FrameStatus
    label: str = Field(description="frame order when accepted or dropped; the reject reason when rejected")
    detail: str = ""


@router.post("/{name}/frames", status_code=202, response_model=FrameResultOut)
def post_frame(name: SessionName, body: FrameIn, runtime: RuntimeDep) -> JSONResponse:
    result = runtime.ingest_frame(
        name,
        frame_index=body.frame_index,
        acquisition_time_ns=body.acquisition_time_ns,
        values=float32_array(body.values),
    )
    code = 404 if result.unknown_session else STATUS_CODE_OF[result.status]
    out = FrameResultOut(status=result.status, label=result.label, detail=result.detail)
    return JSONResponse(status_code=code, content=out.model_dump(mode="json"))
