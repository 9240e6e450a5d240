"""The hot path, without sockets: decode -> validate -> order -> normalise -> context -> record, then infer -> publish.

Runs on the ingest thread only. `ingest` takes one frame message and never raises for anything a
sender can do wrong: a `FrameError` (poco_rt.errors; the wire's checks, a unit count that is not
the session's, NaN or inf) or an `UnknownSession` is counted under its reason, logged at most
once per interval per reason, and returned as a REJECTED result. Anything else is a bug and
surfaces. `publish_pending` then makes one forecast per session that took frames, from its
newest frame: in steady state that is one forecast per frame; after a hiccup it is one per
session for the whole backlog, so the server catches up instead of falling further behind
(the frames are all in the context and on disk; only their own forecasts are skipped, counted
in `poco_rt_forecasts_coalesced_total`). Only once the forecasts are out does each session keep
its forecast for scoring, each newest frame score the earlier forecasts it completes (live
accuracy) and each frame taken get counted in the metrics, so that this bookkeeping never delays
a forecast: before the send, live accuracy only gives the forecast its intervals.

Inference: the sessions with a forecast due in one call are grouped by loaded bundle, and each
group goes to its engine's `forecast_streams`, which runs it as one batched network call where that
pays (`Engine.worth_batching`: the bundle has model.batched.onnx, fp32, few enough units
together), else one call per session, and keeps the batches it builds. Each session writes its
own context into the engine's buffer and finishes its own forecast (raw units, live accuracy);
each forecast is published as soon as the call it waited for returns, equals its session's own
call to float rounding, and is tagged with its session's model version either way; its infer
stage is that call (a batch's whole call).

NaN policy: a frame holding any NaN or inf is rejected (`non_finite`). It does not advance its
session, so the next good frame sees a gap of one and the gap policy holds the last values.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from poco_rt.errors import FrameError, RejectReason, UnknownSession
from poco_rt.server.bundles import LoadedBundle
from poco_rt.server.engine import StreamInput
from poco_rt.server.metrics import UNKNOWN_SESSION_REASON, ServerMetrics, Stage
from poco_rt.server.policy import FrameOrder
from poco_rt.server.publisher import ForecastPublisher
from poco_rt.server.ratelog import RateLimitedLog
from poco_rt.server.recorder import Recorder
from poco_rt.server.session import SessionModel, SessionTable, StreamSession
from poco_rt.wire import (
    ForecastIntervals,
    FrameHeader,
    WireLimits,
    WirePart,
    decode_frame_header,
    decode_frame_into,
)

logger = logging.getLogger(__name__)


class FrameStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # in the context (and queued for the disk)
    DROPPED = "dropped"  # valid, but a duplicate or older than the last taken frame
    REJECTED = "rejected"  # invalid, or for no open session


@dataclasses.dataclass(frozen=True, slots=True)
class FrameResult:
    """What became of one frame message: its status, and the one typed cause that goes with it."""

    status: FrameStatus
    order: FrameOrder | None = None  # accepted or dropped: how it stood against the last frame taken
    reject_reason: RejectReason | None = None  # rejected by the wire's checks or the NaN policy
    unknown_session: bool = False  # rejected because it names no open session
    detail: str = ""  # why, in words, for a rejected frame

    @property
    def label(self) -> str:
        """The cause as one word: the order, or the reason it is counted under among rejected frames."""
        if self.order is not None:
            return self.order.value
        if self.reject_reason is not None:
            return self.reject_reason.value
        return UNKNOWN_SESSION_REASON


class _Taken(NamedTuple):
    """A frame taken into its session, to be counted in the metrics once the forecasts are out."""

    session: StreamSession
    order: FrameOrder
    missing: int
    header: FrameHeader
    received_ns: int
    taken_ns: int


@dataclasses.dataclass(slots=True)
class _Pending:
    session: StreamSession
    frame: FrameHeader
    received_ns: int


class FramePipeline:
    def __init__(
        self,
        *,
        sessions: SessionTable,
        recorder: Recorder | None,
        publisher: ForecastPublisher,
        metrics: ServerMetrics,
        limits: WireLimits,
        max_gap_fill_frames: int,
        resync_after_frames: int,
        reject_log_interval_s: float,
    ) -> None:
        self._sessions = sessions
        self._recorder = recorder
        self._publisher = publisher
        self._metrics = metrics
        self._limits = limits
        self._max_gap_fill_frames = max_gap_fill_frames
        self._resync_after_frames = resync_after_frames
        self._log = RateLimitedLog(logger, interval_s=reject_log_interval_s)
        self._pending: dict[str, _Pending] = {}
        self._uncounted: list[_Taken] = []  # frames taken since the last publish_pending, counted after it

    def ingest(self, parts: Sequence[WirePart], received_ns: int) -> FrameResult:
        self._metrics.frames_received.inc()
        session: StreamSession | None = None
        try:
            header = decode_frame_header(parts, limits=self._limits)
            session = self._sessions.get(header.session)
            return self._take(session, header, parts, received_ns)
        except FrameError as error:
            if session is not None:
                session.reject()
            return self._reject(FrameResult(FrameStatus.REJECTED, reject_reason=error.reason, detail=str(error)))
        except UnknownSession as error:
            return self._reject(FrameResult(FrameStatus.REJECTED, unknown_session=True, detail=str(error)))

    def publish_pending(self) -> None:
        """One forecast per session that took a frame since the last call, from its newest frame."""
        pending, self._pending = self._pending, {}
        current = self._sessions.snapshot()
        groups: dict[LoadedBundle, list[_Pending]] = {}
        for item in pending.values():
            session = item.session
            if session.pending_forecast and current.get(session.name) is session:  # else warming up, or closed
                groups.setdefault(session.model.loaded, []).append(item)
        for loaded, items in groups.items():
            self._publish_group(loaded, items)
        for item in pending.values():  # the forecasts are out: now the frames score the earlier ones
            item.session.finish_taken_frame()
            item.session.refresh_normalisation()
        self._count_uncounted()

    def _publish_group(self, loaded: LoadedBundle, items: list[_Pending]) -> None:
        """Forecast sessions that share a bundle through its engine, and publish each as soon as it is out."""
        models = [item.session.model for item in items]  # read once: a swap cannot change one mid-forecast
        streams = [
            StreamInput(
                key=(item.session.name, model.calibration_hash),  # new embeddings come with a new hash
                unit_embeddings=model.calibration.unit_embeddings,
                context_into=item.session.context_into,
            )
            for item, model in zip(items, models, strict=True)
        ]
        for result in loaded.engine.forecast_streams(streams):
            item = items[result.index]
            values, intervals = item.session.finish_forecast(result.values)
            self._publish(
                item, models[result.index], values, intervals, inferred_ns=result.inferred_ns, infer_s=result.infer_s
            )

    def _publish(
        self,
        item: _Pending,
        model: SessionModel,
        values: np.ndarray,
        intervals: ForecastIntervals | None,
        *,
        inferred_ns: int,
        infer_s: float,
    ) -> None:
        publish_started = time.perf_counter()
        forecast = self._publisher.publish(
            values,
            intervals=intervals,
            frame=item.frame,
            received_ns=item.received_ns,
            inferred_ns=inferred_ns,
            model_version=model.version,
            calibration_hash=model.calibration_hash,
        )
        published = time.perf_counter()
        self._metrics.stage_latency.labels(Stage.INFER).observe(infer_s)
        self._metrics.stage_latency.labels(Stage.PUBLISH).observe(published - publish_started)
        self._metrics.stage_latency.labels(Stage.SERVER).observe((forecast.header.sent_ns - item.received_ns) * 1e-9)
        self._metrics.forecasts.labels(item.session.name).inc()

    def forget(self, session_name: str) -> None:
        """Drop a closing session's unpublished frame."""
        self._pending.pop(session_name, None)

    def clear(self) -> None:
        """Drop unpublished frames (each taken frame still counted): the thread ended."""
        self._pending = {}
        self._count_uncounted()

    def _take(
        self, session: StreamSession, header: FrameHeader, parts: Sequence[WirePart], received_ns: int
    ) -> FrameResult:
        order, missing = session.classify(
            header, max_gap_fill_frames=self._max_gap_fill_frames, resync_after_frames=self._resync_after_frames
        )
        if not order.taken:
            session.drop(header, order, max_gap_fill_frames=self._max_gap_fill_frames)
            self._metrics.frames_dropped.labels(order).inc()
            self._log.warning(
                f"{order}", "session %r: frame %d dropped as %s (last taken: %d)",
                session.name, header.frame_index, order.value, session.last_frame_index,
            )  # fmt: skip
            return FrameResult(FrameStatus.DROPPED, order=order)
        target = session.decode_target()
        # UnitCountMismatch if N is not the session's
        decode_frame_into(parts, target, limits=self._limits, header=header)
        session.take(target, frame=header, received_ns=received_ns, order=order, missing=missing)
        if session.recording is not None and self._recorder is not None:
            self._recorder.commit(
                session.recording,
                frame_index=header.frame_index,
                acquisition_time_ns=header.acquisition_time_ns,
                received_ns=received_ns,
            )
        self._uncounted.append(_Taken(session, order, missing, header, received_ns, time.time_ns()))
        if session.pending_forecast:
            if session.name in self._pending:
                self._metrics.forecasts_coalesced.inc()
            self._pending[session.name] = _Pending(session, header, received_ns)
        return FrameResult(FrameStatus.ACCEPTED, order=order)

    def _count_uncounted(self) -> None:
        uncounted, self._uncounted = self._uncounted, []
        for taken in uncounted:
            self._count_taken(taken)

    def _count_taken(self, taken: _Taken) -> None:
        session, order, missing, header = taken.session, taken.order, taken.missing, taken.header
        metrics = self._metrics
        metrics.frames_accepted.labels(session.name).inc()
        if order is FrameOrder.GAP_FILLED:
            metrics.gap_frames_filled.labels(session.name).inc(missing)
        elif order is FrameOrder.GAP_RESET:
            metrics.session_resets.labels(session.name).inc()
            self._log.warning(
                f"reset:{session.name}", "session %r: %d frames missing before frame %d; warming up again",
                session.name, missing, header.frame_index,
            )  # fmt: skip
        elif order is FrameOrder.RESTART:
            metrics.session_resets.labels(session.name).inc()
            self._log.warning(
                f"restart:{session.name}", "session %r: frame %d is older but acquired later than the last one "
                "(the acquisition restarted its count); warming up again", session.name, header.frame_index,
            )  # fmt: skip
        elif order is FrameOrder.RESYNC:
            metrics.session_resets.labels(session.name).inc()
            self._log.warning(
                f"resync:{session.name}", "session %r: %d frames in a row up to frame %d were far behind the last "
                "taken one; resynced to them, warming up again", session.name, self._resync_after_frames,
                header.frame_index,
            )  # fmt: skip
        metrics.frame_age.observe(max(0, taken.received_ns - header.acquisition_time_ns) * 1e-9)
        metrics.stage_latency.labels(Stage.DECODE).observe((taken.taken_ns - taken.received_ns) * 1e-9)

    def _reject(self, result: FrameResult) -> FrameResult:
        reason = result.label
        self._metrics.frames_rejected.labels(reason).inc()
        self._log.warning(reason, "frame rejected (%s): %s", reason, result.detail)
        return result
