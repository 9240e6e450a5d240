"""/v1/sessions/{name}/context: the last frames a session took, in raw units, for plots (the dashboard's data).

Legend: n the units asked for, k the frames returned (k <= C, the bundle's context). A poller passes
`after=<the last index it has>` and gets each new frame once, however late its request is answered.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import REFUSED, SessionName, UnitList, unit_indices
from poco_rt.server.api.strict_json import StrictJSONRoute

router = APIRouter(
    prefix="/v1/sessions", tags=["sessions"], dependencies=Authorized, route_class=StrictJSONRoute, responses=REFUSED
)


class ContextOut(BaseModel):
    session: str
    frame_index_last: int | None = Field(description="the newest frame's index (the last column); null before any")
    unit_indices: list[int] = Field(description="(n,) positions of the units in the session")
    unit_ids: list[str] = Field(description="(n,) the calibration's unit ids")
    mean: list[float] = Field(description="(n,) the calibration's per-unit mean, raw units")
    std: list[float] = Field(description="(n,) the calibration's per-unit std: POCO's score divides errors by it")
    values: list[list[float]] = Field(description="(n, k) raw frames, oldest first; frame indices run consecutively")


@router.get("/{name}/context")
def session_context(
    name: SessionName,
    runtime: RuntimeDep,
    units: UnitList = None,
    after: Annotated[int | None, Query(ge=0, description="only frames with a higher index (default: all)")] = None,
) -> ContextOut:
    """Copied on the ingest thread between two frames: at most C, and only those since an open or a reset."""
    unit_count = runtime.session_status(name).unit_count
    view = runtime.read_context(name, units=unit_indices(units, unit_count), after=after)
    return ContextOut(
        session=view.session,
        frame_index_last=view.frame_index_last,
        unit_indices=view.unit_indices.tolist(),
        unit_ids=list(view.unit_ids),
        mean=view.mean.tolist(),
        std=view.std.tolist(),
        values=view.values.tolist(),
    )
