"""Forecasts over REST: a session's latest (JSON, or .npy by Accept), and a stateless one for a posted context."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from poco_rt.errors import BadShape, NonFiniteValues
from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import NPY_MEDIA_TYPE, SESSION_NAME_PATTERN, ForecastOut, SessionName, npy_bytes

router = APIRouter(prefix="/v1", tags=["forecasts"], dependencies=Authorized)

LATEST_RESPONSES = {200: {"content": {NPY_MEDIA_TYPE: {}}, "description": "JSON, or (N, P) float32 .npy by Accept"}}


class ContextIn(BaseModel):
    calibration: str = Field(pattern=SESSION_NAME_PATTERN, description="bundle session whose units these are")
    frames: list[list[float]] = Field(description="(C, N) raw frames, oldest first")


class StatelessForecastOut(BaseModel):
    model_version: str
    calibration: str
    values: list[list[float]] = Field(description="(N, P) forecast in raw units")


@router.get("/sessions/{name}/forecast", response_model=ForecastOut, responses=LATEST_RESPONSES)
def latest_forecast(name: SessionName, request: Request, runtime: RuntimeDep) -> ForecastOut | Response:
    runtime.sessions.get(name)  # 404 for a session that is not open
    forecast = runtime.latest.get(name)
    if forecast is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"session {name!r} has made no forecast yet")
    if NPY_MEDIA_TYPE in request.headers.get("accept", ""):
        header = forecast.header
        return Response(
            npy_bytes(forecast.values),
            media_type=NPY_MEDIA_TYPE,
            headers={
                "X-Poco-Frame-Index": str(header.frame_index),
                "X-Poco-Model-Version": header.model_version,
                "X-Poco-Calibration-Hash": forecast.calibration_hash,
                "X-Poco-Acquisition-Time-Ns": str(header.acquisition_time_ns),
                "X-Poco-Sent-Ns": str(header.sent_ns),
            },
        )
    return ForecastOut.of(forecast)


@router.post("/forecast")
def stateless_forecast(body: ContextIn, runtime: RuntimeDep) -> StatelessForecastOut:
    """Forecast from a posted context with the active bundle; nothing is stored, no session is touched."""
    loaded = runtime.bundles.active
    calibration = loaded.bundle.session(body.calibration)
    frames = np.asarray(body.frames, dtype=np.float32)
    expected = (loaded.bundle.context_frames, calibration.num_units)
    if frames.shape != expected:
        raise BadShape(f"frames have shape {frames.shape}; {body.calibration!r} needs (C, N) = {expected}")
    if not np.isfinite(frames).all():
        raise NonFiniteValues("frames hold NaN or inf; send finite values")
    values = loaded.engine.forecast(body.calibration, frames)
    return StatelessForecastOut(model_version=loaded.version, calibration=body.calibration, values=values.tolist())
