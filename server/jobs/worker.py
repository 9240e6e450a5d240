"""One job's process: `python -m poco_rt.server.jobs.worker DB JOB_ID ATTEMPT DATA_DIR`.

A job runs in its own interpreter, never in the server's, so that its CPU, memory and GIL are its
own: it lowers its priority (SCHED_IDLE by default), keeps to the job cores, caps its address space (so running out of
memory is a MemoryError this process reports, not the kernel killing the server), and the runner
sets its BLAS thread count in the environment before numpy loads. It reports progress and its
result through the job table; a job that is cancelled meanwhile sees its reports refused and exits.
A worker whose server died (SIGKILL, a crash) exits too, within a second: an orphan would go on
taking the rig's CPU, and would share its output folder with the attempt a restarted server runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

from poco_rt.server.jobs.kinds import JOB_KINDS
from poco_rt.server.jobs.store import JobStore

logger = logging.getLogger(__name__)
EXIT_CANCELLED = 3
EXIT_ORPHANED = 4
PARENT_CHECK_INTERVAL_S = 0.5


def limit_scheduling(pid: int, *, idle_priority: bool, cpus: list[int] | None) -> None:
    """SCHED_IDLE and `cpus` for process `pid` (0: this one); Linux, skipped where the OS lacks them.

    SCHED_IDLE is stronger than any nice value: the kernel gives such a process only CPU time that
    no normal thread wants, so a job on the ingest thread's core waits rather than delaying a frame.
    The runner applies it to a worker as soon as it is spawned, because the interpreter's start and
    the job's imports run before the worker can limit itself; the worker applies it again, so that a
    worker started any other way is limited too.
    """
    if idle_priority and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, cpus)


def apply_limits(*, niceness: int, idle_priority: bool, cpus: list[int] | None, memory_mb: int) -> None:
    """Lower priority, keep to `cpus`, cap the address space (Linux; what the OS lacks is skipped)."""
    os.nice(niceness)
    limit_scheduling(0, idle_priority=idle_priority, cpus=cpus)
    if memory_mb > 0:
        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def exit_when_orphaned(server_pid: int) -> None:
    """A daemon thread that ends this process once the server that started it is gone.

    The parent's pid is polled rather than using Linux's PR_SET_PDEATHSIG, which fires when the
    spawning *thread* exits, and which other systems lack.
    """

    def watch() -> None:
        while os.getppid() == server_pid:
            time.sleep(PARENT_CHECK_INTERVAL_S)
        logger.error("the server (pid %d) is gone: this job stops", server_pid)
        os._exit(EXIT_ORPHANED)  # no cleanup to wait for: the restarted server marks the job interrupted

    threading.Thread(target=watch, name="poco-rt-job-orphan-watch", daemon=True).start()


def run_job(store: JobStore, job_id: str, attempt: int, data_dir: Path, *, dask_scheduler: str | None = None) -> int:
    job = store.get(job_id)
    spec = JOB_KINDS[job.kind]
    options = {"scheduler": dask_scheduler} if spec.uses_scheduler else {}
    out_dir = data_dir / "jobs" / job_id
    out_dir.mkdir(parents=True, exist_ok=True)

    def report(progress: float, detail: dict[str, Any]) -> None:
        if not store.report_progress(job_id, attempt, progress, detail):
            raise SystemExit(EXIT_CANCELLED)  # cancelled, or re-run by someone else: stop working

    try:
        params = spec.params_model.model_validate(job.params)
        summary = spec.run(params, out_dir, data_dir / "recordings", report, **options)
    except Exception as error:  # MemoryError included: the job's own failure, whatever it is: report it, then exit
        logger.exception("job %s failed", job_id)
        store.fail(job_id, attempt, f"{type(error).__name__}: {error}")
        return 1
    store.succeed(job_id, attempt, summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("db", type=Path)
    parser.add_argument("job_id")
    parser.add_argument("attempt", type=int)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--niceness", type=int, default=10)
    parser.add_argument("--idle-priority", action="store_true", help="SCHED_IDLE (Linux)")
    parser.add_argument("--cpus", default="", help="comma-separated core numbers (empty: any)")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--dask-scheduler", default=None, help="the Dask scheduler sweep jobs send networks to")
    parser.add_argument("--server-pid", type=int, default=None, help="exit when this process is no longer the parent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.server_pid is not None:
        exit_when_orphaned(args.server_pid)
    cpus = [int(c) for c in args.cpus.split(",") if c]
    apply_limits(niceness=args.niceness, idle_priority=args.idle_priority, cpus=cpus or None, memory_mb=args.memory_mb)
    store = JobStore(args.db)
    try:
        return run_job(store, args.job_id, args.attempt, args.data_dir, dask_scheduler=args.dask_scheduler)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
