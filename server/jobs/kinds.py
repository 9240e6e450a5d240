"""The kinds of offline job the runner knows: each a parameter model (validated at submission) and a run.

A kind's `run(params, out_dir, recordings_dir, report)` executes in a worker process, writes its
files under `out_dir`, calls `report(progress, detail)` as it goes and returns a JSON summary.
Adding a kind (POCO fine-tuning from recorded frames, say) is one entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from poco_rt.server.jobs.pinning import PinningJobParams, ProgressReport, run_pinning_job


@dataclasses.dataclass(frozen=True)
class JobKind:
    name: str
    params_model: type[BaseModel]
    run: Callable[[Any, Path, Path, ProgressReport], dict[str, Any]]
    result_files: tuple[str, ...]  # what GET /v1/jobs/{id}/result.npz and friends may serve


JOB_KINDS: dict[str, JobKind] = {
    "pinning": JobKind("pinning", PinningJobParams, run_pinning_job, result_files=("pinning.npz", "summary.json")),
}
