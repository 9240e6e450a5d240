"""The job runner: a thread that keeps at most `job_workers` worker processes busy with queued jobs.

Jobs are processes, not threads, so that a PINning network's N² work per millisecond of network
time, its memory and its GIL are never the ingest thread's: each worker starts at lower priority,
on the job cores, with its own BLAS thread count and an address-space cap (worker.py). The runner
only starts workers, notices when they end, and stops them on cancel or shutdown; the workers
write their progress and results into the job table themselves.

A worker that ends without reporting (a segfault, the kernel's OOM killer) leaves its job
`running`: the runner marks it failed with the exit status and the last line of its log. On start,
jobs still `running` belonged to a server that died and are marked `interrupted`; queued jobs
simply run. On stop, running workers are terminated and their jobs marked `interrupted`, so
that `POST /v1/jobs/{id}/retry` can run them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from poco_rt.errors import JobStoreUnavailable, NotRunning, UnknownJob
from poco_rt.server.jobs.kinds import JOB_KINDS
from poco_rt.server.jobs.store import Job, JobKind, JobState, JobStore
from poco_rt.server.jobs.worker import limit_scheduling
from poco_rt.server.ratelog import RateLimitedLog
from poco_rt.server.settings import ServerSettings

logger = logging.getLogger(__name__)
POLL_INTERVAL_S = 0.2
WORKER_LOG = "worker.log"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass
class _Worker:
    job_id: str
    attempt: int
    process: subprocess.Popen[bytes]
    log_path: Path


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if -returncode == signal.SIGKILL else ""
        return f"its worker process was killed by {name}{hint}"
    return f"its worker process exited with status {returncode} without reporting a result"


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return lines[-1] if lines else ""


class JobRunner:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.job_cpus = settings.job_cores()
        self.store: JobStore | None = None
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()  # guards _workers between the runner thread and cancel()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = RateLimitedLog(logger, interval_s=10.0)

    @property
    def started(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self.store = JobStore(self.settings.jobs_db)
        lost = self.store.mark_running_interrupted(
            "the server stopped while this job ran; POST /v1/jobs/{id}/retry runs it again"
        )
        if lost:
            logger.warning("jobs interrupted by the last shutdown: %s (retry them to run again)", ", ".join(lost))
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="poco-rt-jobs", daemon=True)
        self._thread.start()
        logger.info(
            "job runner: %d worker(s) on cores %s, %s, %d BLAS thread(s), %s",
            self.settings.job_workers,
            ",".join(map(str, self.job_cpus)),
            "SCHED_IDLE" if self.settings.job_idle_priority else f"nice +{self.settings.job_niceness}",
            self.settings.job_threads,
            f"{self.settings.job_memory_mb} MB each" if self.settings.job_memory_mb else "no memory cap",
        )

    def stop(self, timeout_s: float) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            self._terminate(worker, timeout_s)
            if self.store is not None:
                self.store.fail(
                    worker.job_id,
                    worker.attempt,
                    "the server shut down while this job ran; POST /v1/jobs/{id}/retry runs it again",
                    state=JobState.INTERRUPTED,
                )
        if self.store is not None:
            self.store.close()
            self.store = None

    def _require_store(self) -> JobStore:
        if self.store is None:
            raise NotRunning("the job runner is not running")
        return self.store

    def submit(self, kind: JobKind, params: dict[str, Any]) -> Job:
        job = self._require_store().submit(kind, params, max_queued=self.settings.max_queued_jobs)
        self._wake.set()
        return job

    def get(self, job_id: str) -> Job:
        return self._require_store().get(job_id)

    def list(self) -> list[Job]:
        return self._require_store().list()

    def cancel(self, job_id: str) -> Job:
        job = self._require_store().cancel(job_id)
        with self._lock:
            worker = self._workers.pop(job_id, None)
        if worker is not None:
            self._terminate(worker, self.settings.shutdown_timeout_s)
        return job

    def retry(self, job_id: str) -> Job:
        job = self._require_store().requeue(job_id, max_queued=self.settings.max_queued_jobs)
        self._wake.set()
        return job

    def result_path(self, job: Job, name: str) -> Path:
        if name not in JOB_KINDS[job.kind].result_files:
            raise UnknownJob(f"job {job.id} has no file {name!r}")
        return self.settings.jobs_dir / job.id / name

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._reap()
                self._fill()
            except (OSError, JobStoreUnavailable) as error:  # out of descriptors, a locked or full job table: again
                self._log.error("turn", "job runner: %s (trying again every %g s)", error, POLL_INTERVAL_S)
            self._wake.wait(POLL_INTERVAL_S)
            self._wake.clear()

    def _reap(self) -> None:
        """Record how ended workers ended; a worker is let go only once its end is in the table."""
        with self._lock:
            ended = [w for w in self._workers.values() if w.process.poll() is not None]
        for worker in ended:
            reason = describe_exit(worker.process.returncode)
            detail = last_line(worker.log_path)
            if self.store is not None and self.store.fail(
                worker.job_id, worker.attempt, f"{reason}; last log line: {detail}" if detail else reason
            ):
                logger.error("job %s: %s", worker.job_id, reason)
            with self._lock:
                self._workers.pop(worker.job_id, None)

    def _fill(self) -> None:
        while self.store is not None and len(self._workers) < self.settings.job_workers:
            job = self.store.claim_next()
            if job is None:
                return
            try:
                worker = self._spawn(job)
            except OSError as error:
                reason = f"its worker process could not be started: {error}; POST /v1/jobs/{{id}}/retry runs it again"
                self.store.fail(job.id, job.attempt, reason)
                raise
            with self._lock:
                self._workers[job.id] = worker
            logger.info("job %s (%s) started, attempt %d, pid %d", job.id, job.kind, job.attempt, worker.process.pid)

    def _spawn(self, job: Job) -> _Worker:
        settings = self.settings
        job_dir = settings.jobs_dir / job.id
        job_dir.mkdir(parents=True, exist_ok=True)
        log_path = job_dir / WORKER_LOG
        env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(settings.job_threads))}
        command = [
            sys.executable,
            "-m",
            "poco_rt.server.jobs.worker",
            str(settings.jobs_db),
            job.id,
            str(job.attempt),
            str(settings.data_dir),
            f"--niceness={settings.job_niceness}",
            *(["--idle-priority"] if settings.job_idle_priority else []),
            f"--cpus={','.join(map(str, self.job_cpus))}",
            f"--memory-mb={settings.job_memory_mb}",
            *([f"--dask-scheduler={settings.dask_scheduler}"] if settings.dask_scheduler else []),
            f"--server-pid={os.getpid()}",
        ]
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        # Ended already (_reap records how) or refused here: the worker applies the same limits itself,
        # and a worker that cannot reports its failure.
        with contextlib.suppress(OSError):
            limit_scheduling(process.pid, idle_priority=settings.job_idle_priority, cpus=self.job_cpus)
        return _Worker(job.id, job.attempt, process, log_path)

    @staticmethod
    def _terminate(worker: _Worker, timeout_s: float) -> None:
        if worker.process.poll() is None:
            worker.process.terminate()
            try:
                worker.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
