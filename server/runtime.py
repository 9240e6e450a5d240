"""The server's parts, wired from one ServerSettings, and the control operations REST calls.

    bundles (engines) ─┐
    recorder (thread) ─┼─ ingest thread: sockets, pipeline, every session change
    sessions, latest ──┤
    hub (event loop) ──┘
    jobs (runner thread, worker processes): offline PINning and fine-tune jobs, apart from all of the above
    adaptation (thread): new animals' fine-tune rounds, swapped in through `swap_session`
    grpc (its own threads, optional): the Open Inference Protocol over gRPC, on the bundles alone

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
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from poco_rt.bundle import check_session_name
from poco_rt.errors import (
    FrameError,
    IncompatibleSwap,
    InvalidSessionOptions,
    MissingExtra,
    SessionExists,
    SessionLimitReached,
    UnknownSession,
)
from poco_rt.resources import default_bundle_path
from poco_rt.server.adaptation import AutoAdapt, StreamAdaptation
from poco_rt.server.bundles import BundleRegistry, LoadedBundle
from poco_rt.server.forecasts import LatestForecasts
from poco_rt.server.hub import ForecastHub
from poco_rt.server.ingest import IngestThread, StreamEndpoints
from poco_rt.server.jobs.runner import JobRunner
from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.pipeline import FrameResult, FrameStatus
from poco_rt.server.recorder import Recorder
from poco_rt.server.session import SessionModel, SessionTable, StreamSession
from poco_rt.server.settings import ServerSettings
from poco_rt.wire import encode_frame

if TYPE_CHECKING:
    from poco_rt.server.grpc_endpoint import GrpcEndpoint

logger = logging.getLogger(__name__)
T = TypeVar("T")


class ServerRuntime:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.bundles = BundleRegistry(
            initial_bundle=settings.bundle or default_bundle_path(),
            engine_threads=settings.engine_threads,
            engine_device=settings.engine_device,
            engine_int8=settings.engine_int8,
        )
        self.sessions = SessionTable()
        self.latest = LatestForecasts()
        self.hub = ForecastHub(self.metrics)
        self.recorder = (
            Recorder(
                root=settings.recordings_dir,
                chunk_frames=settings.recorder_chunk_frames,
                queue_frames=settings.recorder_queue_frames,
                metrics=self.metrics,
            )
            if settings.record_frames
            else None
        )
        self.ingest = IngestThread(
            settings=settings,
            sessions=self.sessions,
            recorder=self.recorder,
            board=self.latest,
            hub=self.hub,
            metrics=self.metrics,
        )
        self.jobs = JobRunner(settings)
        self.adaptation = StreamAdaptation(self)
        self.grpc = grpc_endpoint(self) if settings.grpc_port is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.endpoints: StreamEndpoints | None = None
        self.started = False  # start() ran to its end; stop() clears it

    @property
    def ready(self) -> bool:
        recorder_ok = self.recorder is None or self.recorder.started
        grpc_ok = self.grpc is None or self.grpc.started
        return (
            self.bundles.started
            and recorder_ok
            and self.ingest.started
            and self.jobs.started
            and self.adaptation.started
            and grpc_ok
        )

    def start(self, loop: asyncio.AbstractEventLoop | None) -> StreamEndpoints:
        """Load the bundle, start the recorder and the ingest thread, open the configured sessions."""
        self._loop = loop
        self.hub.bind_loop(loop)
        self.bundles.start()
        if self.recorder is not None:
            self.recorder.start()
        self.endpoints = self.ingest.start()
        for name, calibration in self.settings.open_sessions.items():
            self.open_session(name, calibration)
        auto = AutoAdapt() if self.settings.auto_adapt else None
        for name, units in self.settings.new_animals.items():
            self.open_session(name, units=units, adapt=auto)
        self.jobs.start()
        self.adaptation.start()
        if self.grpc is not None:
            self.grpc.start()
        self.started = True
        return self.endpoints

    def stop_stream(self) -> None:
        """Drain and stop the ingest thread: no frame in, no forecast out after this (the rest runs on)."""
        self.ingest.stop(timeout_s=self.settings.shutdown_timeout_s)

    def stop(self) -> None:
        self.started = False
        timeout_s = self.settings.shutdown_timeout_s
        if self.grpc is not None:
            self.grpc.stop(timeout_s=timeout_s)
        self.adaptation.stop(timeout_s=timeout_s)
        self.jobs.stop(timeout_s=timeout_s)
        self.stop_stream()
        self.hub.bind_loop(None)
        if self.recorder is not None:
            for session in self.sessions.snapshot().values():
                if session.recording is not None:
                    self.recorder.close(session.recording)
            self.recorder.stop(timeout_s=timeout_s)
        self.bundles.stop(timeout_s=timeout_s)
        logger.info("stopped")

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
        its last good calibration unless `fresh`.
        """
        check_session_name(name)
        self._check_can_open(name)
        new_animal = units is not None or unit_ids is not None
        if new_animal:
            model = self._new_animal_model(name, units=units, unit_ids=unit_ids, fresh=fresh)
        elif adapt is not None:
            raise InvalidSessionOptions("adapt is for new animals: give units (or unit_ids) to open one")
        else:
            model = SessionModel.bind(self.bundles.active, calibration or name)
        recording = None
        if self.recorder is not None:
            recording = self.recorder.open(
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
        session = StreamSession(name=name, model=model, recording=recording, accuracy=self.settings.accuracy_config())

        def add() -> None:
            self._check_can_open(name)
            self.sessions.add(session)

        try:
            self._on_ingest_thread(add)
        except BaseException:
            if self.recorder is not None and recording is not None:
                self.recorder.close(recording)  # an empty recording folder stays behind, with its meta.json
            raise
        if new_animal:
            self.adaptation.track(session, adapt)
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
        if not 1 <= count <= self.settings.max_units:
            raise InvalidSessionOptions(f"units={count}; a stream has 1..max_units ({self.settings.max_units}) units")
        ids = tuple(unit_ids) if unit_ids is not None else tuple(str(i) for i in range(count))
        remembered = None if fresh else self.adaptation.remembered(name)
        if remembered is not None and remembered.units == count:
            loaded = self.bundles.load(Path(remembered.bundle))
            logger.info("stream %r reopens with its last good calibration %r", name, remembered.calibration)
            return SessionModel.bind(loaded, remembered.calibration)
        return SessionModel.new_animal(self.bundles.active, name=f"{name}.zero-shot", unit_ids=ids)

    def close_session(self, name: str) -> None:
        def remove() -> StreamSession:
            session = self.sessions.remove(name)
            self.adaptation.forget(name)
            self.ingest.forget(name)
            self.latest.discard(name)
            self.metrics.forget_session(name)  # here, on the ingest thread: no frame of it can count again after
            return session

        session = self._on_ingest_thread(remove)
        if self.recorder is not None and session.recording is not None:
            self.recorder.close(session.recording)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.hub.close_session, name)
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
        """
        session = self.sessions.get(name)
        loaded = self.bundles.get(bundle_id) if bundle_id else self.bundles.active
        model = SessionModel.bind(loaded, calibration or session.model.calibration.name)
        model.check_replaces(session.model)

        def swap() -> None:
            current = self.sessions.get(name)
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

    # --- bundles ----------------------------------------------------------------------------------

    def activate_bundle(self, bundle_id: str) -> LoadedBundle:
        """Every open session (and every session opened later) switches to this bundle between two frames."""
        loaded = self.bundles.get(bundle_id)
        sessions = self.sessions.snapshot()
        models = {name: SessionModel.bind(loaded, s.model.calibration.name) for name, s in sessions.items()}
        for name, model in models.items():
            model.check_replaces(sessions[name].model)

        def swap() -> None:
            current = self.sessions.snapshot()
            if current.keys() != models.keys():
                raise IncompatibleSwap("sessions were opened or closed during the swap; ask again")
            for name, session in current.items():
                session.rebind(models[name])
            self.bundles.set_active(bundle_id)

        self._on_ingest_thread(swap)
        logger.info("bundle %s (network %s) is active for %d open sessions", bundle_id, loaded.version, len(models))
        return loaded

    # --- frames and forecasts outside the stream -------------------------------------------------

    def ingest_frame(self, name: str, *, frame_index: int, acquisition_time_ns: int, values: np.ndarray) -> FrameResult:
        """A frame posted over HTTP: encoded as on the wire and taken by the same pipeline as ZeroMQ frames."""
        try:
            message = encode_frame(
                values,
                session=name,
                frame_index=frame_index,
                acquisition_time_ns=acquisition_time_ns,
                limits=self.settings.wire_limits(),
            )
        except FrameError as error:  # what a receiver would reject too: counted the same way
            self.metrics.frames_received.inc()
            self.metrics.frames_rejected.labels(error.reason.value).inc()
            return FrameResult(FrameStatus.REJECTED, error.reason.value, str(error))
        parts = [bytes(part) for part in message.parts]
        return self.ingest.ingest_now(parts, received_ns=time.time_ns()).result(self.settings.shutdown_timeout_s)

    def _check_can_open(self, name: str) -> None:
        sessions = self.sessions.snapshot()
        if name in sessions:
            raise SessionExists(f"session {name!r} is already open; close it first or pick another name")
        if len(sessions) >= self.settings.max_sessions:
            raise SessionLimitReached(
                f"{len(sessions)} sessions are open, the limit (max_sessions) is {self.settings.max_sessions}"
            )

    def _on_ingest_thread(self, command: Callable[[], T]) -> T:
        return self.ingest.submit(command).result(self.settings.shutdown_timeout_s)


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
