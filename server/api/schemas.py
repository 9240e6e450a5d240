"""Response and request bodies more than one router uses. Legend: N units, C context frames, P horizon."""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import Path
from pydantic import BaseModel, Field

from poco_rt.server.forecasts import PublishedForecast

SESSION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # the bundle's and the wire's session rule
SessionName = Annotated[str, Path(pattern=SESSION_NAME_PATTERN, description="stream (session) name")]
NPY_MEDIA_TYPE = "application/x-npy"


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


def npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue()
