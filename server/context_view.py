"""A session's most recent raw frames, as the dashboard draws forecasts over them.

Legend: N units, C context frames; n the units asked for, k the frames returned (k <= C).

The ring buffer belongs to the ingest thread, so the copy of its frames is one command that thread
runs between two frames (`StreamSession.recent_context`, driven by `ServerRuntime.read_context`:
n * k values copied, microseconds, and nothing when no one asks). Turning the copy back into raw
units happens here, on the caller's thread, with the calibration that was current when the copy was
made, so a hot swap between the two cannot mix normalisations.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from poco_rt.server.session import SessionModel


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no single truth value
class ContextView:
    session: str
    frame_index_last: int | None  # the session's newest frame (the last column, if any); None before the first
    unit_indices: np.ndarray  # (n,) int64, positions in the session's calibration
    unit_ids: tuple[str, ...]  # (n,)
    mean: np.ndarray  # (n,) float32, the calibration's per-unit mean
    std: np.ndarray  # (n,) float32, the calibration's per-unit std: the unit POCO's score is measured in
    values: np.ndarray  # (n, k) float32, raw units, oldest frame first


def raw_context(
    session: str, normalised: np.ndarray, *, last_index: int | None, model: SessionModel, indices: np.ndarray
) -> ContextView:
    """The copied (k, n) normalised frames of units `indices`, in the raw units of `model`'s calibration."""
    calibration = model.calibration
    mean, std = calibration.mean[indices], calibration.std[indices]
    raw = normalised.T * std[:, None] + mean[:, None]  # (k, n) -> (n, k), raw = normalised * std + mean
    return ContextView(
        session=session,
        frame_index_last=last_index,
        unit_indices=indices,
        unit_ids=tuple(calibration.unit_ids[i] for i in indices),
        mean=mean,
        std=std,
        values=raw.astype(np.float32, copy=False),
    )
