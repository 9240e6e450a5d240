"""/v1/sessions: open, list, inspect, close, and swap a session's embeddings or network."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from poco_rt.server.api.body import StrictJSONRoute
from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import REFUSED, SESSION_NAME_PATTERN, SessionName
from poco_rt.server.runtime import ServerRuntime
from poco_rt.server.session import SessionState, StreamSession

router = APIRouter(
    prefix="/v1/sessions", tags=["sessions"], dependencies=Authorized, route_class=StrictJSONRoute, responses=REFUSED
)


class SessionOpen(BaseModel):
    name: str = Field(pattern=SESSION_NAME_PATTERN, description="stream name the frames carry")
    calibration: str | None = Field(
        default=None, pattern=SESSION_NAME_PATTERN, description="bundle session to use (default: the same name)"
    )


class SessionSwap(BaseModel):
    calibration: str | None = Field(default=None, pattern=SESSION_NAME_PATTERN, description="new bundle session")
    bundle: str | None = Field(default=None, description="id of a loaded bundle (default: the active one)")


class SessionInfo(BaseModel):
    name: str
    state: SessionState
    calibration: str
    calibration_hash: str
    model_version: str
    bundle: str = Field(description="id of the loaded bundle the session forecasts with")
    unit_count: int
    context_frames: int
    horizon: int
    frames_in_context: int = Field(description="frames since open or the last reset, up to C")
    last_frame_index: int | None
    last_acquisition_time_ns: int | None
    last_received_ns: int | None
    frames_accepted: int
    frames_gap_filled: int
    resets: int
    frames_dropped: int = Field(description="duplicates and out-of-order frames")
    frames_rejected: int = Field(description="frames for this session refused (unit count, NaN, ...)")
    forecasts: int
    recording: str | None = Field(description="directory the session's frames are recorded in")

    @classmethod
    def of(cls, session: StreamSession, runtime: ServerRuntime) -> SessionInfo:
        model, bundle = session.model, session.model.loaded.bundle
        return cls(
            name=session.name,
            state=session.state(time.monotonic(), runtime.settings.stall_after_s),
            calibration=model.calibration.name,
            calibration_hash=model.calibration_hash,
            model_version=model.version,
            bundle=model.loaded.id,
            unit_count=session.num_units,
            context_frames=bundle.context_frames,
            horizon=bundle.horizon,
            frames_in_context=session.ring.filled,
            last_frame_index=session.last_frame_index,
            last_acquisition_time_ns=session.last_acquisition_time_ns,
            last_received_ns=session.last_received_ns,
            frames_accepted=session.frames_accepted,
            frames_gap_filled=session.frames_gap_filled,
            resets=session.resets,
            frames_dropped=session.frames_dropped,
            frames_rejected=session.frames_rejected,
            forecasts=session.forecasts,
            recording=str(session.recording.directory) if session.recording is not None else None,
        )


@router.get("")
def list_sessions(runtime: RuntimeDep) -> list[SessionInfo]:
    return [SessionInfo.of(session, runtime) for session in runtime.sessions.snapshot().values()]


@router.post("", status_code=status.HTTP_201_CREATED)
def open_session(body: SessionOpen, runtime: RuntimeDep) -> SessionInfo:
    return SessionInfo.of(runtime.open_session(body.name, body.calibration), runtime)


@router.get("/{name}")
def get_session(name: SessionName, runtime: RuntimeDep) -> SessionInfo:
    return SessionInfo.of(runtime.sessions.get(name), runtime)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def close_session(name: SessionName, runtime: RuntimeDep) -> Response:
    runtime.close_session(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{name}/model")
def swap_session_model(name: SessionName, body: SessionSwap, runtime: RuntimeDep) -> SessionInfo:
    """Hot swap: the session's next frame is forecast with the new embeddings and/or network; none is dropped."""
    session = runtime.swap_session(name, calibration=body.calibration, bundle_id=body.bundle)
    return SessionInfo.of(session, runtime)
