"""Live accuracy per unit, and the crossing probability a controller asks for, from the calibrated residuals.

Legend: N units, L interval levels, P horizon. Both read the session's live accuracy
(poco_rt.server.live_accuracy), which the ingest thread updates as each forecast's target frames
arrive; a reply is a copy taken between two of its updates or during one (plain floats either way).
"""

from __future__ import annotations

import enum
import math
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import REFUSED, SessionName
from poco_rt.server.api.strict_json import StrictJSONRoute

router = APIRouter(
    prefix="/v1/sessions", tags=["accuracy"], dependencies=Authorized, route_class=StrictJSONRoute, responses=REFUSED
)


ACCURACY_OFF = "live accuracy is turned off on this server (setting live_accuracy)"


class LevelCoverage(BaseModel):
    level: float
    coverage: float | None = Field(description="share of targets inside the served intervals, all units and steps")
    unit_coverage: list[float | None] = Field(description="(N,) the same per unit; null before any was counted")
    unit_width: list[float] = Field(description="(N,) mean half-width over steps now, in units of the unit's std")


class AccuracyOut(BaseModel):
    session: str
    calibrated: bool = Field(description="every step has its warm-up residuals: intervals are being served")
    scored_frames: int = Field(description="frames that completed a forecast since the session's model was set")
    unit_score: list[float | None] = Field(
        description="(N,) POCO score now, 1 - MSE_model / MSE_copy-last over the recent frames; null before any"
    )
    unit_rmse: list[float | None] = Field(description="(N,) forecast RMSE now, in units of the unit's std")
    levels: list[LevelCoverage]


class Crossing(enum.StrEnum):
    ABOVE = "above"
    BELOW = "below"


class CrossingOut(BaseModel):
    session: str
    frame_index: int = Field(description="the forecast's frame; it covers the next P frames")
    unit: int
    value: float
    direction: Crossing
    probability: float = Field(description="of reaching the value at some step 1..P of the latest forecast")
    paths: int = Field(description="recent residual paths the probability is the share of")


@router.get("/{name}/accuracy")
def session_accuracy(name: SessionName, runtime: RuntimeDep) -> AccuracyOut:
    readout = runtime.accuracy_readout(name)
    if readout is None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=ACCURACY_OFF)
    levels = [
        LevelCoverage(
            level=level,
            coverage=_finite(readout.coverage_all[index]),
            unit_coverage=_finite_list(readout.coverage[index]),
            unit_width=readout.width[index].tolist(),
        )
        for index, level in enumerate(readout.levels)
    ]
    return AccuracyOut(
        session=name,
        calibrated=readout.calibrated,
        scored_frames=readout.scored_frames,
        unit_score=_finite_list(readout.score),
        unit_rmse=_finite_list(readout.model_rmse),
        levels=levels,
    )


@router.get("/{name}/crossing")
def crossing_probability(
    name: SessionName,
    runtime: RuntimeDep,
    unit: Annotated[int, Query(ge=0, description="unit index")],
    value: Annotated[float, Query(allow_inf_nan=False, description="threshold, raw units")],
    direction: Annotated[Crossing, Query(description="above: reaches value or more; below: value or less")] = (
        Crossing.ABOVE
    ),
) -> CrossingOut:
    """P(the unit reaches `value` within the latest forecast's horizon), from the recent residual paths."""
    stream = runtime.session_status(name)  # 404 for a session that is not open
    forecast = runtime.latest_forecast(name)
    if forecast is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"session {name!r} has made no forecast yet")
    if unit >= stream.unit_count:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"unit {unit} is out of range: there are {stream.unit_count} units, 0..{stream.unit_count - 1}",
        )
    if not stream.accuracy_enabled:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=ACCURACY_OFF)
    above = direction is Crossing.ABOVE
    probability, paths = runtime.crossing_probability(name, forecast, unit=unit, value=value, above=above)
    if probability is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"session {name!r} has no fully scored forecast yet: wait until one forecast's P frames arrive",
        )
    return CrossingOut(
        session=name,
        frame_index=forecast.header.frame_index,
        unit=unit,
        value=value,
        direction=direction,
        probability=probability,
        paths=paths,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _finite_list(values: np.ndarray) -> list[float | None]:
    return [value if math.isfinite(value) else None for value in values.tolist()]
