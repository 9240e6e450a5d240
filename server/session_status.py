"""A copy of one stream's state and counters, as REST shows it (StreamSession.status makes it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poco_rt.server.adaptation import AdaptationStatus
    from poco_rt.server.session import SessionState


@dataclasses.dataclass(frozen=True)
class SessionStatus:
    """A copy of one stream's state and counters, as REST shows it; each field a whole value when read."""

    name: str
    state: SessionState
    calibration: str  # the calibration forecasting now: a bundle session, or NAME.zero-shot
    calibration_hash: str
    zero_shot: bool
    adaptation: AdaptationStatus | None  # a new animal's fine-tune rounds (None for other streams)
    model_version: str
    bundle: str  # id of the loaded bundle the session forecasts with
    unit_count: int
    context_frames: int
    horizon: int
    frames_in_context: int  # since open or the last reset, up to C
    last_frame_index: int | None
    last_acquisition_time_ns: int | None
    last_received_ns: int | None
    frames_accepted: int
    frames_gap_filled: int
    resets: int
    frames_dropped: int
    frames_rejected: int
    forecasts: int
    recording: Path | None  # the directory the session's frames are recorded in
    accuracy_enabled: bool
    interval_levels: tuple[float, ...]  # the levels its forecasts can carry bounds for
