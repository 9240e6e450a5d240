"""Live adaptation of new animals: fine-tune rounds queued as jobs, their results swapped in between frames.

A round snapshots the stream's current calibration into its recording (`calibrations/<hash>.npz`),
queues a fine-tune job on the frames recorded so far (poco_rt.server.jobs.finetune) and, once the job
has ended, swaps the new calibration in only if the job found it better on held-out frames, only if
the stream still forecasts with the calibration the round started from, and only between two
frames (the runtime's swap). Whatever happens, the round says what and why (`AdaptationRound`).

With `AutoAdapt` a stream runs rounds by itself: the first once `after_s` seconds of acquisition
are recorded and enough frames for a round to be able to swap (`frames_to_decide`: a held-out part
of MIN_GAIN_BLOCKS blocks; a round on fewer is kept whatever it finds), the next each time the
recording has grown by `growth`, until `max_rounds`, or until a round that swapped gained less
than `min_gain`.

Threads: one thread ("poco-rt-adapt") polls the job table and runs every swap, so REST and the
ingest thread never wait for a bundle to load. The round tables are changed under one lock;
REST reads copies. The last good calibration of every adapted stream is written to
`data_dir/streams/<name>.json`, so that a restarted server reopens the stream with it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

from poco_rt.bundle import TRAINABLE_NETWORK_FILE
from poco_rt.errors import (
    AdaptationBusy,
    BundleError,
    IncompatibleSwap,
    NotEnoughFrames,
    NotRunning,
    UnknownJob,
    UnknownSession,
)
from poco_rt.frame_split import frames_to_decide, minimum_frames
from poco_rt.server.jobs.finetune import FinetuneJobParams, calibration_path
from poco_rt.server.jobs.store import Job, JobKind, JobState

if TYPE_CHECKING:
    from poco_rt.server.bundles import BundleRegistry
    from poco_rt.server.jobs.runner import JobRunner
    from poco_rt.server.session import SessionTable, StreamSession

    class SwapSession(Protocol):
        """The runtime's swap, made conditional on the session and calibration a round started from."""

        def __call__(
            self,
            name: str,
            *,
            calibration: str | None,
            bundle_id: str | None,
            expect_session: StreamSession | None = None,
            expect_calibration: str | None = None,
        ) -> StreamSession: ...


logger = logging.getLogger(__name__)
POLL_INTERVAL_S = 0.5
STREAMS_DIR = "streams"


class FinetuneOptions(BaseModel):
    """How one fine-tune round trains (the defaults suit POCO-sized networks on 2 cores)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_steps: int = Field(default=300, ge=1, le=20_000, description="upper bound; early stopping usually ends sooner")
    learning_rate: float = Field(default=1e-3, gt=0, le=1.0, description="AdamW's, for the new embeddings")
    patience: int = Field(default=5, ge=1, le=100, description="validations (every 10 steps) without improvement")


class AutoAdapt(FinetuneOptions):
    """Fine-tune a new animal's stream by itself as it records (a session option, off by default)."""

    after_s: float = Field(default=120.0, gt=0, le=86_400, description="acquisition seconds before the first round")
    growth: float = Field(default=2.0, gt=1, le=100, description="the next round once the recording grew this much")
    max_rounds: int = Field(default=4, ge=1, le=100, description="rounds at most")
    min_gain: float = Field(
        default=0.005, ge=0, le=1, description="stop after a swapped round that gained less held-out score than this"
    )


@dataclasses.dataclass
class AdaptationRound:
    job_id: str
    frames: int  # recorded frames the round trains, validates and scores on
    started_from: str  # the calibration it started from (and must still be current to swap)
    state: str = "queued"  # the job's state, then "swapped" or "kept" once applied
    candidate: str | None = None
    candidate_score: float | None = None
    baseline_score: float | None = None
    swapped: bool = False
    outcome: str = "queued"  # in words: what happened and why


@dataclasses.dataclass
class _Stream:
    session: StreamSession  # the session object the rounds belong to (a reopened name is another)
    auto: AutoAdapt | None
    rounds: list[AdaptationRound] = dataclasses.field(default_factory=list)
    stopped: str | None = None  # why automatic adaptation ended

    @property
    def active(self) -> AdaptationRound | None:
        return next((r for r in self.rounds if r.state in (JobState.QUEUED, JobState.RUNNING)), None)


@dataclasses.dataclass(frozen=True)
class StreamRecord:
    """The last good calibration of an adapted stream, as written to data_dir/streams/<name>.json."""

    bundle: str
    calibration: str
    units: int


@dataclasses.dataclass(frozen=True)
class AdaptationStatus:
    """A copy of a new animal's fine-tune rounds, for REST."""

    auto: AutoAdapt | None  # automatic rounds' options (None: rounds on request only)
    stopped: str | None  # why automatic rounds ended
    rounds: list[AdaptationRound]


class StreamAdaptation:
    """The adaptation thread: follows each new animal's fine-tune jobs and swaps their results in.

    It reads sessions from the session table, submits and watches jobs, loads the fine-tuned
    bundles and hands each result to `swap_session`, the runtime's conditional swap.
    """

    def __init__(
        self,
        *,
        sessions: SessionTable,
        jobs: JobRunner,
        bundles: BundleRegistry,
        swap_session: SwapSession,
        data_dir: Path,
    ) -> None:
        self._sessions = sessions
        self._jobs = jobs
        self._bundles = bundles
        self._swap_session = swap_session
        self._data_dir = data_dir
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="poco-rt-adapt", daemon=True)
        self._thread.start()

    def stop(self, *, timeout_s: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    # --- streams ---------------------------------------------------------------------------------

    def track(self, session: StreamSession, auto: AutoAdapt | None) -> None:
        """Follow a new animal's stream: rounds on request, and by themselves when `auto` is given."""
        with self._lock:
            self._streams[session.name] = _Stream(session=session, auto=auto)

    def forget(self, name: str) -> None:
        with self._lock:
            self._streams.pop(name, None)

    def status(self, name: str) -> AdaptationStatus | None:
        """A copy of the stream's rounds, its automatic options and why they stopped; None for a stream that
        has neither rounds nor automatic ones (every stream but a new animal's)."""
        with self._lock:
            stream = self._streams.get(name)
            if stream is None or (not stream.rounds and stream.auto is None):
                return None
            return AdaptationStatus(
                auto=stream.auto, stopped=stream.stopped, rounds=[dataclasses.replace(r) for r in stream.rounds]
            )

    def start_round(self, name: str, options: FinetuneOptions | None = None) -> Job:
        """Queue a fine-tune of stream `name` on what it recorded so far; the swap follows when it ends.

        Raises UnknownSession, AdaptationBusy (a round is queued or running), NotEnoughFrames.
        """
        session = self._sessions.get(name)
        options = options or FinetuneOptions()
        with self._lock:
            stream = self._streams.get(name)
            if stream is None or stream.session is not session:
                stream = self._streams[name] = _Stream(session=session, auto=None)
            if stream.active is not None:
                raise AdaptationBusy(f"stream {name!r} has a fine-tune in progress (job {stream.active.job_id})")
        recording = session.recording
        if recording is None:
            raise NotEnoughFrames(
                f"stream {name!r} is not recorded (record_frames is off); fine-tuning trains on its recording"
            )
        bundle = session.model.loaded.bundle
        if not bundle.trainable:
            raise BundleError(
                f"{bundle.path} has no {TRAINABLE_NETWORK_FILE}, the network's torch weights a fine-tune starts "
                "from (it was exported before they were added); export it again with `poco-rt export`"
            )
        needed = minimum_frames(bundle.context_frames, bundle.horizon)
        frames = session.frames_accepted
        if frames < needed:
            raise NotEnoughFrames(
                f"stream {name!r} has recorded {frames} frames; fine-tuning needs at least {needed} "
                f"({needed - frames} more), so that training gets a whole window of "
                f"{bundle.context_frames + bundle.horizon} frames and validation and the held-out check "
                f"each the {bundle.horizon} target frames of one"
            )
        model = session.model
        snapshot = calibration_path(recording.directory, model.calibration_hash)
        if not snapshot.exists():
            snapshot.parent.mkdir(parents=True, exist_ok=True)
            model.calibration.save(snapshot)
        with self._lock:
            round_number = len(stream.rounds) + 1
        params = FinetuneJobParams(
            session=name,
            recording=recording.directory.name,
            frames=frames,
            bundle=str(bundle.path),
            baseline_calibration=model.calibration_hash,
            candidate_name=_free_name(f"{name}.adapted-{round_number}", taken=set(bundle.sessions)),
            **options.model_dump(include=set(FinetuneOptions.model_fields)),  # AutoAdapt adds when, not how
        )
        job = self._jobs.submit(JobKind.FINETUNE, params.model_dump(mode="json"))
        with self._lock:
            stream.rounds.append(AdaptationRound(job_id=job.id, frames=frames, started_from=model.calibration.name))
        logger.info("stream %r: fine-tune round %d queued as job %s on %d frames", name, round_number, job.id, frames)
        return job

    # --- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            with self._lock:
                streams = list(self._streams.items())
            for name, stream in streams:
                try:
                    self._follow(name, stream)
                except NotRunning:
                    return  # the server is stopping
                except Exception:  # a bug in one stream's round must not end adaptation for the others
                    logger.exception("stream %r: adaptation step failed", name)

    def _follow(self, name: str, stream: _Stream) -> None:
        active = stream.active
        if active is not None:
            try:
                job = self._jobs.get(active.job_id)
            except UnknownJob:
                job = None
            if job is None or job.state.finished:
                self._apply(name, stream, active, job)
            else:
                active.state = job.state
            return
        if stream.auto is not None and stream.stopped is None and self._due(stream):
            try:
                self.start_round(name, stream.auto)
            except NotEnoughFrames:
                pass  # not yet: checked again on the next poll
            except BundleError as error:
                stream.stopped = str(error)

    def _due(self, stream: _Stream) -> bool:
        auto, session = stream.auto, stream.session
        if len(stream.rounds) >= auto.max_rounds:
            stream.stopped = f"{auto.max_rounds} rounds done (max_rounds)"
            return False
        if stream.rounds:
            return session.frames_accepted >= auto.growth * stream.rounds[-1].frames
        first, last = session.first_acquisition_time_ns, session.last_acquisition_time_ns
        bundle = session.model.loaded.bundle
        if session.frames_accepted < frames_to_decide(bundle.context_frames, bundle.horizon):
            return False
        return first is not None and last is not None and (last - first) / 1e9 >= auto.after_s

    def _apply(self, name: str, stream: _Stream, round_: AdaptationRound, job: Job | None) -> None:
        if job is None or job.state is not JobState.SUCCEEDED:
            state = job.state if job is not None else "lost"
            error = job.error if job is not None else "the job is no longer in the job table"
            round_.outcome = f"the fine-tune did not finish ({state}: {error}); the stream keeps its calibration"
            round_.state = state
            logger.warning("stream %r: %s", name, round_.outcome)
            return
        summary = job.summary or {}
        round_.candidate = summary.get("candidate")
        round_.candidate_score = summary.get("candidate_score")
        round_.baseline_score = summary.get("baseline_score")
        if not summary.get("improved"):
            round_.outcome = summary.get("reason", "not better on held-out frames: kept, not used")
            round_.state = "kept"  # set last: a reader that sees the state also sees its outcome
            self._maybe_stop(stream, swapped=False, gain=0.0)
            return
        try:
            loaded = self._bundles.load(Path(summary["bundle"]))
            self._swap_session(
                name,
                calibration=round_.candidate,
                bundle_id=loaded.id,
                expect_session=stream.session,
                expect_calibration=round_.started_from,
            )
        except (UnknownSession, IncompatibleSwap, BundleError) as error:
            round_.outcome = f"not swapped: {error}; kept in {summary['bundle']}"
            round_.state = "kept"
            logger.warning("stream %r: %s", name, round_.outcome)
            return
        round_.swapped = True
        round_.outcome = f"swapped in: {summary['reason']}"
        round_.state = "swapped"
        self._remember(name, StreamRecord(summary["bundle"], round_.candidate, stream.session.num_units))
        self._maybe_stop(stream, swapped=True, gain=float(summary.get("gain", 0.0)))
        logger.info("stream %r: %s", name, round_.outcome)

    def _maybe_stop(self, stream: _Stream, *, swapped: bool, gain: float) -> None:
        auto = stream.auto
        if auto is not None and swapped and gain < auto.min_gain:
            stream.stopped = f"the last swap gained {gain:.4f} (< min_gain {auto.min_gain})"

    # --- the last good calibration ---------------------------------------------------------------

    def _remember(self, name: str, record: StreamRecord) -> None:
        folder = self._data_dir / STREAMS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{name}.json.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(record)))
        os.replace(tmp, folder / f"{name}.json")

    def remembered(self, name: str) -> StreamRecord | None:
        """The stream's last good calibration from an earlier run, or None."""
        path = self._data_dir / STREAMS_DIR / f"{name}.json"
        try:
            return StreamRecord(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            logger.warning("ignoring %s: %s", path, error)
            return None


def _free_name(name: str, *, taken: set[str]) -> str:
    candidate, suffix = name, 1
    while candidate in taken:
        suffix += 1
        candidate = f"{name}-{suffix}"
    return candidate
