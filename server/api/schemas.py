"""Response and request bodies more than one router uses. Legend: N units, C context frames, P horizon."""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from poco_rt.bundle import SESSION_NAME_PATTERN
from poco_rt.server.forecasts import PublishedForecast

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

    @classmethod
    def of(cls, forecast: PublishedForecast) -> ForecastOut:
        header = forecast.header
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
        )


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
