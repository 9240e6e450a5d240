"""The job table: one SQLite file in the server's data directory, shared by the server and its workers.

SQLite rather than memory so that a restart loses no job: what was queued runs after it, what was
running is marked `interrupted` (its worker died with the old server) and can be re-run. The server
(REST threads, the runner thread) and every worker process open the same file; WAL journaling lets
them read while one writes, and a busy timeout makes writers wait their turn instead of failing.

Every SQLite failure (a file that is not a database or fails its quick check, a lock held past the
busy timeout, a full or read-only disk) is raised as JobStoreUnavailable naming the file, which REST
answers with 503 and `poco-rt serve` refuses to start with. A row whose JSON cannot be read (edited
by hand, or written by a bug) is read with empty parameters; the runner never runs it: claiming it
fails it with the reason, and the next queued job is claimed instead.

Every state change is a conditional UPDATE on the state (and the attempt) it expects, so that races
resolve in one place: a worker that finishes after its job was cancelled finds the row no longer
`running` and changes nothing; a cancel that arrives after the worker finished finds it `succeeded`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poco_rt.errors import JobQueueFull, JobStateConflict, JobStoreUnavailable, UnknownJob

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,            -- JSON, as validated at submission
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,        -- Unix seconds
    started_at REAL,
    finished_at REAL,
    progress REAL NOT NULL DEFAULT 0, -- 0..1
    detail TEXT NOT NULL DEFAULT '{}', -- JSON the job kind reports while it runs (e.g. pVar per pass)
    error TEXT,
    summary TEXT                     -- JSON the job kind returns when it succeeds
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
"""
BUSY_TIMEOUT_MS = 10_000


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its worker was lost with a server that stopped or died

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class JobKind(enum.StrEnum):
    """The kinds of offline job; the value is what the job table stores and REST shows."""

    PINNING = "pinning"
    PINNING_SWEEP = "pinning-sweep"
    FINETUNE = "finetune"


@dataclasses.dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    params: dict[str, Any]
    state: JobState
    attempt: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: float
    detail: dict[str, Any]
    error: str | None
    summary: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            kind=JobKind(row["kind"]),
            params=_json_object(row["params"]) or {},
            state=JobState(row["state"]),
            attempt=row["attempt"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            progress=row["progress"],
            detail=_json_object(row["detail"]) or {},
            error=row["error"],
            summary=None if row["summary"] is None else _json_object(row["summary"]),
        )


def _json_object(text: str) -> dict[str, Any] | None:
    """A column's JSON object, or None if it holds anything else (see the module docstring)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class JobStore:
    """One connection to the job table; safe to share between the threads of one process."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab"):  # made (or opened) here first: the OS says why it cannot be, SQLite would not
                pass
            self._connection = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, check_same_thread=False)
        except OSError as error:
            raise JobStoreUnavailable(f"the job table {path} cannot be opened: {error.strerror or error}") from None
        except sqlite3.Error as error:
            raise JobStoreUnavailable(f"the job table {path} cannot be opened: {error}") from None
        self._connection.row_factory = sqlite3.Row
        try:
            with self._transaction() as connection:
                (verdict,) = connection.execute("PRAGMA quick_check").fetchone()
                if verdict != "ok":
                    raise JobStoreUnavailable(
                        f"the job table {path} is corrupt ({verdict}); move it aside to start with an empty one"
                    )
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut loses no commit
                connection.executescript(SCHEMA)
        except JobStoreUnavailable:
            self._connection.close()
            raise

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection, locked, in one transaction; any SQLite failure as JobStoreUnavailable."""
        with self._lock:
            try:
                with self._connection:
                    yield self._connection
            except sqlite3.Error as error:
                raise JobStoreUnavailable(f"the job table {self.path} cannot be used: {error}") from None

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._transaction() as connection:
            return connection.execute(sql, parameters).fetchall()

    def _update(self, sql: str, parameters: tuple[Any, ...]) -> int:
        """Rows changed by one UPDATE."""
        with self._transaction() as connection:
            return connection.execute(sql, parameters).rowcount

    def submit(self, kind: JobKind, params: dict[str, Any], *, max_queued: int) -> Job:
        """Queue a job; JobQueueFull when `max_queued` jobs already wait (checked and inserted atomically)."""
        job_id = uuid.uuid4().hex[:16]
        with self._transaction():
            self._refuse_when_full(max_queued)
            self._connection.execute(
                "INSERT INTO jobs (id, kind, params, state, created_at) VALUES (?, ?, ?, ?, ?)",
                (job_id, kind, json.dumps(params), JobState.QUEUED, time.time()),
            )
        return self.get(job_id)

    def _refuse_when_full(self, max_queued: int) -> None:
        """JobQueueFull when `max_queued` jobs wait; called inside the transaction that queues one more."""
        (queued,) = self._connection.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (JobState.QUEUED,)).fetchone()
        if queued >= max_queued:
            raise JobQueueFull(
                f"{queued} jobs are already waiting (max_queued_jobs={max_queued}); wait for some to finish "
                "or cancel them"
            )

    def get(self, job_id: str) -> Job:
        rows = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise UnknownJob(f"no job {job_id!r}; GET /v1/jobs lists them")
        return Job.from_row(rows[0])

    def list(self, *, limit: int = 100) -> list[Job]:
        rows = self._execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,))
        return [Job.from_row(row) for row in rows]

    def claim_next(self) -> Job | None:
        """The oldest queued job, now `running` with its attempt counted; None when none waits.

        A queued row whose parameters are not a JSON object is failed with the reason on the way."""
        while True:
            with self._transaction() as connection:
                row = connection.execute(
                    "SELECT id, params FROM jobs WHERE state = ? ORDER BY created_at LIMIT 1", (JobState.QUEUED,)
                ).fetchone()
                if row is None:
                    return None
                readable = _json_object(row["params"]) is not None
                connection.execute(
                    "UPDATE jobs SET state = ?, attempt = attempt + 1, started_at = ?, progress = 0, detail = '{}', "
                    "error = NULL WHERE id = ? AND state = ?",
                    (JobState.RUNNING, time.time(), row["id"], JobState.QUEUED),
                )
                if not readable:
                    connection.execute(
                        "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                        (JobState.FAILED, time.time(), "its parameters in the job table are not a JSON object; "
                         "submit the job again", row["id"]),
                    )  # fmt: skip
            if readable:
                return self.get(row["id"])

    def report_progress(self, job_id: str, attempt: int, progress: float, detail: dict[str, Any]) -> bool:
        """A worker's progress; False once the job is no longer this attempt's to run (cancelled, say)."""
        changed = self._update(
            "UPDATE jobs SET progress = ?, detail = ? WHERE id = ? AND attempt = ? AND state = ?",
            (progress, json.dumps(detail), job_id, attempt, JobState.RUNNING),
        )
        return changed == 1

    def succeed(self, job_id: str, attempt: int, summary: dict[str, Any]) -> bool:
        changed = self._update(
            "UPDATE jobs SET state = ?, progress = 1, finished_at = ?, summary = ? "
            "WHERE id = ? AND attempt = ? AND state = ?",
            (JobState.SUCCEEDED, time.time(), json.dumps(summary), job_id, attempt, JobState.RUNNING),
        )
        return changed == 1

    def fail(self, job_id: str, attempt: int, error: str, *, state: JobState = JobState.FAILED) -> bool:
        """Mark a running attempt failed (or interrupted); a job already finished some other way is left."""
        changed = self._update(
            "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ? AND attempt = ? AND state = ?",
            (state, time.time(), error, job_id, attempt, JobState.RUNNING),
        )
        return changed == 1

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (the runner then stops its worker); a finished one is refused."""
        job = self.get(job_id)
        if job.state.finished:
            raise JobStateConflict(f"job {job_id} is already {job.state}; only queued or running jobs can be cancelled")
        self._update(
            "UPDATE jobs SET state = ?, finished_at = ?, error = 'cancelled by request' WHERE id = ? AND state = ?",
            (JobState.CANCELLED, time.time(), job_id, job.state),
        )
        return self.get(job_id)

    def requeue(self, job_id: str, *, max_queued: int) -> Job:
        """Run a failed, cancelled or interrupted job again, from the start, with the same parameters.

        A re-run waits in the same queue as a new job, so it is refused (JobQueueFull) when `max_queued`
        jobs already wait, checked and queued in one transaction like `submit`."""
        job = self.get(job_id)
        if job.state not in (JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED):
            raise JobStateConflict(
                f"job {job_id} is {job.state}; only failed, cancelled or interrupted jobs can be re-run"
            )
        with self._transaction():
            self._refuse_when_full(max_queued)
            self._connection.execute(
                "UPDATE jobs SET state = ?, progress = 0, detail = '{}', finished_at = NULL, error = NULL, "
                "summary = NULL WHERE id = ? AND state = ?",
                (JobState.QUEUED, job_id, job.state),
            )
        return self.get(job_id)

    def mark_running_interrupted(self, reason: str) -> list[str]:
        """At start: jobs still `running` lost their worker with the previous server. Returns their ids."""
        with self._transaction():
            ids = [
                row["id"]
                for row in self._connection.execute("SELECT id FROM jobs WHERE state = ?", (JobState.RUNNING,))
            ]
            self._connection.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE state = ?",
                (JobState.INTERRUPTED, time.time(), reason, JobState.RUNNING),
            )
        return ids

    def count(self, state: JobState) -> int:
        ((count,),) = self._execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,))
        return count
