"""Response and request bodies more than one router uses. Legend: N units, C context frames, P horizon."""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from poco_rt.bundle import SESSION_NAME_PATTERN
from poco_rt.server.forecasts import PublishedForecast
from poco_rt.wire import ForecastIntervals

SessionName = Annotated[str, Path(pattern=SESSION_NAME_PATTERN, description="stream (session) name")]
NPY_MEDIA_TYPE = "application/x-npy"
UnitList = Annotated[
    str | None,
    Query(pattern=r"^\d{1,7}(,\d{1,7})*$", max_length=16_384, description="unit indices, e.g. 0,5,12 (default: all)"),
]


def unit_indices(units: str | None, unit_count: int) -> list[int] | None:
    """The indices a `UnitList` query names (None: all), each checked against the unit count: 422 otherwise."""
    if units is None:
        return None
    indices = [int(index) for index in units.split(",")]
    outside = [index for index in indices if index >= unit_count]
    if outside:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"unit {outside[0]} is out of range: there are {unit_count} units, 0..{unit_count - 1}",
        )
    return indices


class FieldProblem(BaseModel):
    """One invalid part of a request, as FastAPI's validation reports it (it also echoes `input` and `ctx`)."""

    loc: list[str | int] = Field(description="where: body, path, query or header, then the field")
    msg: str
    type: str


class Refusal(BaseModel):
    """A refused request's body: a sentence saying what is wrong (and how to fix it), or the invalid fields."""

    detail: str | list[FieldProblem]


# A router's `responses`: its 422s carry a sentence (a frame or context the server refuses) as well as
# FastAPI's field list, and the schema says so.
REFUSED = {422: {"model": Refusal, "description": "refused: malformed, or naming something the server refuses"}}


IntervalLevels = Annotated[
    str | None,
    Query(
        pattern=r"^0?\.\d{1,6}(,0?\.\d{1,6})*$",
        max_length=200,
        description="interval levels to include, e.g. 0.8,0.95 (each one the server tracks; default: none)",
    ),
]


def parse_levels(levels: str | None, tracked: tuple[float, ...]) -> tuple[float, ...]:
    """The levels an `IntervalLevels` query names; ValueError for one the server does not track."""
    if levels is None:
        return ()
    asked = tuple(float(level) for level in levels.split(","))
    unknown = [level for level in asked if not any(abs(level - known) < 1e-6 for known in tracked)]
    if unknown:
        raise ValueError(f"no {unknown[0]} interval: the server tracks {list(tracked)} (setting interval_levels)")
    return asked


def interval_levels(levels: str | None, tracked: tuple[float, ...]) -> tuple[float, ...]:
    """`parse_levels` for a REST route: a level the server does not track is a 422 naming those it does."""
    try:
        return parse_levels(levels, tracked)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None


class IntervalOut(BaseModel):
    level: float = Field(description="coverage the interval is calibrated for, e.g. 0.95")
    lower: list[list[float]] = Field(description="(N, P) lower bounds, raw units")
    upper: list[list[float]] = Field(description="(N, P) upper bounds, raw units")


class ForecastOut(BaseModel):
    session: str
    frame_index: int = Field(description="the frame this forecast follows; it covers the next P frames")
    model_version: str = Field(description="the bundle version (network hash) that made it")
    calibration_hash: str = Field(description="short hash of the session embeddings that made it")
    acquisition_time_ns: int
    received_ns: int
    inferred_ns: int
    sent_ns: int
    unit_count: int
    horizon: int
    values: list[list[float]] = Field(description="(N, P) forecast in raw units, unit by unit")
    intervals: list[IntervalOut] | None = Field(
        default=None,
        description="the levels asked for with ?intervals=; empty while the session's live accuracy warms up",
    )

    @classmethod
    def of(cls, forecast: PublishedForecast, levels: tuple[float, ...] = ()) -> ForecastOut:
        header = forecast.header
        intervals = None
        if levels:
            carried = forecast.intervals
            intervals = [] if carried is None else [cls._interval(carried, level) for level in levels]
        return cls(
            session=header.session,
            frame_index=header.frame_index,
            model_version=header.model_version,
            calibration_hash=forecast.calibration_hash,
            acquisition_time_ns=header.acquisition_time_ns,
            received_ns=header.received_ns,
            inferred_ns=header.inferred_ns,
            sent_ns=header.sent_ns,
            unit_count=header.unit_count,
            horizon=header.horizon,
            values=forecast.values.tolist(),
            intervals=intervals,
        )

    @staticmethod
    def _interval(carried: ForecastIntervals, level: float) -> IntervalOut:
        lower, upper = carried.bounds(level)
        return IntervalOut(level=level, lower=lower.tolist(), upper=upper.tolist())


def float32_array(values: list[float] | list[list[float]]) -> np.ndarray:
    """Posted JSON numbers as float32; those beyond its range become +-inf, refused as non-finite by the caller.

    As a float64 frame on the wire does (`poco_rt.wire.decode_frame_into`), and without numpy's
    overflow warning, which the test suite turns into an error.
    """
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float32)


def npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()
