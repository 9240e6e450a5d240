"""An embeddings-only adaptation written as a new bundle version, with its verdict in words.

One function for the two places a new animal is adapted: the server's fine-tune job (a live
stream's recording, in a worker) and `poco-rt recording finetune` (a finished recording, between
sessions). Both train with `adapt_embeddings`, always write the result into a new bundle version
(`add_calibration`: a new content hash, the old version untouched), and say whether it beat the
calibration it started from on the held-out frames by more than noise (`AdaptResult.improved`),
so that a result is kept whatever it scored and only `improved` decides whether it is used.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from poco_rt.bundle import Bundle, SessionCalibration, add_calibration
from poco_rt.models.adapt import AdaptConfig, AdaptResult, ProgressCallback, adapt_embeddings


@dataclasses.dataclass(frozen=True)
class AdaptedVersion:
    result: AdaptResult
    bundle: Bundle  # the new version: the old one's files plus result.calibration
    baseline_name: str  # the calibration it started from and was scored against

    @property
    def reason(self) -> str:
        result = self.result
        scores = (
            f"held-out score {result.candidate_score:.4f} against the current calibration's {result.baseline_score:.4f}"
        )
        gain = f"gain over {len(result.gain_blocks)} blocks of forecasts p = {result.gain_p_value:.3g}"
        if result.improved:
            return f"{scores}, {gain}: a real gain"
        if result.candidate_score <= result.baseline_score:
            return f"{scores}: not better; kept in the bundle version, not used"
        return f"{scores}, {gain}: not shown to be more than noise; kept in the bundle version, not used"

    def summary(self) -> dict[str, Any]:
        """The JSON summary: scores, the verdict and why, the training curve and the frame ranges of each part."""
        result = self.result
        return {
            "candidate": result.calibration.name,
            "bundle": str(self.bundle.path),
            "candidate_score": result.candidate_score,
            "baseline_score": result.baseline_score,
            "gain": result.candidate_score - result.baseline_score,
            "gain_blocks": list(result.gain_blocks),
            "gain_p_value": result.gain_p_value,
            "improved": result.improved,
            "reason": self.reason,
            "best_step": result.best_step,
            "steps": result.steps,
            "validation_scores": [list(item) for item in result.validation_scores],
            "frames": {
                "train": list(result.parts.train),
                "validation": list(result.parts.validation),
                "held_out": list(result.parts.held_out),
            },
        }


def adapt_into_version(
    bundle: Bundle,
    frames: np.ndarray,
    *,
    baseline: SessionCalibration,
    name: str,
    config: AdaptConfig,
    out: Path,
    on_validation: ProgressCallback | None = None,
) -> AdaptedVersion:
    """Adapt `baseline` to raw `frames` (T, N) and write the result as calibration `name` of a new version at `out`."""
    result = adapt_embeddings(bundle, frames, baseline=baseline, name=name, config=config, on_validation=on_validation)
    version = add_calibration(bundle, result.calibration, out)
    return AdaptedVersion(result=result, bundle=version, baseline_name=baseline.name)
