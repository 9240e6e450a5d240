"""A session's most recent raw frames, copied on the ingest thread: the data the dashboard draws forecasts over.

Legend: N units, C context frames; n the units asked for, k the frames returned (k <= C).

The ring buffer belongs to the ingest thread, so the copy is one command that thread runs between
two frames (n * k values copied: microseconds, and nothing when no one asks). Turning the copy
back into raw units happens on the caller's thread, with the calibration that was current when
the copy was made, so a hot swap between the two cannot mix normalisations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from poco_rt.errors import UnknownSession
from poco_rt.server.session import SessionModel, StreamSession

if TYPE_CHECKING:
    from poco_rt.server.runtime import ServerRuntime


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no single truth value
class ContextView:
    session: str
    frame_index_last: int | None  # the session's newest frame (the last column, if any); None before the first
    unit_indices: np.ndarray  # (n,) int64, positions in the session's calibration
    unit_ids: tuple[str, ...]  # (n,)
    mean: np.ndarray  # (n,) float32, the calibration's per-unit mean
    std: np.ndarray  # (n,) float32, the calibration's per-unit std: the unit POCO's score is measured in
    values: np.ndarray  # (n, k) float32, raw units, oldest frame first


def read_context(
    runtime: ServerRuntime, session: StreamSession, *, units: Sequence[int] | None, after: int | None
) -> ContextView:
    """The frames of `units` (None: all) in the context whose index is above `after` (None: all of them).

    The context holds at most C frames, and only those since the session opened or last reset. A
    reader that polls passes the last index it has and so gets every new frame exactly once, however
    late its request is answered.
    """
    indices = np.arange(session.num_units) if units is None else np.asarray(units, dtype=np.int64)

    def copy() -> tuple[np.ndarray, int | None, SessionModel]:
        if runtime.sessions.snapshot().get(session.name) is not session:
            raise UnknownSession(f"session {session.name!r} was closed while its context was read")
        last, filled = session.last_frame_index, session.ring.filled
        count = filled if after is None or last is None else max(0, min(filled, last - after))
        return session.ring.recent(count, None if units is None else indices), last, session.model

    normalised, last_index, model = runtime.ingest.submit(copy).result(runtime.settings.shutdown_timeout_s)  # (k, n)
    calibration = model.calibration
    mean, std = calibration.mean[indices], calibration.std[indices]
    raw = normalised.T * std[:, None] + mean[:, None]  # (k, n) -> (n, k), raw = normalised * std + mean
    return ContextView(
        session=session.name,
        frame_index_last=last_index,
        unit_indices=indices,
        unit_ids=tuple(calibration.unit_ids[i] for i in indices),
        mean=mean,
        std=std,
        values=raw.astype(np.float32, copy=False),
    )
