"""The PINning job: its parameters (validated, with limits, at submission) and what a worker runs.

A job trains one network (Rajan, Harvey & Tank 2016; models/pinning) on a synthetic sequence or on
frames this server recorded, and leaves `pinning.npz` and `summary.json` in its job directory. The
limits bound what one request can cost: N² floats per network and N² work per 1 ms step.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from poco_rt.bundle import SESSION_NAME_PATTERN
from poco_rt.errors import UnknownSession
from poco_rt.server.recording_files import read_recorded_frames, session_recordings

if TYPE_CHECKING:
    from poco_rt.models.pinning.targets import Target

logger = logging.getLogger(__name__)

MAX_NETWORK_UNITS = 2000  # J is N x N float32: 16 MB, and about 4 s of work per pass on one core
MAX_RUNS = 1000
ProgressReport = Callable[[float, dict[str, Any]], None]


class PinningTargetKind(enum.StrEnum):
    BUMP = "bump"
    TWO_BUMP = "two-bump"
    RECORDED_SESSION = "recorded-session"


class PinningTargetParams(BaseModel):
    """What a PINning job fits and how long each network trains; defaults follow Rajan, Harvey & Tank (2016):
    N = 500 bump, 125 runs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # however the params arrive

    target: PinningTargetKind = Field(default=PinningTargetKind.BUMP, description="what the network reproduces")
    units: int = Field(default=500, ge=2, le=MAX_NETWORK_UNITS, description="bump, two-bump: the network size N")
    session: str | None = Field(
        default=None,
        pattern=SESSION_NAME_PATTERN,
        description="recorded-session: a stream this server recorded (its newest recording is used)",
    )
    unit_indices: list[int] | None = Field(
        default=None,
        max_length=MAX_NETWORK_UNITS,
        description="recorded-session: columns to fit (default: all, up to the limit)",
    )
    start_s: float = Field(default=0.0, ge=0, description="recorded-session: window start, seconds")
    duration_s: float | None = Field(default=None, gt=0, description="recorded-session: window length (default: all)")
    runs: int = Field(default=125, ge=1, le=MAX_RUNS, description="passes over the trial, free ones included")
    free_runs: int = Field(default=5, ge=1, le=50, description="final passes without learning; pVar is their mean")
    lesion_runs: int = Field(default=2, ge=0, le=10, description="passes with h = 0 and with J[:, C] reset, each")

    @model_validator(mode="after")
    def _check_target(self) -> Self:
        if (self.target is PinningTargetKind.RECORDED_SESSION) != (self.session is not None):
            raise ValueError("give 'session' exactly when target is 'recorded-session'")
        if self.free_runs > self.runs:
            raise ValueError(f"free_runs ({self.free_runs}) must not exceed runs ({self.runs})")
        return self


class PinningJobParams(PinningTargetParams):
    """One PINning network to train; defaults follow Rajan, Harvey & Tank (2016) (p = 0.1)."""

    plastic_fraction: float = Field(default=0.1, ge=0, le=1, description="p: the fraction of units whose weights learn")
    seed: int = Field(default=0, ge=0, lt=2**32, description="draws J0, h, the plastic set and the noise")


def newest_recording(recordings_dir: Path, session: str) -> Path:
    recordings = session_recordings(recordings_dir, session)
    if not recordings:
        raise UnknownSession(f"the server has no recording of session {session!r}; stream frames to it first")
    return recordings[-1]


def job_target(params: PinningTargetParams, recordings_dir: Path) -> Target:
    """The synthetic sequence, or the newest recording of a session, that the job's networks fit."""
    from poco_rt.models.pinning.targets import bump_target, two_bump_target

    if params.target is PinningTargetKind.BUMP:
        return bump_target(params.units)
    if params.target is PinningTargetKind.TWO_BUMP:
        return two_bump_target(params.units)
    return _recorded_target(params, recordings_dir)


def _recorded_target(params: PinningTargetParams, recordings_dir: Path) -> Target:
    """The newest recording of a session as a Target; its frame rate is read off the acquisition clock."""
    from poco_rt.models.pinning.targets import recording_target
    from poco_rt.models.recording import Recording, Session

    if params.session is None:
        raise ValueError("a recorded-session target needs 'session'")
    directory = newest_recording(recordings_dir, params.session)
    frames = read_recorded_frames(directory)
    if len(frames.frame_index) < 2:
        raise ValueError(f"recording {directory.name} of {params.session!r} holds fewer than 2 frames")
    elapsed_s = np.diff(frames.acquisition_time_ns.astype(np.float64)) / 1e9
    per_frame_s = elapsed_s / np.diff(frames.frame_index.astype(np.float64))
    frame_interval_s = float(np.median(per_frame_s))
    if not frame_interval_s > 0:
        raise ValueError(
            f"recording {directory.name} of {params.session!r} has no increasing acquisition timestamps, so its "
            "frame rate is unknown; send frames with their acquisition time"
        )
    unit_ids = frames.meta.get("unit_ids") or [str(i) for i in range(frames.values.shape[1])]
    recording = Recording(
        name=params.session,
        sessions=(Session(directory.name, frames.values, 1.0 / frame_interval_s, tuple(unit_ids)),),
    )
    units = params.unit_indices
    if units is None and frames.values.shape[1] > MAX_NETWORK_UNITS:
        raise ValueError(
            f"session {params.session!r} has {frames.values.shape[1]} units, more than one network may have "
            f"({MAX_NETWORK_UNITS}); choose some with 'unit_indices'"
        )
    return recording_target(recording, units=units, start_s=params.start_s, duration_s=params.duration_s)


def run_pinning_job(params: PinningJobParams, out_dir: Path, recordings_dir: Path, report: ProgressReport) -> dict:
    """Train the network, reporting progress and pVar after every pass; returns the result's summary."""
    from poco_rt.models.pinning.config import PinningConfig
    from poco_rt.models.pinning.results import save_result, summarize
    from poco_rt.models.pinning.trainer import PassReport, run_schedule, train_networks

    target = job_target(params, recordings_dir)
    config = PinningConfig(
        plastic_fraction=params.plastic_fraction,
        seed=params.seed,
        runs=params.runs,
        free_runs=params.free_runs,
        lesion_runs=params.lesion_runs,
    )
    passes = len(run_schedule(config, target.num_conditions))
    pvar_per_pass: list[float] = []
    phases: list[str] = []

    def on_pass(done: PassReport) -> None:
        pvar_per_pass.append(float(done.pvar[0]))
        phases.append(str(done.phase))
        report(
            len(pvar_per_pass) / passes,
            {"target": target.name, "passes": passes, "pvar_per_pass": pvar_per_pass, "phase_per_pass": phases},
        )

    (result,) = train_networks(target, [config], on_run=on_pass)
    save_result(result, target, out_dir)
    logger.info("PINning job on %s: pVar %.3f", target.name, result.pvar)
    return {"target": target.name, **summarize(result)}
