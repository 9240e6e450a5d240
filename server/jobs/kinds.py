"""The kinds of offline job the runner knows: each a parameter model (validated at submission) and a run.

A kind's `run(params, out_dir, recordings_dir, report)` executes in a worker process, writes its
files under `out_dir`, calls `report(progress, detail)` as it goes and returns a JSON summary; a
kind that `uses_scheduler` is also given `scheduler=`, the server's Dask scheduler or None.
Adding a kind is one member of `JobKind` (poco_rt.server.jobs.store) and one entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from poco_rt.server.jobs.finetune import CALIBRATION_FILE, SUMMARY_FILE, FinetuneJobParams, run_finetune_job
from poco_rt.server.jobs.pinning import PinningJobParams, ProgressReport, run_pinning_job
from poco_rt.server.jobs.pinning_sweep import PinningSweepJobParams, run_pinning_sweep_job
from poco_rt.server.jobs.store import JobKind


@dataclasses.dataclass(frozen=True)
class JobKindSpec:
    """What the runner knows of one kind: how its parameters are checked, how it runs, what it leaves."""

    kind: JobKind
    params_model: type[BaseModel]
    run: Callable[[Any, Path, Path, ProgressReport], dict[str, Any]]
    result_files: tuple[str, ...]  # what GET /v1/jobs/{id}/result.npz and friends may serve
    uses_scheduler: bool = False  # run takes `scheduler=`: the server's dask_scheduler (None: train in the worker)

    @property
    def arrays_file(self) -> str:
        """The result file GET /v1/jobs/{id}/result.npz serves."""
        return next(name for name in self.result_files if name.endswith(".npz"))


JOB_KINDS: dict[JobKind, JobKindSpec] = {
    JobKind.PINNING: JobKindSpec(
        JobKind.PINNING, PinningJobParams, run_pinning_job, result_files=("pinning.npz", "summary.json")
    ),
    JobKind.PINNING_SWEEP: JobKindSpec(
        JobKind.PINNING_SWEEP,
        PinningSweepJobParams,
        run_pinning_sweep_job,
        result_files=("sweep.npz", "sweep.json"),
        uses_scheduler=True,
    ),
    JobKind.FINETUNE: JobKindSpec(
        JobKind.FINETUNE, FinetuneJobParams, run_finetune_job, result_files=(CALIBRATION_FILE, SUMMARY_FILE)
    ),
}
