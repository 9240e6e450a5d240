"""The fine-tune job: a live stream's new calibration, trained in a worker from the frames it recorded.

Embeddings only (Duan et al. 2025's fast path for a new animal): the network stays frozen, the
stream's unit embeddings start where the stream stands and learn on the first part of its
recording, early-stopped on the next part, and the result is scored against the stream's current
calibration on the last part (poco_rt.frame_split, poco_rt.models.adapt). The job always writes its
calibration into a new bundle version under its job directory, so a result is kept whatever it
scored; the server swaps it in only when `improved` says it beat the current one.

The server fills every parameter when it queues the job (`POST /v1/sessions/{name}/finetune`, or
the stream's automatic adaptation): which recording, how many of its frames, the bundle the stream
forecasts with, and the current calibration, written into the recording's `calibrations/` folder.
Fixing the frame count at submission makes a retried job train on exactly the same frames.

This needs torch: the serving install does not have it, and the job then fails saying which extra
to install (`pip install 'poco-rt[train]'`, or the Docker image's `train` target).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from poco_rt.bundle import SESSION_NAME_PATTERN, SessionCalibration, load_bundle
from poco_rt.errors import MissingExtra, RecordingError
from poco_rt.frame_split import minimum_frames
from poco_rt.server.jobs.pinning import ProgressReport
from poco_rt.server.recording_files import read_recorded_frames

logger = logging.getLogger(__name__)

CALIBRATIONS_DIR = "calibrations"  # in a recording directory: every calibration the stream forecast with
BUNDLE_DIR = "bundle"  # in the job directory: the new bundle version
CALIBRATION_FILE = "calibration.npz"  # in the job directory: the new calibration alone
SUMMARY_FILE = "summary.json"
SHORT_HASH_PATTERN = r"^[0-9a-f]{12}$"


class FinetuneJobParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    session: str = Field(pattern=SESSION_NAME_PATTERN, description="the stream fine-tuned")
    recording: str = Field(pattern=SESSION_NAME_PATTERN, description="its recording directory (under the session's)")
    frames: int = Field(ge=1, description="the first this many recorded frames are used (fewer if fewer are on disk)")
    bundle: str = Field(min_length=1, max_length=4096, description="the bundle version the stream forecasts with")
    baseline_calibration: str = Field(
        pattern=SHORT_HASH_PATTERN, description="the stream's current calibration, by hash, in the recording"
    )
    candidate_name: str = Field(pattern=SESSION_NAME_PATTERN, description="the new calibration's name in the bundle")
    max_steps: int = Field(default=300, ge=1, le=20_000, description="upper bound; early stopping usually ends sooner")
    learning_rate: float = Field(default=1e-3, gt=0, le=1.0)
    patience: int = Field(default=5, ge=1, le=100, description="validations (every 10 steps) without improvement")
    seed: int = Field(default=0, ge=0, lt=2**32)


def calibration_path(recording_dir: Path, calibration_hash: str) -> Path:
    return recording_dir / CALIBRATIONS_DIR / f"{calibration_hash}.npz"


def run_finetune_job(params: FinetuneJobParams, out_dir: Path, recordings_dir: Path, report: ProgressReport) -> dict:
    """Train, score against the current calibration, write the new bundle version; returns the summary."""
    try:
        from poco_rt.models.adapt import AdaptConfig
        from poco_rt.models.adapted_version import adapt_into_version
    except ImportError as error:
        raise MissingExtra(
            f"fine-tuning needs torch, which this install lacks ({error}); install the train extra "
            "(pip install 'poco-rt[train]') or run the Docker image's train target"
        ) from error

    cpu_started = time.process_time()
    recording_dir = recordings_dir / params.session / params.recording
    recorded = read_recorded_frames(recording_dir)
    frames = recorded.values[: params.frames]  # fewer where the recorder dropped frames (a full queue)
    bundle = load_bundle(params.bundle)
    needed = minimum_frames(bundle.context_frames, bundle.horizon)
    if len(frames) < needed:
        raise RecordingError(f"{recording_dir} holds {len(frames)} frames; fine-tuning needs at least {needed}")
    baseline = SessionCalibration.load(calibration_path(recording_dir, params.baseline_calibration))
    config = AdaptConfig(
        max_steps=params.max_steps, learning_rate=params.learning_rate, patience=params.patience, seed=params.seed
    )
    validation: list[list[float]] = []

    def on_validation(step: int, score: float, best_step: int) -> None:
        validation.append([step, score])
        report(step / params.max_steps, {"step": step, "validation_score": score, "best_step": best_step,
                                         "validation_scores": validation})  # fmt: skip

    adapted = adapt_into_version(
        bundle,
        frames,
        baseline=baseline,
        name=params.candidate_name,
        config=config,
        out=out_dir / BUNDLE_DIR,
        on_validation=on_validation,
    )
    adapted.result.calibration.save(out_dir / CALIBRATION_FILE)
    logger.info("fine-tune of %s: %s", params.session, adapted.reason)
    summary = {
        "session": params.session,
        **adapted.summary(),
        "frames_used": len(frames),
        "cpu_s": time.process_time() - cpu_started,  # this process's CPU, torch's import excluded
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary
