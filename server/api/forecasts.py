"""Forecasts over REST: a session's latest (JSON, or .npy by Accept), and a stateless one for a posted context."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field, field_validator

from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import (
    NPY_MEDIA_TYPE,
    REFUSED,
    SESSION_NAME_PATTERN,
    ForecastOut,
    IntervalLevels,
    SessionName,
    float32_array,
    interval_levels,
    npy_bytes,
)
from poco_rt.server.api.strict_json import StrictJSONRoute

router = APIRouter(
    prefix="/v1", tags=["forecasts"], dependencies=Authorized, route_class=StrictJSONRoute, responses=REFUSED
)

LATEST_RESPONSES = {200: {"content": {NPY_MEDIA_TYPE: {}}, "description": "JSON, or (N, P) float32 .npy by Accept"}}


class ContextIn(BaseModel):
    calibration: str = Field(pattern=SESSION_NAME_PATTERN, description="bundle session whose units these are")
    frames: list[list[float]] = Field(description="(C, N) raw frames, oldest first")

    @field_validator("frames")
    @classmethod
    def _rows_of_one_length(cls, frames: list[list[float]]) -> list[list[float]]:
        """Checked here: numpy refuses a ragged list with a ValueError that would otherwise be a 500."""
        for index, row in enumerate(frames):
            if len(row) != len(frames[0]):
                raise ValueError(f"frame {index} has {len(row)} values, frame 0 has {len(frames[0])}: send (C, N)")
        return frames


class StatelessForecastOut(BaseModel):
    model_version: str
    calibration: str
    values: list[list[float]] = Field(description="(N, P) forecast in raw units")


@router.get("/sessions/{name}/forecast", response_model=ForecastOut, responses=LATEST_RESPONSES)
def latest_forecast(
    name: SessionName, request: Request, runtime: RuntimeDep, intervals: IntervalLevels = None
) -> ForecastOut | Response:
    """The latest forecast; `?intervals=0.8,0.95` adds those levels' bounds (JSON only)."""
    levels = interval_levels(intervals, runtime.interval_levels(name))  # 404 for a session that is not open
    forecast = runtime.latest_forecast(name)
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
    return ForecastOut.of(forecast, levels)


@router.post("/forecast")
def stateless_forecast(body: ContextIn, runtime: RuntimeDep) -> StatelessForecastOut:
    """Forecast from a posted context with the active bundle; nothing is stored, no session is touched."""
    forecast = runtime.stateless_forecast(body.calibration, float32_array(body.frames))
    return StatelessForecastOut(
        model_version=forecast.model_version, calibration=body.calibration, values=forecast.values.tolist()
    )
