"""/v1/server: what this server is and where its ZeroMQ sockets listen (clients read the ports here)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

import poco_rt
from poco_rt.server.api.deps import Authorized, RuntimeDep

router = APIRouter(prefix="/v1", tags=["server"], dependencies=Authorized)


class ServerInfo(BaseModel):
    poco_rt_version: str
    active_bundle: str = Field(description="id of the bundle new sessions use")
    model_version: str = Field(description="its network's version, as forecasts are tagged")
    frame_endpoint: str
    frame_socket: str
    forecast_endpoint: str
    grpc_endpoint: str | None = Field(default=None, description="Open Inference Protocol gRPC host:port, if served")
    context_frames: int
    horizon: int
    max_gap_fill_frames: int
    stall_after_s: float


@router.get("/server")
def server_info(runtime: RuntimeDep) -> ServerInfo:
    bundle = runtime.bundles.active.bundle
    endpoints = runtime.endpoints
    return ServerInfo(
        poco_rt_version=poco_rt.__version__,
        active_bundle=runtime.bundles.active.id,
        model_version=runtime.bundles.active.version,
        frame_endpoint=endpoints.frames if endpoints else "",
        frame_socket=runtime.settings.frame_socket.value,
        forecast_endpoint=endpoints.forecasts if endpoints else "",
        grpc_endpoint=runtime.grpc.address if runtime.grpc else None,
        context_frames=bundle.context_frames,
        horizon=bundle.horizon,
        max_gap_fill_frames=runtime.settings.max_gap_fill_frames,
        stall_after_s=runtime.settings.stall_after_s,
    )
