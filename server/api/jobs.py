"""/v1/jobs: offline jobs (PINning) submitted, watched, cancelled, re-run, and their results fetched.

Handlers are plain `def`s: the job table is SQLite, so FastAPI runs them on its thread pool and the
event loop (WebSocket fan-out) never waits on the disk.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from poco_rt.errors import JobStateConflict
from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import REFUSED, UnitList, unit_indices
from poco_rt.server.api.strict_json import StrictJSONRoute
from poco_rt.server.jobs.kinds import JOB_KINDS
from poco_rt.server.jobs.pinning import PinningJobParams, PinningTargetKind, PinningTargetParams
from poco_rt.server.jobs.pinning_rates import read_rates
from poco_rt.server.jobs.pinning_sweep import PinningSweepJobParams
from poco_rt.server.jobs.store import Job, JobKind, JobState

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], dependencies=Authorized, route_class=StrictJSONRoute, responses=REFUSED
)
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="job id, as POST /v1/jobs/... returned it")]


class JobInfo(BaseModel):
    id: str
    kind: str
    state: JobState
    attempt: int = Field(description="how many times a worker has started it")
    params: dict[str, Any]
    progress: float = Field(description="0..1")
    detail: dict[str, Any] = Field(description="what the job reports as it runs (PINning: pVar of every pass)")
    error: str | None
    created_at: float = Field(description="Unix seconds")
    started_at: float | None
    finished_at: float | None
    summary: dict[str, Any] | None = Field(description="the result's summary once it succeeded")

    @classmethod
    def of(cls, job: Job) -> JobInfo:
        return cls(**{name: getattr(job, name) for name in cls.model_fields})


class PinningRatesOut(BaseModel):
    condition: int = Field(description="the target condition the network's rates reproduce (its last free run)")
    pvar: float = Field(description="that run's pVar")
    peak_order: list[int] = Field(description="(N,) every unit, ordered by when its target rate peaks")
    units: list[int] = Field(description="(n,) the units below")
    target: list[list[float]] = Field(description="(n, K) target rates, one row per unit, one value per data frame")
    network: list[list[float]] = Field(description="(n, K) the trained network's rates, without learning")


def _check_recorded_session(params: PinningTargetParams, runtime: RuntimeDep) -> None:
    if params.target is PinningTargetKind.RECORDED_SESSION and params.session is not None:
        runtime.check_recorded(params.session)  # 404 now rather than a failed job


@router.post("/pinning", status_code=status.HTTP_202_ACCEPTED)
def submit_pinning(params: PinningJobParams, runtime: RuntimeDep) -> JobInfo:
    _check_recorded_session(params, runtime)
    return JobInfo.of(runtime.submit_job(JobKind.PINNING, params.model_dump(mode="json")))


@router.post("/pinning-sweep", status_code=status.HTTP_202_ACCEPTED)
def submit_pinning_sweep(params: PinningSweepJobParams, runtime: RuntimeDep) -> JobInfo:
    """Networks for every (p, seed): on the server's Dask cluster when it has one (dask_scheduler), else in a worker."""
    _check_recorded_session(params, runtime)
    return JobInfo.of(runtime.submit_job(JobKind.PINNING_SWEEP, params.model_dump(mode="json")))


@router.get("")
def list_jobs(runtime: RuntimeDep) -> list[JobInfo]:
    return [JobInfo.of(job) for job in runtime.jobs()]


@router.get("/{job_id}")
def get_job(job_id: JobId, runtime: RuntimeDep) -> JobInfo:
    return JobInfo.of(runtime.job(job_id))


@router.delete("/{job_id}")
def cancel_job(job_id: JobId, runtime: RuntimeDep) -> JobInfo:
    return JobInfo.of(runtime.cancel_job(job_id))


@router.post("/{job_id}/retry", status_code=status.HTTP_202_ACCEPTED)
def retry_job(job_id: JobId, runtime: RuntimeDep) -> JobInfo:
    return JobInfo.of(runtime.retry_job(job_id))


def _finished(runtime: RuntimeDep, job_id: str) -> Job:
    job = runtime.job(job_id)
    if job.state is not JobState.SUCCEEDED:
        raise JobStateConflict(f"job {job_id} is {job.state}, not succeeded: it has no result (see its 'error')")
    return job


@router.get("/{job_id}/result")
def job_result(job_id: JobId, runtime: RuntimeDep) -> dict[str, Any]:
    """The result's JSON summary (PINning: pVar, lesion pVar, connectivity change, timings, config)."""
    job = _finished(runtime, job_id)
    return job.summary or {}


@router.get("/{job_id}/result/rates")
def job_result_rates(job_id: JobId, runtime: RuntimeDep, units: UnitList = None) -> PinningRatesOut:
    """A PINning result's target and network rates of `units` (default: all), for plotting."""
    job = _finished(runtime, job_id)
    path = runtime.job_result_path(job, "pinning.npz")  # 404 for a kind that leaves no such file
    rates = read_rates(path, unit_indices(units, int((job.summary or {})["units"])))
    return PinningRatesOut(
        condition=rates.condition,
        pvar=rates.pvar,
        peak_order=rates.peak_order.tolist(),
        units=rates.units.tolist(),
        target=rates.target.tolist(),
        network=rates.network.tolist(),
    )


@router.get("/{job_id}/result.npz", response_class=FileResponse)
def job_result_arrays(job_id: JobId, runtime: RuntimeDep) -> FileResponse:
    """The result's arrays (PINning: J0, J, the plastic set, free-run and lesion rates, band structure; a sweep:
    its pVar table)."""
    job = _finished(runtime, job_id)
    path = runtime.job_result_path(job, JOB_KINDS[job.kind].arrays_file)
    return FileResponse(path, media_type="application/octet-stream", filename=f"{job.kind}-{job.id}.npz")
