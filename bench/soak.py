"""Soak: a real `poco-rt serve` under a rig's whole load for minutes: lost frames, latency, memory.

S sessions of N units (4 x 1000) stream at the frame rate (30 Hz) from FramePublishers over
ZeroMQ while W WebSocket subscribers (50, spread evenly over the sessions) take the forecasts and a
PINning job trains in the server's job worker (a new one whenever the last finishes). Timeline:

    0 .. idle_s       the same streams with one subscriber per session and no job: the baseline
    idle_s            the baseline subscribers leave, the W subscribers connect, the first job is submitted
    + warm_up_s       RSS "after warm-up"; the memory slope is fitted from here on
    (--hostile)       from the subscribers' connection to the end, bench/hostile.py attacks beside the soak
    .. minutes        every sample_s: the server's RSS, its /metrics counters, sessions, job, subscribers
    end               publishing stops; each subscriber must still receive the last frame's forecast

What it reports (and writes to --out as it goes: samples.jsonl, one line per sample, so a cut-off
run keeps its data; then summary.json; server.log):
- frames: sent, accepted (GET /v1/sessions), recorded on disk (read back after the server
  stopped); dropped = sent - accepted; frames the recorder did not save (/metrics).
- forecasts: per subscriber, received against the frames its subscription spanned. WebSocket
  subscribers are latest-wins by design, so the difference is forecasts skipped (a backlog the
  server coalesced into one forecast, or a subscriber's slot overwritten), never called drops.
- latency end to end: the publisher's acquisition stamp to the subscriber's receipt (one clock),
  p50/p99/max, for the baseline and the soak and their p99 ratio; and the time inside the server.
- the server process's RSS at start, after warm-up and at the end, and its least-squares slope
  over the post-warm-up samples against a stated bound (soak_summary.py); the jobs and how they ended.

tests/server/test_soak.py runs this script for one minute and asserts what must hold absolutely. What
the samples add up to (summary.json, the printed table) is bench/soak_summary.py.
With --hostile the server has a token, which the soak's clients send and the hostile client
(unauthenticated large bodies, silent connections, a ZeroMQ message that never ends) does not;
what that client saw is in hostile.json and the summary.
Usage: python bench/soak.py [--minutes 10] [--sessions 4] [--units 1000] [--rate-hz 30] [--subscribers 50]
                            [--no-job] [--hostile] [--out RUN_DIR]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from live_server import SESSION, Server, bench_bundle
from prometheus_client.parser import text_string_to_metric_families
from soak_summary import recorded_frames, report, summarise
from websockets.exceptions import WebSocketException

from poco_rt.clients import AsyncForecastClient, AsyncWebSocketForecastSubscriber, FramePublisher, PublisherStats
from poco_rt.clients.updates import ForecastTiming
from poco_rt.errors import PocoRtError, RequestRefused
from poco_rt.resources import default_bundle_path
from poco_rt.server.jobs.store import JobState

try:
    import psutil
except ImportError:  # not a poco-rt dependency; /proc says the server's RSS too (Linux)
    psutil = None

T = TypeVar("T")
SUBSCRIBER_TIMEOUT_S = 10.0  # a receive that waits longer (forecasts come every frame or so) ends that subscriber
CONNECT_TIMEOUT_S = 30.0
REST_TIMEOUT_S = 30.0  # the server's event loop also serves 50 WebSocket subscribers: replies can take seconds
DRAIN_TIMEOUT_S = 20.0  # after the last frame, how long every subscriber gets to receive its forecast
HOSTILE = Path(__file__).parent / "hostile.py"
HOSTILE_TOKEN = "soak-hostile-token"  # the server's token in --hostile runs; the hostile client never sends it
HOSTILE_STOP_TIMEOUT_S = 60.0  # its rounds are bounded (15 s at most): it ends this soon after its time is up
# One PINning network per job (the N = 500 bump of Rajan et al. 2016), short enough that several finish in a
# 10-minute soak and their start and end (a process, SQLite writes, result files) happen under load too.
JOB_PARAMS = {"target": "bump", "units": 500, "plastic_fraction": 0.1, "runs": 40, "free_runs": 5}
JOB_MIN_TIME_LEFT_S = 20.0  # no new job this close to the end
COUNTERS = (  # the /metrics figures each sample keeps, each summed over its labels
    "frames_received_total", "frames_accepted_total", "frames_rejected_total", "frames_dropped_total",
    "gap_frames_filled_total", "session_resets_total", "forecasts_total", "forecasts_coalesced_total",
    "recorded_frames_total", "recorder_dropped_frames_total", "recorder_write_errors_total",
    "recorder_queue_depth", "websocket_subscribers", "websocket_forecasts_sent_total",
    "websocket_forecasts_skipped_total",
)  # fmt: skip


def read_counters(metrics_text: str) -> dict[str, float]:
    """The COUNTERS of a /metrics page (Prometheus text), each summed over its labels."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            name = sample.name.removeprefix("poco_rt_")
            if name in totals:
                totals[name] += sample.value
    return totals


class ProcessMemory:
    """The resident memory of the server process, and of its children (the job workers: psutil only)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def rss_mib(self) -> float:
        if psutil is not None:
            return psutil.Process(self.pid).memory_info().rss / 2**20
        status = Path(f"/proc/{self.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) / 1024

    def children_rss_mib(self) -> float | None:
        if psutil is None:
            return None
        total = 0
        for child in psutil.Process(self.pid).children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:  # a worker that ended between the listing and the reading
                continue
        return total / 2**20


class JobKeeper:
    """One PINning job in the server's worker for the whole soak: a new one whenever the last has finished."""

    def __init__(self, client: AsyncForecastClient) -> None:
        self.client = client
        self.jobs: list[dict[str, Any]] = []  # each job as GET /v1/jobs/{id} last showed it

    def current(self) -> dict[str, Any] | None:
        if not self.jobs:
            return None
        job = self.jobs[-1]
        return {"id": job["id"], "state": job["state"], "progress": round(job["progress"], 3)}

    async def keep(self, *, time_left_s: float) -> None:
        if self.jobs:
            self.jobs[-1] = await self.client.job(self.jobs[-1]["id"])
        if (not self.jobs or JobState(self.jobs[-1]["state"]).finished) and time_left_s > JOB_MIN_TIME_LEFT_S:
            self.jobs.append(await self.client.submit_pinning_job(JOB_PARAMS))

    async def finish(self) -> None:
        """Cancel the job still running, so that the server stops at once; keep every job's last state."""
        if self.jobs and not JobState((await self.client.job(self.jobs[-1]["id"]))["state"]).finished:
            try:
                await self.client.cancel_job(self.jobs[-1]["id"])
            except RequestRefused as refused:
                if refused.status_code != httpx.codes.CONFLICT:  # 409: it finished since we looked
                    raise
        self.jobs = [await self.client.job(job["id"]) for job in self.jobs]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timeline:
    """The run's phases, in seconds from the first frame."""

    total_s: float
    idle_s: float  # the baseline: streams, one subscriber per session, no job
    warm_up_s: float  # after idle_s: subscribers connected, the job started, the server's memory settled

    @classmethod
    def of(cls, minutes: float) -> Timeline:
        total_s = 60.0 * minutes
        idle_s = min(30.0, max(8.0, 0.1 * total_s))
        warm_up_s = max(10.0, 0.1 * (total_s - idle_s))
        if total_s < idle_s + warm_up_s + 10.0:
            raise ValueError(f"minutes={minutes} leaves no time after the warm-up; give at least 0.5")
        return cls(total_s=total_s, idle_s=idle_s, warm_up_s=warm_up_s)


@dataclasses.dataclass
class SubscriberLog:
    """What one WebSocket subscriber saw: how many forecasts, which frames they answered, when, how late."""

    session: str
    timed_from_index: int  # forecasts of earlier frames (the sessions' warm-up) are counted, not timed
    received: int = 0
    first_index: int | None = None
    last_index: int = -1
    last_receipt_s: float | None = None  # time.monotonic()
    max_gap_s: float = 0.0  # the longest wait between two forecasts
    end_to_end_ms: array.array = dataclasses.field(default_factory=lambda: array.array("d"))
    server_ms: array.array = dataclasses.field(default_factory=lambda: array.array("d"))
    error: str | None = None  # why it ended before it was told to

    def take(self, frame_index: int, timing: ForecastTiming) -> None:
        now_s = time.monotonic()
        # The first forecast is the server's latest at connection time, possibly older than the connection.
        if self.received and frame_index >= self.timed_from_index:
            self.end_to_end_ms.append(timing.age_ms)
            self.server_ms.append(timing.server_ms)
        if self.last_receipt_s is not None:
            self.max_gap_s = max(self.max_gap_s, now_s - self.last_receipt_s)
        self.first_index = frame_index if self.first_index is None else self.first_index
        self.received += 1
        self.last_index = frame_index
        self.last_receipt_s = now_s


async def follow(url: str, log: SubscriberLog, token: str | None) -> None:
    """Take one session's forecasts over WebSocket until cancelled; an error ends it and is kept in the log."""
    subscriber = AsyncWebSocketForecastSubscriber(url, session=log.session, token=token, timeout_s=SUBSCRIBER_TIMEOUT_S)
    try:
        async with subscriber as sub:
            async for frame_index, _forecast, timing in sub:
                log.take(frame_index, timing)
        log.error = "the server ended the subscription"
    except (PocoRtError, TimeoutError, OSError, WebSocketException) as error:
        log.error = f"{type(error).__name__}: {error}"


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    """What `call` returns, and how long it took in ms."""
    started_s = time.monotonic()
    result = await call
    return result, (time.monotonic() - started_s) * 1e3


class Streams(threading.Thread):
    """The acquisition side: one FramePublisher per session, every session's frame k sent at k / rate_hz.

    Frames are synthetic (seeded normal noise, a bank of 64 rows cycled): the soak measures the
    server, not the model, and never reads the shared data. A late loop sends at once to catch up
    (counted as lateness); a publisher drops only if 1000 frames already wait, which is counted.
    """

    def __init__(self, endpoint: str, sessions: list[str], *, units: int, rate_hz: float, total_frames: int) -> None:
        super().__init__(name="soak-publisher", daemon=True)
        self.endpoint, self.sessions, self.rate_hz, self.total_frames = endpoint, sessions, rate_hz, total_frames
        self.bank = np.random.default_rng(0).standard_normal((64, units)).astype(np.float32)
        self.started_s = 0.0  # time.monotonic() of frame 0, set before `began` is
        self.began = threading.Event()
        self.halt = threading.Event()
        self.max_late_ms = 0.0
        self.frames_sent = 0  # per session, so far
        self.stats: dict[str, PublisherStats] = {}

    def run(self) -> None:
        publishers = [FramePublisher(self.endpoint, session=session) for session in self.sessions]
        try:
            self.started_s = time.monotonic()
            self.began.set()
            for index in range(self.total_frames):
                late_s = time.monotonic() - (self.started_s + index / self.rate_hz)
                if late_s < 0:
                    time.sleep(-late_s)
                self.max_late_ms = max(self.max_late_ms, late_s * 1e3)
                for offset, publisher in enumerate(publishers):
                    publisher.send(self.bank[(index + 16 * offset) % len(self.bank)], index=index)
                self.frames_sent = index + 1
                if self.halt.is_set():
                    break
        finally:
            for publisher in publishers:
                self.stats[publisher.session] = publisher.stats
                publisher.close()


class Soak:
    """One run against a started server: the streams, the subscribers, the job, and a sample every sample_s."""

    def __init__(self, server: Server, args: argparse.Namespace, timeline: Timeline, run_dir: Path) -> None:
        self.server, self.args, self.timeline = server, args, timeline
        self.sessions = [f"soak{i}" for i in range(args.sessions)]
        self.total_frames = round(timeline.total_s * args.rate_hz)
        self.streams = Streams(
            server.info["frame_endpoint"],
            self.sessions,
            units=args.units,
            rate_hz=args.rate_hz,
            total_frames=self.total_frames,
        )
        warm_up_frames = server.info["context_frames"] + round(args.rate_hz)  # C frames, then one second
        self.idle_logs = [SubscriberLog(session, timed_from_index=warm_up_frames) for session in self.sessions]
        self.soak_logs = [
            SubscriberLog(self.sessions[i % len(self.sessions)], timed_from_index=0) for i in range(args.subscribers)
        ]
        self.memory = ProcessMemory(server.process.pid)
        self.token = HOSTILE_TOKEN if args.hostile else None
        self.run_dir = run_dir
        self.samples: list[dict[str, Any]] = []
        self._samples_file = (run_dir / "samples.jsonl").open("a")
        self._timed_cursor: dict[int, int] = {}

    async def run(self) -> dict[str, Any]:
        timeline, url = self.timeline, self.server.url
        async with (
            AsyncForecastClient(url, token=self.token, timeout_s=REST_TIMEOUT_S) as client,
            httpx.AsyncClient(base_url=url, headers=self._auth_headers(), timeout=REST_TIMEOUT_S) as http,
        ):
            self.client, self.http = client, http
            self.jobs = JobKeeper(client) if self.args.job else None
            self.rss_start_mib = self.memory.rss_mib()
            try:
                idle_tasks = await self._connect(self.idle_logs)
                self.streams.start()
                await asyncio.to_thread(self.streams.began.wait)
                await self._sample_until(timeline.idle_s, "idle")
                await self._disconnect(idle_tasks)
                if self.jobs is not None:
                    await self.jobs.keep(time_left_s=timeline.total_s - timeline.idle_s)
                soak_tasks = await self._connect(self.soak_logs)
                hostile = self._start_hostile() if self.args.hostile else None
                await self._sample_until(timeline.total_s, "soak")
                if hostile is not None:
                    await asyncio.to_thread(hostile.wait, HOSTILE_STOP_TIMEOUT_S)
                await asyncio.to_thread(self.streams.join)
                self.drained = await self._drain()
                final = await self._sample("end")
                await self._disconnect(soak_tasks)
            finally:
                self.streams.halt.set()  # an error above: stop publishing too
                self._samples_file.close()
            if self.jobs is not None:
                await self.jobs.finish()
            self.final_sessions = {info["name"]: info for info in await client.sessions()}
        return final

    def _auth_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def _start_hostile(self) -> subprocess.Popen[bytes]:
        """bench/hostile.py in its own process (its threads never take this one's GIL), until the soak's end."""
        seconds = self.timeline.total_s - self._elapsed_s()
        command = [sys.executable, str(HOSTILE), "--url", self.server.url, "--seconds", f"{seconds:.1f}"]
        command += ["--frame-endpoint", self.server.info["frame_endpoint"], "--out", str(self.run_dir / "hostile.json")]
        return subprocess.Popen(command)

    def _elapsed_s(self) -> float:
        return time.monotonic() - self.streams.started_s

    async def _connect(self, logs: list[SubscriberLog]) -> list[asyncio.Task]:
        """Start a subscriber per log and return once the server counts every one of them."""
        tasks = [asyncio.create_task(follow(self.server.url, log, self.token)) for log in logs]
        await self._await_subscribers(len(logs), logs)
        return tasks

    async def _disconnect(self, tasks: list[asyncio.Task]) -> None:
        """End the subscribers and wait until the server has let them go (its gauge is back at 0)."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._await_subscribers(0, [])

    async def _await_subscribers(self, expect: int, logs: list[SubscriberLog]) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while (await self._counters())["websocket_subscribers"] != expect:
            failed = [log.error for log in logs if log.error]
            if failed or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not count {expect} WebSocket subscribers: {failed or 'timed out'}")
            await asyncio.sleep(0.2)

    async def _counters(self) -> dict[str, Any]:
        response = await self.http.get("/metrics")
        response.raise_for_status()
        return read_counters(response.text)

    async def _sample_until(self, until_s: float, phase: str) -> None:
        """Samples every sample_s (on one grid from frame 0) until `until_s` seconds after frame 0."""
        while (now_s := self._elapsed_s()) < until_s:
            next_s = (now_s // self.args.sample_s + 1) * self.args.sample_s
            await asyncio.sleep(min(next_s, until_s) - now_s)
            if next_s <= until_s:
                await self._sample(phase)

    async def _sample(self, phase: str) -> dict[str, Any]:
        """One line of samples.jsonl. The server is asked everything at once: its event loop is the slow part."""
        elapsed_s = self._elapsed_s()
        rss_mib, job_workers_rss_mib = self.memory.rss_mib(), self.memory.children_rss_mib()
        keep_job = self.jobs is not None and phase == "soak"
        (sessions, rest_ms), ready, metrics, _ = await asyncio.gather(
            timed(self.client.sessions()),
            self.client.ready(),
            self._counters(),
            self.jobs.keep(time_left_s=self.timeline.total_s - elapsed_s) if keep_job else asyncio.sleep(0),
        )
        logs = self.idle_logs if phase == "idle" else self.soak_logs
        sample = {
            "t_s": round(elapsed_s, 3),
            "phase": phase,
            "rest_ms": round(rest_ms, 2),  # GET /v1/sessions: how long the control plane keeps a client waiting
            "frames_sent": self.streams.frames_sent * len(self.sessions),  # read after the server's counts
            "rss_mib": rss_mib,
            "job_workers_rss_mib": job_workers_rss_mib,
            "ready": ready,
            "load_average_1min": os.getloadavg()[0],
            "metrics": metrics,
            "session_states": {info["name"]: info["state"] for info in sessions},
            "frames_accepted": {info["name"]: info["frames_accepted"] for info in sessions},
            "forecasts_received": [log.received for log in logs],
            "end_to_end_ms_since_last_sample": self._recent_latency(logs),
            "job": self.jobs.current() if self.jobs is not None else None,
            "publisher_max_late_ms": round(self.streams.max_late_ms, 2),
        }
        self.samples.append(sample)
        self._samples_file.write(json.dumps(sample) + "\n")
        self._samples_file.flush()
        print(
            f"{elapsed_s:7.1f} s  {phase:4}  rss {sample['rss_mib']:7.1f} MiB  "
            f"accepted {sum(sample['frames_accepted'].values()):>7}/{sample['frames_sent']:<7}  "
            f"e2e p99 {sample['end_to_end_ms_since_last_sample'].get('p99', float('nan')):7.1f} ms  "
            f"job {(sample['job'] or {}).get('state', '-')}",
            flush=True,
        )
        return sample

    def _recent_latency(self, logs: list[SubscriberLog]) -> dict[str, float]:
        recent = []
        for log in logs:
            start = self._timed_cursor.get(id(log), 0)
            recent.append(np.frombuffer(log.end_to_end_ms, dtype=np.float64)[start:])
            self._timed_cursor[id(log)] = len(log.end_to_end_ms)
        values = np.concatenate(recent) if recent else np.empty(0)
        if not len(values):
            return {"count": 0}
        return {"count": len(values), "p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}

    async def _drain(self) -> bool:
        """Wait until every subscriber still running got the last frame's forecast; False if one did not in time."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        last = self.total_frames - 1
        while any(log.last_index < last and log.error is None for log in self.soak_logs):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True


def code_version() -> str:
    """The commit this run used, with "-dirty" when the tree had uncommitted changes (anyone's)."""
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent, capture_output=True, text=True
    )
    return described.stdout.strip() or "unknown (not a git checkout)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="publishing time, baseline included")
    parser.add_argument("--sessions", type=int, default=4, help="streams, each of --units units")
    parser.add_argument("--units", type=int, default=1000, help="units per frame, N")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="frames per second per session")
    parser.add_argument("--subscribers", type=int, default=50, help="WebSocket subscribers, spread over the sessions")
    parser.add_argument("--no-job", dest="job", action="store_false", help="no PINning job beside serving")
    parser.add_argument(
        "--hostile", action="store_true", help="bench/hostile.py attacks beside the soak (the server then has a token)"
    )
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between two samples")
    parser.add_argument("--engine-threads", type=int, default=1, help="the server's onnxruntime threads")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the embedded one)")
    parser.add_argument("--data-dir", type=Path, default=None, help="the server's data dir (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="run dir (default: bench/runs/soak-<time>)")
    args = parser.parse_args()
    try:
        timeline = Timeline.of(args.minutes)
    except ValueError as error:
        parser.error(str(error))
    run_dir = args.out or Path(__file__).parent / "runs" / time.strftime("soak-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="poco-rt-soak-"))
    data_dir = args.data_dir or workdir / "data"
    load_start, code = os.getloadavg(), code_version()
    print(
        f"soak: {args.sessions} sessions x {args.units} units at {args.rate_hz:g} Hz, {args.subscribers} WebSocket "
        f"subscribers, {'a PINning job' if args.job else 'no job'}, {args.minutes:g} min; load {load_start[0]:.2f}; "
        f"run dir {run_dir}",
        flush=True,
    )
    try:
        bundle = bench_bundle(args.bundle or default_bundle_path(), workdir / "bundle", args.units)
        sessions = [f"soak{i}={SESSION}" for i in range(args.sessions)]
        server = Server(
            bundle,
            data_dir,
            engine_flags=["--engine-threads", str(args.engine_threads)],
            sessions=sessions,
            log=run_dir / "server.log",
            token=HOSTILE_TOKEN if args.hostile else None,
        )
        try:
            soak = Soak(server, args, timeline, run_dir)
            final = asyncio.run(soak.run())
        finally:
            server.stop()
        on_disk = {name: recorded_frames(data_dir / "recordings", name) for name in soak.sessions}
        load_average = {"start": load_start[0], "end": os.getloadavg()[0]}
        job = JOB_PARAMS if args.job else None
        summary = summarise(soak, final, on_disk, argv=sys.argv, code=code, load_average=load_average, job=job)
        if args.hostile:
            summary["hostile"] = json.loads((run_dir / "hostile.json").read_text())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(report(summary), flush=True)
    if args.hostile:
        print(f"hostile client: {json.dumps(summary['hostile'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
