"""The ingest thread: owns the ZeroMQ sockets and runs the frame pipeline and every session change.

The runtime (poco_rt.server.runtime) builds the pipeline and the forecast publisher; this thread
binds the sockets, hands the publisher its PUB socket for as long as it runs, and runs the loop.

    loop: poll(frames socket, command wake-up, 100 ms)
          -> run queued commands (open, close, swap, an HTTP frame)   between two frames, never during one
          -> take up to max_batch_messages frames                      pipeline.ingest each
          -> pipeline.publish_pending()                                 one forecast per session that took frames
          -> log sessions that stalled or came back

Everything that changes a session runs here, as a command submitted from another thread
(`submit` returns a Future), so the ring buffers need no locks and a swap can never land
between a frame's normalisation and its forecast. Commands wake the poll through an inproc
socket, so they wait for at most one frame's work, not for the poll timeout.

Back-pressure: the frame socket's receive high-water mark bounds what queues here. With PULL, a
publisher that reaches it should drop (send with NOBLOCK); with SUB, ZeroMQ drops for us. The
server sees either as a gap in frame indices, which the gap policy handles and counts.

Peers: a ZeroMQ peer that does not finish its handshake in time, or goes silent after it (no
answer to the sockets' heartbeats), is disconnected. A multipart message that never ends is kept
whole by libzmq, unseen and unbounded; past `max_memory_mb` the loop takes the frames already
queued and replaces the frame socket with a new one on the same address, which ends every frame
connection and the half-sent message with it (poco_rt.server.memory_guard says why and when).

Stopping drains: `stop` ends the loop, then the thread keeps taking frames (and queued commands)
until the frame socket has been quiet for DRAIN_QUIET_MS or half the stop timeout is spent,
forecasts and publishes them, and closes the PUB socket with a linger so those last forecasts
leave. What publishers sent before the stop is still in their queues or in flight on TCP, so the
socket stays bound while it drains: unbinding would refuse new peers, but ZeroMQ would then also
drop what the connected ones have in flight, the frames the drain is for. The recorder waits for
the disk instead of dropping while the drain runs: nothing real-time is left to protect.
With CURVE (poco_rt.server.curve), both stream sockets are CURVE servers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from poco_rt.errors import NotRunning
from poco_rt.server.curve import ServerCurve
from poco_rt.server.memory_guard import MemoryGuard
from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.pipeline import FramePipeline
from poco_rt.server.publisher import ForecastPublisher
from poco_rt.server.recorder import Recorder
from poco_rt.server.session import SessionTable
from poco_rt.server.settings import FrameSocketKind, ServerSettings

logger = logging.getLogger(__name__)

POLL_INTERVAL_MS = 100  # how often an idle loop looks for stalled sessions and the stop flag
DRAIN_QUIET_MS = 100  # a drain ends once no frame came for this long: the publishers' queues are empty
DRAIN_SHARE = 0.5  # of the stop timeout, for draining frames; the rest is for the last forecasts and the join
REBIND_TIMEOUT_S = 2.0  # at most, for a reset frame socket's address to come free again
FORECAST_LINGER_S = 0.5  # at most, for the last forecasts to leave the PUB socket at stop


@dataclasses.dataclass(frozen=True)
class BoundEndpoints:
    """Where the ingest thread's sockets are bound (the clients' StreamEndpoints, as read over REST, mirrors it)."""

    frames: str  # e.g. tcp://127.0.0.1:8701, where publishers connect
    forecasts: str  # where forecast subscribers connect


class IngestThread:
    def __init__(
        self,
        *,
        settings: ServerSettings,
        sessions: SessionTable,
        recorder: Recorder | None,
        pipeline: FramePipeline,
        publisher: ForecastPublisher,
        metrics: ServerMetrics,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._recorder = recorder
        self._pipeline = pipeline
        self._publisher = publisher
        self._metrics = metrics
        self._curve = ServerCurve.from_settings(settings)  # a bad certificate fails here, before anything binds
        self._context: zmq.Context | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._taking_frames = threading.Event()  # set by take_frames: until then frames wait in the socket
        self._startup_error: BaseException | None = None
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future]] = queue.SimpleQueue()
        self._wake_address = f"inproc://poco-rt-ingest-{id(self)}"
        self._wake: zmq.Socket | None = None
        self._wake_lock = threading.Lock()  # ZeroMQ sockets are not thread-safe; submitters share this one
        self._frames: zmq.Socket | None = None  # owned by the ingest thread; replaced by a memory-guard reset
        self._drain_s = 0.0  # set by stop: how long the thread may drain frames
        self._forecast_linger_ms = 0  # set by stop: how long the last forecasts may take to leave
        self.endpoints: BoundEndpoints | None = None
        self.failure: Exception | None = None  # what ended the thread, if not stop()

    @property
    def started(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self._ready.is_set()
            and not self._stopping.is_set()
        )

    def start(self, *, timeout_s: float = 10.0) -> BoundEndpoints:
        """Bind the sockets (on the new thread) and return where they listen; raises zmq.ZMQError if a bind fails.

        The thread runs commands from here on but takes no frame until `take_frames`: a publisher that was
        waiting for the server sends its queued frames the moment the socket binds, and they must find the
        sessions the server opens at start, not be refused as frames of unknown sessions."""
        self._context = zmq.Context()
        for core in self._settings.io_cores():
            self._context.set(zmq.THREAD_AFFINITY_CPU_ADD, core)
        if self._curve is not None:
            self._curve.start(self._context)
        self._stopping.clear()
        self._ready.clear()
        self._taking_frames.clear()
        self._startup_error = None
        self.endpoints = None
        self._thread = threading.Thread(target=self._run, args=(self._context,), name="poco-rt-ingest", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the ingest thread did not bind its sockets within {timeout_s} s")
        endpoints = self.endpoints
        if self._startup_error is not None or endpoints is None:
            self._thread.join(timeout_s)
            self._end_context()
            self._thread = None
            raise self._startup_error or NotRunning("the ingest thread ended before binding its sockets")
        self._wake = self._context.socket(zmq.PUSH)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.connect(self._wake_address)
        logger.info("frames in on %s (%s), forecasts out on %s (PUB)", endpoints.frames,
                    self._settings.frame_socket.value.upper(), endpoints.forecasts)  # fmt: skip
        return endpoints

    def stop(self, *, timeout_s: float) -> None:
        """End the loop, drain queued frames, close the sockets, fail late commands; wait at most `timeout_s`."""
        if self._thread is None:
            return
        self._drain_s = timeout_s * DRAIN_SHARE
        self._forecast_linger_ms = int(min(FORECAST_LINGER_S, timeout_s / 4) * 1000)
        self._stopping.set()
        self._poke()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.error("the ingest thread did not stop within %.1f s", timeout_s)
        with self._wake_lock:
            if self._wake is not None:
                self._wake.close()
                self._wake = None
        if not self._thread.is_alive():
            self._end_context()  # waits out the PUB socket's linger: the last forecasts leave
        self._thread = None
        self._context = None

    def _end_context(self) -> None:
        if self._curve is not None:
            self._curve.stop()
        if self._context is not None:
            self._context.term()
        self._context = None

    def take_frames(self) -> None:
        """Start taking frames from the socket (commands, HTTP frames included, run from `start` on). Any thread."""
        self._taking_frames.set()
        self._poke()

    def submit(self, command: Callable[[], Any]) -> concurrent.futures.Future:
        """Run `command` on the ingest thread between two frames; the Future holds its result or exception."""
        if not self.started:
            raise NotRunning("the ingest thread is not running")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._commands.put((command, future))
        self._poke()
        return future

    def ingest_now(self, parts: list[bytes], received_ns: int) -> concurrent.futures.Future:
        """A frame that came another way (HTTP): through the same pipeline, between two socket frames."""
        return self.submit(lambda: self._pipeline.ingest(parts, received_ns))

    def forget(self, session_name: str) -> None:
        """On the ingest thread: drop a closing session's pending forecast."""
        self._pipeline.forget(session_name)

    def _poke(self) -> None:
        with self._wake_lock:
            if self._wake is not None:
                # zmq.Again: a thousand wake-ups are already queued, so the thread will look at the commands
                with contextlib.suppress(zmq.Again):
                    self._wake.send(b"", zmq.NOBLOCK)

    def _bind(self, socket: zmq.Socket, port: int) -> str:
        socket.bind(f"tcp://{self._settings.host}:{port if port else '*'}")
        return socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def _run(self, context: zmq.Context) -> None:
        settings = self._settings
        if hasattr(os, "sched_setaffinity"):
            # This thread only (Linux affinity is per thread), and so its onnxruntime calls: off the job cores.
            os.sched_setaffinity(0, settings.realtime_cores())
        frames = self._frame_socket(context)
        forecasts = context.socket(zmq.PUB)
        wake = context.socket(zmq.PULL)
        sockets = (frames, forecasts, wake)
        try:
            for socket in sockets:
                socket.setsockopt(zmq.LINGER, 0)
            forecasts.setsockopt(zmq.SNDHWM, settings.forecast_queue_messages)
            self._guard_peers(forecasts)
            if self._curve is not None:
                self._curve.secure(forecasts)
            wake.bind(self._wake_address)
            self.endpoints = BoundEndpoints(
                frames=self._bind(frames, settings.frame_port), forecasts=self._bind(forecasts, settings.forecast_port)
            )
        except zmq.ZMQError as error:
            self._startup_error = error
            for socket in sockets:
                socket.close()
            self._ready.set()
            return
        self._frames = frames
        self._publisher.attach(forecasts)
        self._ready.set()
        try:
            self._loop(wake)
            self._drain()
        except Exception as error:  # a bug: the thread ends, /readyz turns 503 and says why
            self.failure = error
            logger.critical("the ingest thread failed and takes no more frames", exc_info=True)
        finally:
            self._publisher.detach()
            self._pipeline.clear()
            forecasts.setsockopt(zmq.LINGER, self._forecast_linger_ms)
            for socket in (self._frames, forecasts, wake):
                if socket is not None:  # the frame socket is None if a reset could not bind its successor
                    socket.close()
            self._frames = None
            self._fail_queued_commands()

    def _frame_socket(self, context: zmq.Context) -> zmq.Socket:
        """A frame socket with every option set, not yet bound."""
        settings = self._settings
        frames = context.socket(zmq.PULL if settings.frame_socket is FrameSocketKind.PULL else zmq.SUB)
        frames.setsockopt(zmq.LINGER, 0)
        frames.setsockopt(zmq.RCVHWM, settings.frame_queue_messages)
        # A hard memory guard: twice the payload limit, so frames just over it are still counted as oversized.
        # It bounds one part only: the memory guard (memory_guard.py) covers a message whose parts never end.
        frames.setsockopt(zmq.MAXMSGSIZE, 2 * settings.wire_limits().max_payload_bytes + 4096)
        if settings.frame_socket is FrameSocketKind.SUB:
            frames.setsockopt(zmq.SUBSCRIBE, b"")
        self._guard_peers(frames)
        if self._curve is not None:
            self._curve.secure(frames)
        return frames

    def _guard_peers(self, socket: zmq.Socket) -> None:
        """End connections that never finish the ZMTP handshake, or go silent after it.

        A peer must greet within zmq_handshake_timeout_s. After that the socket sends a ZMTP PING every
        zmq_heartbeat_interval_s, and a peer that sends nothing (not even the PONG every libzmq >= 4.2
        answers by itself) for zmq_heartbeat_timeout_s is disconnected, its descriptor freed."""
        settings = self._settings
        socket.setsockopt(zmq.HANDSHAKE_IVL, int(settings.zmq_handshake_timeout_s * 1000))
        socket.setsockopt(zmq.HEARTBEAT_IVL, int(settings.zmq_heartbeat_interval_s * 1000))
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(settings.zmq_heartbeat_timeout_s * 1000))
        socket.setsockopt(zmq.HEARTBEAT_TTL, int(settings.zmq_heartbeat_timeout_s * 1000))  # what peers allow us

    def _require_frames(self) -> zmq.Socket:
        if self._frames is None:
            raise NotRunning("the ingest thread has no frame socket: it is not running")
        return self._frames

    def _reset_frame_socket(self, context: zmq.Context) -> None:
        """Drop every frame connection (and any half-sent message it holds): a new socket on the same address."""
        endpoints = self.endpoints
        if endpoints is None:
            raise NotRunning("the ingest thread has no frame endpoint: it is not running")
        self._require_frames().close()
        self._frames = None
        frames = self._frame_socket(context)
        deadline = time.monotonic() + REBIND_TIMEOUT_S
        while True:
            try:
                frames.bind(endpoints.frames)
                break
            except zmq.ZMQError as error:  # libzmq closes the old listener on its I/O thread, soon after close()
                if error.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    frames.close()
                    raise
                time.sleep(0.01)
        self._frames = frames
        self._metrics.frame_socket_resets.inc()

    def _loop(self, wake: zmq.Socket) -> None:
        pipeline = self._pipeline
        guard = MemoryGuard(max_memory_mb=self._settings.max_memory_mb)
        poller = zmq.Poller()
        poller.register(wake, zmq.POLLIN)
        while not self._stopping.is_set():
            frames = self._require_frames()
            if self._taking_frames.is_set() and frames not in poller:
                poller.register(frames, zmq.POLLIN)
            events = dict(poller.poll(POLL_INTERVAL_MS))
            if wake in events:
                while wake.poll(0):
                    wake.recv()
                self._run_commands()
            taken = self._take_batch(frames, pipeline) if frames in events else 0
            pipeline.publish_pending()
            if taken:
                self._metrics.ingest_batch.observe(taken)
            self._log_stalls()
            if guard.frame_socket_should_reset():
                taken = self._settings.max_batch_messages
                while taken == self._settings.max_batch_messages:  # the frames queued are taken, not closed away
                    taken = self._take_batch(frames, pipeline)
                    self._metrics.ingest_batch.observe(taken)
                pipeline.publish_pending()
                if frames in poller:
                    poller.unregister(frames)
                self._reset_frame_socket(frames.context)  # the next turn polls its successor

    def _take_batch(self, frames: zmq.Socket, pipeline: FramePipeline) -> int:
        """Up to max_batch_messages queued frames through the pipeline; how many there were (the caller
        counts the batch once its forecasts are out).

        After each frame the socket's events say whether another is queued, so a batch ends without
        a receive that fails (zmq.Again is an exception, raised on every frame in steady state)."""
        taken = 0
        while taken < self._settings.max_batch_messages:
            try:
                parts = frames.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            pipeline.ingest(parts, time.time_ns())
            taken += 1
            if not frames.get(zmq.EVENTS) & zmq.POLLIN:
                break
        return taken

    def _drain(self) -> None:
        """After stop: what publishers already sent, until the socket is quiet or the drain time is up."""
        pipeline, publisher = self._pipeline, self._publisher
        frames = self._require_frames()
        started = time.monotonic()
        deadline = started + self._drain_s
        forecasts_before = publisher.published
        taken = 0
        if self._recorder is not None:
            self._recorder.wait_for_disk_until(deadline)
        try:
            while (remaining_s := deadline - time.monotonic()) > 0:
                self._run_commands()  # an HTTP frame posted before the stop is in flight too
                if not frames.poll(min(DRAIN_QUIET_MS, max(1, int(remaining_s * 1000)))):
                    break
                batch = self._take_batch(frames, pipeline)
                pipeline.publish_pending()
                self._metrics.ingest_batch.observe(batch)
                taken += batch
            else:
                logger.warning(
                    "frames were still arriving after %.1f s of draining; stopped taking them", self._drain_s
                )
        finally:
            if self._recorder is not None:
                self._recorder.wait_for_disk_until(None)
        logger.info(
            "drained %d queued frames in %.0f ms before stopping and published %d forecasts of them",
            taken, (time.monotonic() - started) * 1000, publisher.published - forecasts_before,
        )  # fmt: skip

    def _run_commands(self) -> None:
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            result, error = None, None
            try:
                result = command()
            except Exception as raised:  # handed to the submitter, who raises it: nothing is swallowed here
                error = raised
            try:  # an HTTP frame's forecast is out, and the frame counted, before its sender hears back
                self._pipeline.publish_pending()
            finally:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)

    def _fail_queued_commands(self) -> None:
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(NotRunning("the ingest thread stopped before running the command"))

    def _log_stalls(self) -> None:
        now = time.monotonic()
        for session in self._sessions.snapshot().values():
            if session.update_stalled(now, self._settings.stall_after_s):
                if session.stalled:
                    logger.warning(
                        "session %r stalled: no frame for %.1f s", session.name, self._settings.stall_after_s
                    )
                else:
                    logger.info("session %r is receiving frames again", session.name)
