"""Adapt a new animal between sessions, from the recording folder a server wrote while it streamed.

Legend: T frames, N units, D embedding width.

The same embeddings-only fine-tune the server runs live (poco_rt.models.adapted_version), for labs
that adapt offline: `poco-rt recording finetune DATA_DIR/recordings/fish7/<start>-<n>`. The
recording's meta.json says what the stream forecast with, and that calibration is the baseline the
result must beat on the held-out frames:

- a stream opened zero-shot: the bundle's unseen-unit embedding for every unit (the comparison is
  of embeddings alone, in the train part's normalisation, so the baseline's own is that one);
- any other stream: its calibration, which the bundle given must hold (the version that made it).

The new calibration is written into a new bundle version, whatever it scored; a server then opens
the animal with it (`poco-rt serve --bundle OUT --session fish7=NAME`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poco_rt.bundle import Bundle, SessionCalibration, load_bundle
from poco_rt.errors import RecordingError
from poco_rt.frame_split import split_frames
from poco_rt.models.adapt import AdaptConfig, ProgressCallback
from poco_rt.models.adapted_version import AdaptedVersion, adapt_into_version
from poco_rt.normalisation import normalisation_of
from poco_rt.server.recording_files import RecordedFrames, read_recorded_frames


def finetune_recording(
    recording_dir: Path,
    out: Path,
    *,
    bundle_path: Path | None = None,
    name: str | None = None,
    config: AdaptConfig | None = None,
    on_validation: ProgressCallback | None = None,
) -> AdaptedVersion:
    """Fine-tune the recorded stream's embeddings on its frames; the new version is written at `out`.

    `bundle_path` defaults to the bundle the recording names; `name` (the new calibration's) to
    SESSION.RECORDING, after the recording's folders.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} is not an empty directory; a new bundle version goes into a new one")
    recorded = read_recorded_frames(recording_dir)
    if bundle_path is None and "bundle" not in recorded.meta:
        raise RecordingError(f"{recording_dir}/meta.json names no bundle; say which one the stream used")
    bundle = load_bundle(bundle_path or recorded.meta["bundle"])
    frames = recorded.values  # (T, N), raw
    baseline = recorded_baseline(recorded, bundle)
    name = name or f"{recorded.meta.get('session', recording_dir.parent.name)}.{recording_dir.name}"
    return adapt_into_version(
        bundle,
        frames,
        baseline=baseline,
        name=name,
        config=config or AdaptConfig(),
        out=out,
        on_validation=on_validation,
    )


def recorded_baseline(recorded: RecordedFrames, bundle: Bundle) -> SessionCalibration:
    """The calibration the recorded stream forecast with, as this module's docstring says."""
    meta = recorded.meta
    if meta.get("zero_shot"):
        units = meta["num_units"]
        mean, std = normalisation_of(recorded.values[slice(*split_frames(len(recorded.values)).train)])
        return SessionCalibration(
            name=meta.get("calibration", "zero-shot"),
            unit_ids=tuple(meta.get("unit_ids") or (str(i) for i in range(units))),
            unit_embeddings=np.tile(bundle.unseen_unit_embedding(), (units, 1)),  # (D,) -> (N, D)
            mean=mean,
            std=std,
        )
    calibration = meta.get("calibration")
    if calibration not in bundle.sessions:
        raise RecordingError(
            f"the recording was forecast with calibration {calibration!r}, which {bundle.path} lacks; "
            f"adapt the bundle version that holds it (the recording names {meta.get('bundle')})"
        )
    return bundle.session(calibration)
