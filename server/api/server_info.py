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
    server = runtime.describe()
    endpoints = server.endpoints
    return ServerInfo(
        poco_rt_version=poco_rt.__version__,
        active_bundle=server.active_bundle,
        model_version=server.model_version,
        frame_endpoint=endpoints.frames if endpoints else "",
        frame_socket=server.frame_socket,
        forecast_endpoint=endpoints.forecasts if endpoints else "",
        grpc_endpoint=server.grpc_endpoint,
        context_frames=server.context_frames,
        horizon=server.horizon,
        max_gap_fill_frames=server.max_gap_fill_frames,
        stall_after_s=server.stall_after_s,
    )
