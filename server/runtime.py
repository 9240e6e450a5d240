"""The server's parts, all wired here from one ServerSettings, behind the operations every caller uses.

    bundles (engines) ─┐
    recorder (thread) ─┼─ ingest thread: sockets, pipeline, every session change
    sessions, latest ──┤
    hub (event loop) ──┘
    jobs (runner thread, worker processes): offline PINning and fine-tune jobs, apart from all of the above
    adaptation (thread): new animals' fine-tune rounds, swapped in through `swap_session`
    grpc (its own threads, optional): the Open Inference Protocol over gRPC, on the bundles alone

`ServerRuntime` is the one way in: REST, the WebSocket, gRPC and the CLI call its operations
(session status, latest and stateless forecasts, raw inference, context reads, subscriptions,
readiness, metrics, jobs, bundles), and its parts are private. Each part has a thread rule (the
ingest thread alone changes sessions, the event loop alone touches subscriptions, the job table
is SQLite on the disk); each operation keeps its part's rule and states in its docstring from
which thread it may be called. The module is longer than most for that reason: the operations
and their rules are in one place.

`start` and `stop` are what the app's lifespan calls: bundles, then the recorder, then the
ingest thread (which binds the sockets), then the job runner, the adaptation thread and the
gRPC endpoint where `grpc_port` is set; stopping goes the other way, each part within the
shutdown timeout. The ingest thread drains as it stops (frames already sent are taken, forecast
and published), and the recorder then completes every session's last chunk.
`stop_stream` is that drain alone, for a caller that must drain before its connections close
(poco_rt.server.serve.DrainingServer, ahead of uvicorn closing the WebSockets).

Control operations do their slow work (loading, binding, warming up an engine) on the calling
thread, then hand the ingest thread one small command that switches between two frames. They
block, so REST calls them from its thread pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from poco_rt.bundle import SessionCalibration, check_session_name
from poco_rt.errors import (
    BadShape,
    FrameError,
    IncompatibleSwap,
    InvalidSessionOptions,
    MissingExtra,
    NonFiniteValues,
    SessionExists,
    SessionLimitReached,
    UnknownSession,
)
from poco_rt.resources import default_bundle_path
from poco_rt.server import inference_protocol as protocol
from poco_rt.server.adaptation import AutoAdapt, FinetuneOptions, StreamAdaptation
from poco_rt.server.auth import bearer_token_matches
from poco_rt.server.bundles import BundleRegistry, BundleStatus
from poco_rt.server.context_view import ContextView, raw_context
from poco_rt.server.forecasts import LatestForecasts, PublishedForecast
from poco_rt.server.hub import ForecastHub, Subscriber, SubscriptionSlots
from poco_rt.server.ingest import BoundEndpoints, IngestThread
from poco_rt.server.jobs.pinning import newest_recording
from poco_rt.server.jobs.runner import JobRunner
from poco_rt.server.jobs.store import Job, JobKind
from poco_rt.server.live_accuracy import UnitAccuracy
from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.pipeline import FramePipeline, FrameResult, FrameStatus
from poco_rt.server.publisher import ForecastPublisher
from poco_rt.server.recorder import Recorder
from poco_rt.server.session import SessionModel, SessionState, SessionTable, StreamSession
from poco_rt.server.session_status import SessionStatus
from poco_rt.server.settings import ServerSettings
from poco_rt.wire import WireLimits, encode_frame

if TYPE_CHECKING:
    from poco_rt.server.grpc_endpoint import GrpcEndpoint

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ServerDescription:
    """What this server is and where its sockets listen, for clients that find the ports over REST."""

    active_bundle: str  # id of the bundle new sessions use
    model_version: str  # its network's version, as forecasts are tagged
    endpoints: BoundEndpoints | None  # None before the ingest thread has bound its sockets
    frame_socket: str  # "pull" or "sub" (FrameSocketKind), how publishers must connect
    grpc_endpoint: str | None  # host:port of the Open Inference Protocol over gRPC, if served
    context_frames: int
    horizon: int
    max_gap_fill_frames: int
    stall_after_s: float


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no single truth value
class StatelessForecast:
    model_version: str
    values: np.ndarray  # (N, P) float32, raw units


@dataclasses.dataclass(frozen=True)
class Readiness:
    ready: bool  # every part started: the server takes frames and forecasts
    ingest_failure: str | None  # what ended the ingest thread, if a bug did


class ServerRuntime:
    """The server's one way in: REST, WebSocket, gRPC and the CLI call these operations, never the parts.

    Each operation says on which thread it may run; the parts behind them (bundles, sessions,
    latest forecasts, hub, recorder, ingest thread, jobs, adaptation, gRPC) are private, so that
    each part's own thread rule is kept here, once.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self._settings = settings
        self._metrics = ServerMetrics()
        self._bundles = BundleRegistry(
            initial_bundle=settings.bundle or default_bundle_path(),
            engine_threads=settings.engine_threads,
            engine_device=settings.engine_device,
            engine_int8=settings.engine_int8,
            engine_helper_cores=settings.io_cores(),
        )
        self._sessions = SessionTable()
        self._latest = LatestForecasts()
        self._hub = ForecastHub(self._metrics)
        self._subscription_slots = SubscriptionSlots(settings.max_websocket_subscribers)
        self._recorder = (
            Recorder(
                root=settings.recordings_dir,
                chunk_frames=settings.recorder_chunk_frames,
                queue_frames=settings.recorder_queue_frames,
                metrics=self._metrics,
            )
            if settings.record_frames
            else None
        )
        frame_limits = settings.wire_limits()
        publisher = ForecastPublisher(
            latest=self._latest,
            hub=self._hub,
            # Checked against what a subscriber with default limits accepts, not against the frame limits.
            limits=WireLimits(max_units=frame_limits.max_units),
            wire_intervals=settings.wire_intervals,
        )
        pipeline = FramePipeline(
            sessions=self._sessions,
            recorder=self._recorder,
            publisher=publisher,
            metrics=self._metrics,
            limits=frame_limits,
            max_gap_fill_frames=settings.max_gap_fill_frames,
            resync_after_frames=settings.resync_after_frames,
            reject_log_interval_s=settings.reject_log_interval_s,
        )
        self._ingest = IngestThread(
            settings=settings,
            sessions=self._sessions,
            recorder=self._recorder,
            pipeline=pipeline,
            publisher=publisher,
            metrics=self._metrics,
        )
        self._jobs = JobRunner(settings)
        self._adaptation = StreamAdaptation(
            sessions=self._sessions,
            jobs=self._jobs,
            bundles=self._bundles,
            swap_session=self.swap_session,
            data_dir=settings.data_dir,
        )
        self._grpc = grpc_endpoint(self) if settings.grpc_port is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoints: BoundEndpoints | None = None
        self._started = False  # start() ran to its end; stop() clears it

    # --- lifecycle and readiness -----------------------------------------------------------------

    @property
    def settings(self) -> ServerSettings:
        """The settings it was built from; immutable, so any thread reads them."""
        return self._settings

    @property
    def started(self) -> bool:
        """start() ran to its end and stop() has not begun. Any thread."""
        return self._started

    @property
    def endpoints(self) -> BoundEndpoints | None:
        """Where the ZeroMQ sockets listen; None until start() has bound them. Any thread."""
        return self._endpoints

    @property
    def ready(self) -> bool:
        """Every part runs. Any thread: each part's `started` is one flag read."""
        recorder_ok = self._recorder is None or self._recorder.started
        grpc_ok = self._grpc is None or self._grpc.started
        return (
            self._bundles.started
            and recorder_ok
            and self._ingest.started
            and self._jobs.started
            and self._adaptation.started
            and grpc_ok
        )

    @property
    def streaming(self) -> bool:
        """The ingest thread runs and has not been told to stop. Any thread."""
        return self._ingest.started

    def readiness(self) -> Readiness:
        """`ready`, and what ended the ingest thread if a bug did (then the server is never ready again)."""
        failure = self._ingest.failure
        return Readiness(
            ready=self.ready, ingest_failure=None if failure is None else f"{type(failure).__name__}: {failure}"
        )

    def authorizes(self, authorization: str | None, query_token: str | None = None) -> bool:
        """Whether a request carries the configured bearer token (always true when none is configured). Any thread."""
        return bearer_token_matches(self._settings.auth_token, authorization, query_token)

    def describe(self) -> ServerDescription:
        """The active bundle, the endpoints and the stream policy. Any thread; NotRunning while stopped."""
        active = self._bundles.active
        settings = self._settings
        return ServerDescription(
            active_bundle=active.id,
            model_version=active.version,
            endpoints=self._endpoints,
            frame_socket=settings.frame_socket.value,
            grpc_endpoint=self._grpc.address if self._grpc is not None else None,
            context_frames=active.bundle.context_frames,
            horizon=active.bundle.horizon,
            max_gap_fill_frames=settings.max_gap_fill_frames,
            stall_after_s=settings.stall_after_s,
        )

    def start(self, loop: asyncio.AbstractEventLoop | None) -> BoundEndpoints:
        """Load the bundle, start the recorder and the ingest thread, open the configured sessions, then
        take frames (so that frames already waiting find their sessions open).

        Blocks (loads ONNX, binds sockets): a caller on the event loop runs it in a worker thread.
        """
        self._loop = loop
        self._hub.bind_loop(loop)
        self._bundles.start()
        if self._recorder is not None:
            self._recorder.start()
        self._endpoints = self._ingest.start()
        for name, calibration in self._settings.open_sessions.items():
            self.open_session(name, calibration)
        auto = AutoAdapt() if self._settings.auto_adapt else None
        for name, units in self._settings.new_animals.items():
            self.open_session(name, units=units, adapt=auto)
        self._ingest.take_frames()
        self._jobs.start()
        self._adaptation.start()
        if self._grpc is not None:
            self._grpc.start()
        self._started = True
        return self._endpoints

    def stop_stream(self) -> None:
        """Drain and stop the ingest thread: no frame in, no forecast out after this (the rest runs on). Blocks."""
        self._ingest.stop(timeout_s=self._settings.shutdown_timeout_s)

    def stop(self) -> None:
        """Stop every part, the reverse of start, each within the shutdown timeout. Blocks."""
        self._started = False
        timeout_s = self._settings.shutdown_timeout_s
        if self._grpc is not None:
            self._grpc.stop(timeout_s=timeout_s)
        self._adaptation.stop(timeout_s=timeout_s)
        self._jobs.stop(timeout_s=timeout_s)
        self.stop_stream()
        self._hub.bind_loop(None)
        if self._recorder is not None:
            for session in self._sessions.snapshot().values():
                if session.recording is not None:
                    self._recorder.close(session.recording)
            self._recorder.stop(timeout_s=timeout_s)
        self._bundles.stop(timeout_s=timeout_s)
        logger.info("stopped")

    def between_frames(self, command: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run `command` on the ingest thread between two frames; the Future holds its result. Any thread.

        The thread takes no frame while `command` runs: what holds it holds the stream.
        """
        return self._ingest.submit(command)

    # --- sessions ---------------------------------------------------------------------------------

    def open_session(
        self,
        name: str,
        calibration: str | None = None,
        *,
        units: int | None = None,
        unit_ids: list[str] | None = None,
        adapt: AutoAdapt | None = None,
        fresh: bool = False,
    ) -> StreamSession:
        """Open stream `name`: with the active bundle's `calibration` (default: the bundle session of the
        same name), or, given `units` and/or `unit_ids`, as a new animal the bundle has never seen.

        A new animal forecasts zero-shot from its first full context and is fine-tuned live (on
        request, or by itself with `adapt`); one adapted by an earlier run of this server reopens with
        its last good calibration's embeddings unless `fresh`. Either is normalised over its own frames.

        Blocks (binds and warms up an engine here, then waits for the ingest thread to add the session
        between two frames): call from a worker thread, never the event loop. The session it returns is
        the stream's identity for a conditional `swap_session`; read it through `status_of`.
        """
        check_session_name(name)
        self._check_can_open(name)
        new_animal = units is not None or unit_ids is not None
        if new_animal:
            model = self._new_animal_model(name, units=units, unit_ids=unit_ids, fresh=fresh)
        elif adapt is not None:
            raise InvalidSessionOptions("adapt is for new animals: give units (or unit_ids) to open one")
        else:
            model = SessionModel.bind(self._bundles.active, calibration or name)
        recording = None
        if self._recorder is not None:
            recording = self._recorder.open(
                name,
                num_units=model.num_units,
                meta={
                    "calibration": model.calibration.name,
                    "calibration_hash": model.calibration_hash,
                    "zero_shot": model.zero_shot,
                    "model_version": model.version,
                    "bundle": str(model.loaded.bundle.path),
                    "unit_ids": list(model.calibration.unit_ids),
                },
            )
        session = StreamSession(
            name=name,
            model=model,
            recording=recording,
            accuracy=self._settings.accuracy_config(),
            own_normalisation=new_animal,
        )

        def add() -> None:
            self._check_can_open(name)
            self._sessions.add(session)

        try:
            self._on_ingest_thread(add)
        except BaseException:
            if self._recorder is not None and recording is not None:
                self._recorder.close(recording)  # an empty recording folder stays behind, with its meta.json
            raise
        if new_animal:
            self._adaptation.track(session, adapt)
        logger.info(
            "opened session %r (calibration %r%s, %d units)",
            name, model.calibration.name, ", zero-shot" if model.zero_shot else "", model.num_units,
        )  # fmt: skip
        return session

    def _new_animal_model(
        self, name: str, *, units: int | None, unit_ids: list[str] | None, fresh: bool
    ) -> SessionModel:
        if unit_ids is not None and units is not None and len(unit_ids) != units:
            raise InvalidSessionOptions(f"units={units} but {len(unit_ids)} unit_ids; give one id per unit")
        count = units if units is not None else len(unit_ids or ())
        if not 1 <= count <= self._settings.max_units:
            raise InvalidSessionOptions(f"units={count}; a stream has 1..max_units ({self._settings.max_units}) units")
        ids = tuple(unit_ids) if unit_ids is not None else tuple(str(i) for i in range(count))
        remembered = None if fresh else self._adaptation.remembered(name)
        if remembered is not None and remembered.units == count:
            loaded = self._bundles.load(Path(remembered.bundle))
            logger.info("stream %r reopens with its last good calibration %r", name, remembered.calibration)
            return SessionModel.bind(loaded, remembered.calibration)
        return SessionModel.new_animal(self._bundles.active, name=f"{name}.zero-shot", unit_ids=ids)

    def close_session(self, name: str) -> None:
        """Close stream `name` between two frames, its recording completed and its subscriptions ended.

        Blocks until the ingest thread has run the close: call from a worker thread, never the event loop.
        """

        def remove() -> StreamSession:
            session = self._sessions.remove(name)
            self._adaptation.forget(name)
            self._ingest.forget(name)
            self._latest.discard(name)
            self._metrics.forget_session(name)  # here, on the ingest thread: no frame of it can count again after
            return session

        session = self._on_ingest_thread(remove)
        if self._recorder is not None and session.recording is not None:
            self._recorder.close(session.recording)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._hub.close_session, name)
        logger.info("closed session %r after %d frames", name, session.frames_accepted)

    def swap_session(
        self,
        name: str,
        *,
        calibration: str | None,
        bundle_id: str | None,
        expect_session: StreamSession | None = None,
        expect_calibration: str | None = None,
    ) -> StreamSession:
        """Give one session other embeddings (a fine-tuned calibration) and/or another loaded bundle's network.

        `expect_session` and `expect_calibration` make the swap conditional, checked between the same
        two frames it happens between: the stream must still be that session object (not closed, nor
        reopened under its name) and still forecast with that calibration (no other swap came first).
        Blocks like `open_session`.
        """
        session = self._sessions.get(name)
        loaded = self._bundles.get(bundle_id) if bundle_id else self._bundles.active
        model = SessionModel.bind(loaded, calibration or session.model.calibration.name)
        model.check_replaces(session.model)

        def swap() -> None:
            current = self._sessions.get(name)
            if expect_session is not None and current is not expect_session:
                raise UnknownSession(f"stream {name!r} was closed (or reopened) before the swap")
            if expect_calibration is not None and current.model.calibration.name != expect_calibration:
                raise IncompatibleSwap(
                    f"stream {name!r} now forecasts with {current.model.calibration.name!r}, not "
                    f"{expect_calibration!r} as when the fine-tune started"
                )
            current.rebind(model)

        self._on_ingest_thread(swap)
        logger.info("session %r now forecasts with %s/%s", name, model.version, model.calibration.name)
        return session

    def status_of(self, session: StreamSession) -> SessionStatus:
        """A copy of `session`'s state and counters. Any thread: the ingest thread writes each field whole."""
        adaptation = self._adaptation.status(session.name)
        return session.status(time.monotonic(), self._settings.stall_after_s, adaptation)

    def session_status(self, name: str) -> SessionStatus:
        """`status_of` the open stream `name`; UnknownSession if it is not open. Any thread."""
        return self.status_of(self._sessions.get(name))

    def session_statuses(self) -> list[SessionStatus]:
        """`status_of` every open stream, in the order they were opened. Any thread."""
        return [self.status_of(session) for session in self._sessions.snapshot().values()]

    def is_open(self, name: str) -> bool:
        """Whether a stream of that name is open now. Any thread."""
        return name in self._sessions.snapshot()

    def interval_levels(self, name: str) -> tuple[float, ...]:
        """The levels stream `name`'s forecasts can carry bounds for (none with live accuracy off); UnknownSession
        if it is not open. Any thread, and cheaper than `session_status`: REST asks on every forecast read."""
        return self._sessions.get(name).interval_levels

    def calibration(self, name: str) -> SessionCalibration:
        """The calibration stream `name` forecasts with now (immutable; a swap replaces it). Any thread."""
        return self._sessions.get(name).model.calibration

    def start_adaptation_round(self, name: str, options: FinetuneOptions | None) -> Job:
        """Queue a fine-tune of stream `name` on what it recorded so far; the swap follows when it ends.

        Raises UnknownSession, AdaptationBusy, NotEnoughFrames. Writes a calibration snapshot and the job
        table: call from a worker thread.
        """
        return self._adaptation.start_round(name, options)

    # --- bundles ----------------------------------------------------------------------------------

    @property
    def active_bundle(self) -> BundleStatus:
        """The bundle new sessions use. Any thread; NotRunning while the server is stopped."""
        active = self._bundles.active
        return active.status(active_id=active.id)

    def bundle_statuses(self) -> list[BundleStatus]:
        """Every loaded bundle, oldest first. Any thread."""
        active_id = self._bundles.active.id
        return [loaded.status(active_id=active_id) for loaded in self._bundles.all()]

    def load_bundle(self, path: Path) -> BundleStatus:
        """Load and verify the bundle at `path` and build its engine (BundleError if it is bad); sessions keep
        theirs until it is activated. Blocks while it loads: call from a worker thread."""
        loaded = self._bundles.load(path)
        return loaded.status(active_id=self._bundles.active.id)

    def activate_bundle(self, bundle_id: str) -> BundleStatus:
        """Every open session (and every session opened later) switches to this bundle between two frames.

        Blocks like `open_session`.
        """
        loaded = self._bundles.get(bundle_id)
        sessions = self._sessions.snapshot()
        models = {name: SessionModel.bind(loaded, s.model.calibration.name) for name, s in sessions.items()}
        for name, model in models.items():
            model.check_replaces(sessions[name].model)

        def swap() -> None:
            current = self._sessions.snapshot()
            if current.keys() != models.keys():
                raise IncompatibleSwap("sessions were opened or closed during the swap; ask again")
            for name, session in current.items():
                session.rebind(models[name])
            self._bundles.set_active(bundle_id)

        self._on_ingest_thread(swap)
        logger.info("bundle %s (network %s) is active for %d open sessions", bundle_id, loaded.version, len(models))
        return loaded.status(active_id=self._bundles.active.id)

    # --- forecasts, accuracy and context ---------------------------------------------------------

    def latest_forecast(self, name: str) -> PublishedForecast | None:
        """Stream `name`'s newest forecast; None before its first one (or once it is closed). Any thread: the
        ingest thread replaces it whole, and a forecast is read-only once published."""
        return self._latest.get(name)

    def accuracy_readout(self, name: str) -> UnitAccuracy | None:
        """A copy of stream `name`'s live per-unit accuracy; None when live accuracy is off. Any thread: a copy
        taken between two of the ingest thread's updates or during one (plain floats either way)."""
        return self._sessions.get(name).accuracy_readout()

    def crossing_probability(
        self, name: str, forecast: PublishedForecast, *, unit: int, value: float, above: bool
    ) -> tuple[float | None, int]:
        """P(unit `unit` of `forecast` goes above / below `value` within P frames), from the stream's recent
        residual paths, and how many paths; None before any forecast of its model was scored at every
        step. Any thread, as `accuracy_readout`."""
        session = self._sessions.get(name)
        probability = session.crossing_probability(forecast.values, unit=unit, value=value, above=above)
        return probability, session.accuracy_paths

    def read_context(self, name: str, *, units: Sequence[int] | None, after: int | None) -> ContextView:
        """Stream `name`'s frames of `units` (None: all) in its context whose index is above `after` (None:
        all), in raw units. Copied by the ingest thread between two frames, so it blocks for one
        frame's work at most: call from a worker thread, never the event loop."""
        session = self._sessions.get(name)
        indices = np.arange(session.num_units) if units is None else np.asarray(units, dtype=np.int64)

        def copy() -> tuple[np.ndarray, int | None, SessionModel]:
            if self._sessions.snapshot().get(name) is not session:
                raise UnknownSession(f"session {name!r} was closed while its context was read")
            return session.recent_context(None if units is None else indices, after=after)

        normalised, last_index, model = self._on_ingest_thread(copy)  # (k, n)
        return raw_context(name, normalised, last_index=last_index, model=model, indices=indices)

    def stateless_forecast(self, calibration: str, frames: np.ndarray) -> StatelessForecast:
        """Forecast from a posted (C, N) raw context with the active bundle's `calibration`; nothing is stored,
        no session is touched. Runs the network on the calling thread (onnxruntime is safe from several):
        call from a worker thread, never the event loop or the ingest thread."""
        loaded = self._bundles.active
        expected = (loaded.bundle.context_frames, loaded.bundle.session(calibration).num_units)
        if frames.shape != expected:
            raise BadShape(f"frames have shape {frames.shape}; {calibration!r} needs (C, N) = {expected}")
        if not np.isfinite(frames).all():
            raise NonFiniteValues("frames hold values beyond float32's range (+-3.4e38); send finite float32 values")
        values = loaded.engine.forecast_with(loaded.bundle.session(calibration), frames)
        return StatelessForecast(model_version=loaded.version, values=values)

    # --- the Open Inference Protocol's model -------------------------------------------------------

    def model_metadata(self, name: str, version: str = "") -> protocol.ModelMetadata:
        """Model `name`'s inputs, outputs and versions; UnknownModel for a name or version it does not serve.
        Any thread (reads the bundle registry under its lock)."""
        return protocol.model_metadata(self._bundles, name, version)

    def model_ready(self, name: str, version: str = "") -> bool:
        """Whether model `name` (at `version`) can infer now. Any thread."""
        return protocol.model_ready(self._bundles, name, version)

    def model_repository(self) -> list[protocol.IndexEntry]:
        """Every loaded network version of the one model. Any thread."""
        return protocol.repository_index(self._bundles)

    def load_model(self, name: str) -> None:
        """A load of the served model: nothing to do while it runs (bundles load through `load_bundle`). Any thread."""
        protocol.load(self._bundles, name)

    def unload_model(self, name: str) -> None:
        """Always refused (InferenceRequestError): the server forecasts with the model until it stops. Any thread."""
        protocol.unload(name)

    def infer(self, name: str, version: str, inputs: Sequence[protocol.InputTensor]) -> protocol.InferResult:
        """The raw network run once on normalised inputs: (N, C) context, (N, D) embeddings -> (N, P).

        Runs the network on the calling thread (onnxruntime is safe from several): call from a worker
        thread (REST's pool, gRPC's), never the event loop or the ingest thread.
        """
        return protocol.infer(self._bundles, name, version, inputs)

    # --- WebSocket subscriptions ------------------------------------------------------------------

    def take_subscription_slot(self) -> None:
        """Count one more forecast WebSocket, or SubscriptionLimitReached at `max_websocket_subscribers`.

        On the event loop only, before its first await, so that two handshakes cannot both take the last
        slot; `release_subscription_slot` gives it back when the WebSocket ends.
        """
        self._subscription_slots.take()

    def release_subscription_slot(self) -> None:
        """On the event loop only."""
        self._subscription_slots.release()

    def subscribe(self, name: str) -> Subscriber:
        """A subscription to stream `name`'s forecasts, holding its latest one if any. On the event loop only."""
        subscriber = self._hub.subscribe(name)
        latest = self._latest.get(name)
        if latest is not None:
            subscriber.offer(latest)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """On the event loop only."""
        self._hub.unsubscribe(subscriber)

    def count_websocket_sent(self) -> None:
        """One forecast sent to a WebSocket subscriber. Any thread."""
        self._metrics.websocket_sent.inc()

    def close_subscriptions(self) -> None:
        """End every subscription; each sends what it holds, then ends. On the event loop only."""
        self._hub.close_all()

    async def close_subscriptions_and_wait(self) -> None:
        """`close_subscriptions`, then wait (at most the shutdown timeout) until each sent what it held. On the
        event loop only, after the stream has drained (`stop_stream`), so that the last forecasts are sent."""
        await self._hub.close_all_and_wait(self._settings.shutdown_timeout_s)

    # --- metrics ----------------------------------------------------------------------------------

    def render_metrics(self) -> bytes:
        """Every metric in Prometheus text format, with the session states counted now. Any thread."""
        now = time.monotonic()
        sessions = self._sessions.snapshot().values()
        states = Counter(session.state(now, self._settings.stall_after_s) for session in sessions)
        for state in SessionState:
            self._metrics.sessions.labels(state.value).set(states[state])
        return self._metrics.render()

    def metric_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value as /metrics shows it (e.g. `poco_rt_frames_received_total`); None if it has none.
        Any thread."""
        return self._metrics.registry.get_sample_value(name, labels)

    # --- jobs: the job table is SQLite on the disk ------------------------------------------------

    def submit_job(self, kind: JobKind, params: dict[str, Any]) -> Job:
        """Queue an offline job; JobQueueFull beyond `max_queued_jobs`. A worker thread: it writes the table."""
        return self._jobs.submit(kind, params)

    def job(self, job_id: str) -> Job:
        """One job as the table holds it now; UnknownJob for an id it lacks. A worker thread."""
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job in the table. A worker thread."""
        return self._jobs.list()

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued or running job (its worker is stopped); JobStateConflict once it ended. A worker thread."""
        return self._jobs.cancel(job_id)

    def retry_job(self, job_id: str) -> Job:
        """Run a failed, cancelled or interrupted job again (JobStateConflict otherwise). A worker thread."""
        return self._jobs.retry(job_id)

    def job_result_path(self, job: Job, file_name: str) -> Path:
        """A job's result file; UnknownJob for a file its kind does not leave. Any thread (no disk access)."""
        return self._jobs.result_path(job, file_name)

    def check_recorded(self, session: str) -> None:
        """UnknownSession unless the server holds a recording of `session` (for a job that trains on it).
        A worker thread: it lists the recordings folder."""
        newest_recording(self._settings.recordings_dir, session)

    # --- frames outside the stream ---------------------------------------------------------------

    def ingest_frame(self, name: str, *, frame_index: int, acquisition_time_ns: int, values: np.ndarray) -> FrameResult:
        """A frame posted over HTTP: encoded as on the wire and taken by the same pipeline as ZeroMQ frames.

        Blocks until the ingest thread has taken it: call from a worker thread, never the event loop.
        """
        try:
            message = encode_frame(
                values,
                session=name,
                frame_index=frame_index,
                acquisition_time_ns=acquisition_time_ns,
                limits=self._settings.wire_limits(),
            )
        except FrameError as error:  # what a receiver would reject too: counted the same way
            self._metrics.frames_received.inc()
            self._metrics.frames_rejected.labels(error.reason.value).inc()
            return FrameResult(FrameStatus.REJECTED, reject_reason=error.reason, detail=str(error))
        parts = [bytes(part) for part in message.parts]
        return self._ingest.ingest_now(parts, received_ns=time.time_ns()).result(self._settings.shutdown_timeout_s)

    def _check_can_open(self, name: str) -> None:
        sessions = self._sessions.snapshot()
        if name in sessions:
            raise SessionExists(f"session {name!r} is already open; close it first or pick another name")
        if len(sessions) >= self._settings.max_sessions:
            raise SessionLimitReached(
                f"{len(sessions)} sessions are open, the limit (max_sessions) is {self._settings.max_sessions}"
            )

    def _on_ingest_thread(self, command: Callable[[], T]) -> T:
        return self._ingest.submit(command).result(self._settings.shutdown_timeout_s)


def grpc_endpoint(runtime: ServerRuntime) -> GrpcEndpoint:
    """The gRPC endpoint `grpc_port` asks for; MissingExtra (before any port is bound) without the grpc extra."""
    try:
        from poco_rt.server.grpc_endpoint import GrpcEndpoint
    except ImportError as error:
        raise MissingExtra(
            f"grpc_port is set but gRPC is not installed ({error.name} is missing): pip install 'poco-rt[grpc]'"
        ) from None
    settings = runtime.settings
    return GrpcEndpoint(
        runtime,
        host=settings.host,
        port=settings.grpc_port,
        auth_token=settings.auth_token,
        max_message_bytes=settings.max_body_bytes,
    )
