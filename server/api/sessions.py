"""/v1/sessions: open (a known calibration or a new animal), list, inspect, close, swap, and fine-tune live."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Self

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field, model_validator

from poco_rt.server.adaptation import AutoAdapt, FinetuneOptions
from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.jobs import JobInfo
from poco_rt.server.api.schemas import REFUSED, SESSION_NAME_PATTERN, SessionName
from poco_rt.server.api.strict_json import StrictJSONRoute
from poco_rt.server.session import SessionState
from poco_rt.server.session_status import SessionStatus

router = APIRouter(
    prefix="/v1/sessions", tags=["sessions"], dependencies=Authorized, route_class=StrictJSONRoute, responses=REFUSED
)


class SessionOpen(BaseModel):
    name: str = Field(pattern=SESSION_NAME_PATTERN, description="stream name the frames carry")
    calibration: str | None = Field(
        default=None, pattern=SESSION_NAME_PATTERN, description="bundle session to use (default: the same name)"
    )
    units: int | None = Field(
        default=None, ge=1, description="a new animal: its unit count (zero-shot, then fine-tuned live)"
    )
    unit_ids: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, max_length=1_000_000, description="a new animal: its unit ids (default 0..N-1)"
    )
    adapt: AutoAdapt | None = Field(default=None, description="a new animal: fine-tune it by itself as it records")
    fresh: bool = Field(
        default=False, description="a new animal: start zero-shot even if this stream was adapted before"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.calibration is not None and (self.units is not None or self.unit_ids is not None):
            raise ValueError("give either calibration (a known animal) or units / unit_ids (a new one), not both")
        return self


class AdaptationRoundOut(BaseModel):
    job_id: str
    frames: int = Field(description="recorded frames it trained, validated and was scored on")
    started_from: str = Field(description="the calibration the round started from")
    state: str = Field(description="queued, running, then swapped or kept, or the job's failed state")
    candidate: str | None
    candidate_score: float | None = Field(description="held-out score (POCO's) of the new calibration")
    baseline_score: float | None = Field(description="the same of the calibration it started from")
    swapped: bool
    outcome: str = Field(description="what happened, and why")


class AdaptationOut(BaseModel):
    auto: AutoAdapt | None = Field(description="automatic rounds' options (null: rounds on request only)")
    stopped: str | None = Field(description="why automatic rounds ended")
    rounds: list[AdaptationRoundOut]


class SessionSwap(BaseModel):
    calibration: str | None = Field(default=None, pattern=SESSION_NAME_PATTERN, description="new bundle session")
    bundle: str | None = Field(default=None, description="id of a loaded bundle (default: the active one)")


class SessionInfo(BaseModel):
    name: str
    state: SessionState
    calibration: str = Field(description="the calibration forecasting now: a bundle session, or NAME.zero-shot")
    calibration_hash: str
    zero_shot: bool = Field(description="a new animal's unseen-unit embeddings and online normalisation")
    adaptation: AdaptationOut | None = Field(description="a new animal's fine-tune rounds (null for other streams)")
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
    def of(cls, stream: SessionStatus) -> SessionInfo:
        adaptation = stream.adaptation
        return cls(
            name=stream.name,
            state=stream.state,
            calibration=stream.calibration,
            calibration_hash=stream.calibration_hash,
            zero_shot=stream.zero_shot,
            adaptation=None
            if adaptation is None
            else AdaptationOut(
                auto=adaptation.auto,
                stopped=adaptation.stopped,
                rounds=[AdaptationRoundOut(**dataclasses.asdict(r)) for r in adaptation.rounds],
            ),
            model_version=stream.model_version,
            bundle=stream.bundle,
            unit_count=stream.unit_count,
            context_frames=stream.context_frames,
            horizon=stream.horizon,
            frames_in_context=stream.frames_in_context,
            last_frame_index=stream.last_frame_index,
            last_acquisition_time_ns=stream.last_acquisition_time_ns,
            last_received_ns=stream.last_received_ns,
            frames_accepted=stream.frames_accepted,
            frames_gap_filled=stream.frames_gap_filled,
            resets=stream.resets,
            frames_dropped=stream.frames_dropped,
            frames_rejected=stream.frames_rejected,
            forecasts=stream.forecasts,
            recording=str(stream.recording) if stream.recording is not None else None,
        )


@router.get("")
def list_sessions(runtime: RuntimeDep) -> list[SessionInfo]:
    return [SessionInfo.of(status) for status in runtime.session_statuses()]


@router.post("", status_code=status.HTTP_201_CREATED)
def open_session(body: SessionOpen, runtime: RuntimeDep) -> SessionInfo:
    session = runtime.open_session(
        body.name, body.calibration, units=body.units, unit_ids=body.unit_ids, adapt=body.adapt, fresh=body.fresh
    )
    return SessionInfo.of(runtime.status_of(session))


@router.get("/{name}")
def get_session(name: SessionName, runtime: RuntimeDep) -> SessionInfo:
    return SessionInfo.of(runtime.session_status(name))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def close_session(name: SessionName, runtime: RuntimeDep) -> Response:
    runtime.close_session(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{name}/model")
def swap_session_model(name: SessionName, body: SessionSwap, runtime: RuntimeDep) -> SessionInfo:
    """Hot swap: the session's next frame is forecast with the new embeddings and/or network; none is dropped."""
    session = runtime.swap_session(name, calibration=body.calibration, bundle_id=body.bundle)
    return SessionInfo.of(runtime.status_of(session))


@router.post("/{name}/finetune", status_code=status.HTTP_202_ACCEPTED)
def finetune_session(name: SessionName, runtime: RuntimeDep, body: FinetuneOptions | None = None) -> JobInfo:
    """Fine-tune the stream's embeddings on what it recorded so far, in a job worker (needs the train extra
    there); the result is swapped in between two frames if it beats the current calibration on held-out frames.
    409 while too few frames are recorded (the message says how many are needed) or a round is in progress."""
    return JobInfo.of(runtime.start_adaptation_round(name, body))
