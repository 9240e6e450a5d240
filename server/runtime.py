"""The server's parts, wired from one ServerSettings, and the control operations REST calls.

    bundles (engines) ─┐
    recorder (thread) ─┼─ ingest thread: sockets, pipeline, every session change
    sessions, latest ──┤
    hub (event loop) ──┘
    jobs (runner thread, worker processes): offline PINning jobs, apart from all of the above

`start` and `stop` are what the app's lifespan calls: bundles, then the recorder, then the
ingest thread (which binds the sockets), then the job runner; stopping goes the other way, each
part within the shutdown timeout. The ingest thread drains as it stops (frames already sent are
taken, forecast and published), and the recorder then completes every session's last chunk.
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
from typing import TypeVar

import numpy as np

from poco_rt.bundle import check_session_name
from poco_rt.errors import FrameError, IncompatibleSwap, SessionExists, SessionLimitReached
from poco_rt.resources import default_bundle_path
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self.endpoints: StreamEndpoints | None = None
        self.started = False  # start() ran to its end; stop() clears it

    @property
    def ready(self) -> bool:
        recorder_ok = self.recorder is None or self.recorder.started
        return self.bundles.started and recorder_ok and self.ingest.started and self.jobs.started

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
        self.jobs.start()
        self.started = True
        return self.endpoints

    def stop_stream(self) -> None:
        """Drain and stop the ingest thread: no frame in, no forecast out after this (the rest runs on)."""
        self.ingest.stop(timeout_s=self.settings.shutdown_timeout_s)

    def stop(self) -> None:
        self.started = False
        timeout_s = self.settings.shutdown_timeout_s
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

    def open_session(self, name: str, calibration: str | None = None) -> StreamSession:
        """Open stream `name` with the active bundle's `calibration` (default: the bundle session of the same name)."""
        check_session_name(name)
        self._check_can_open(name)
        model = SessionModel.bind(self.bundles.active, calibration or name)
        recording = None
        if self.recorder is not None:
            recording = self.recorder.open(
                name,
                num_units=model.num_units,
                meta={
                    "calibration": model.calibration.name,
                    "calibration_hash": model.calibration_hash,
                    "model_version": model.version,
                    "bundle": str(model.loaded.bundle.path),
                    "unit_ids": list(model.calibration.unit_ids),
                },
            )
        session = StreamSession(name=name, model=model, recording=recording)

        def add() -> None:
            self._check_can_open(name)
            self.sessions.add(session)

        try:
            self._on_ingest_thread(add)
        except BaseException:
            if self.recorder is not None and recording is not None:
                self.recorder.close(recording)  # an empty recording folder stays behind, with its meta.json
            raise
        logger.info("opened session %r (calibration %r, %d units)", name, model.calibration.name, model.num_units)
        return session

    def close_session(self, name: str) -> None:
        def remove() -> StreamSession:
            session = self.sessions.remove(name)
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

    def swap_session(self, name: str, *, calibration: str | None, bundle_id: str | None) -> StreamSession:
        """Give one session other embeddings (a fine-tuned calibration) and/or another loaded bundle's network."""
        session = self.sessions.get(name)
        loaded = self.bundles.get(bundle_id) if bundle_id else self.bundles.active
        model = SessionModel.bind(loaded, calibration or session.model.calibration.name)
        model.check_replaces(session.model)
        self._on_ingest_thread(lambda: session.rebind(model))
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
