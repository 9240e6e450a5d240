"""Sessions: a stream name bound to one bundle session's calibration, with its context and counters.

Legend: N units, C context frames, P horizon, D embedding width.

A `StreamSession` is touched by the ingest thread only (frames, swaps, open and close all run
there), so its ring and counters need no lock. Its own methods make every write to its state
(counters, order state, stall flag), kept private behind read-only properties: the pipeline and
the ingest loop call those methods. REST reads it through `status`, a copy
(poco_rt.server.session_status); a field read from any other thread is a whole value under the
GIL. What makes a forecast (engine + calibration) is one immutable `SessionModel` that a swap replaces as a whole
between two frames, so no forecast mixes models.

A new animal's stream starts zero-shot: every unit gets the bundle's unseen-unit embedding, and the
normalisation is estimated from the stream's own frames, over the last STREAM_WINDOW_CONTEXTS
x C of them (poco_rt.normalisation.stream_estimate_span states the schedule). The estimate is
re-taken every C frames, from when the context first fills (before the first forecast) for as long
as the stream runs, each time as a new `SessionModel` swapped in between two frames like any other
swap. The stream keeps this normalisation of its own frames when a
fine-tuned calibration is swapped in (only the embeddings change), and the estimate goes on: a
fine-tune round runs on the frames recorded when it was queued, and on a drifting recording a
normalisation fitted to those frames alone forecasts the later ones worse than a recent estimate.
For the same reason a new animal reopened with its last good calibration (after a restart) takes
that calibration's embeddings only and normalises over its own frames from its first full context.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import TYPE_CHECKING

import numpy as np

from poco_rt.bundle import SessionCalibration
from poco_rt.errors import IncompatibleSwap, NonFiniteValues, UnknownSession
from poco_rt.normalisation import STREAM_WINDOW_CONTEXTS, WindowedNormalisation
from poco_rt.server.bundles import LoadedBundle
from poco_rt.server.live_accuracy import AccuracyConfig, LiveAccuracy, UnitAccuracy
from poco_rt.server.policy import FrameOrder, StrayRun, classify_frame, stray_run_after
from poco_rt.server.recorder import SessionRecording
from poco_rt.server.ring import ContextRing
from poco_rt.server.session_status import SessionStatus
from poco_rt.wire import ForecastIntervals, Frame, FrameHeader, require_finite

if TYPE_CHECKING:
    from poco_rt.server.adaptation import AdaptationStatus


class SessionState(enum.StrEnum):
    WARMING_UP = "warming_up"  # fewer than C frames since it opened or last reset
    STREAMING = "streaming"  # forecasting on every frame
    STALLED = "stalled"  # no frame for stall_after_s; the next one is judged by the gap policy


@dataclasses.dataclass(frozen=True, eq=False)
class SessionModel:
    """One bundle's engine with one of its calibrations: everything a session's forecast depends on."""

    loaded: LoadedBundle
    calibration: SessionCalibration
    calibration_hash: str  # short sha256: tells calibrations apart when the network is the same
    zero_shot: bool  # a new animal's calibration, not (yet) a file of any bundle
    mean_column: np.ndarray  # (N, 1) float32, to map (N, P) forecasts back to raw units
    std_column: np.ndarray  # (N, 1) float32

    @classmethod
    def bind(cls, loaded: LoadedBundle, calibration_name: str) -> SessionModel:
        """Bind and warm up (off the ingest thread); raises UnknownSession if the bundle lacks the calibration."""
        calibration = loaded.bundle.session(calibration_name)
        loaded.engine.warm_up(calibration.unit_embeddings)
        return cls.of(loaded, calibration, calibration_hash=loaded.bundle.calibration_hash(calibration_name))

    @classmethod
    def new_animal(cls, loaded: LoadedBundle, *, name: str, unit_ids: tuple[str, ...]) -> SessionModel:
        """Zero-shot for units the bundle has never seen: the unseen-unit embedding for each, and the
        identity normalisation until the stream's own frames give an estimate. Warmed up here."""
        units = len(unit_ids)
        embeddings = np.tile(loaded.bundle.unseen_unit_embedding(), (units, 1))  # (D,) -> (N, D)
        calibration = SessionCalibration(
            name=name,
            unit_ids=unit_ids,
            unit_embeddings=embeddings,
            mean=np.zeros(units, dtype=np.float32),
            std=np.ones(units, dtype=np.float32),
        )
        loaded.engine.warm_up(embeddings)
        return cls.of(loaded, calibration, calibration_hash=calibration.content_hash(), zero_shot=True)

    @classmethod
    def of(
        cls, loaded: LoadedBundle, calibration: SessionCalibration, *, calibration_hash: str, zero_shot: bool = False
    ) -> SessionModel:
        return cls(
            loaded=loaded,
            calibration=calibration,
            calibration_hash=calibration_hash,
            zero_shot=zero_shot,
            mean_column=np.ascontiguousarray(calibration.mean[:, None]),
            std_column=np.ascontiguousarray(calibration.std[:, None]),
        )

    def renormalised(self, mean: np.ndarray, std: np.ndarray) -> SessionModel:
        """The same embeddings under another normalisation (no warm-up: same shapes)."""
        calibration = dataclasses.replace(self.calibration, mean=mean, std=std)
        return SessionModel.of(
            self.loaded, calibration, calibration_hash=calibration.content_hash(), zero_shot=self.zero_shot
        )

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def num_units(self) -> int:
        return self.calibration.num_units

    def check_replaces(self, old: SessionModel) -> None:
        """Raise IncompatibleSwap unless this model can take over `old`'s context as it stands."""
        old_bundle, new_bundle = old.loaded.bundle, self.loaded.bundle
        for field, before, after in (
            ("unit count", old.num_units, self.num_units),
            ("context frames", old_bundle.context_frames, new_bundle.context_frames),
            ("horizon", old_bundle.horizon, new_bundle.horizon),
        ):
            if before != after:
                raise IncompatibleSwap(
                    f"the swap changes the {field} from {before} to {after}; close the session and open it anew"
                )


class StreamSession:
    def __init__(
        self,
        *,
        name: str,
        model: SessionModel,
        recording: SessionRecording | None,
        accuracy: AccuracyConfig,
        own_normalisation: bool = False,
    ) -> None:
        """`own_normalisation`: a new animal's stream, normalised over its own recent frames whatever
        calibration forecasts (the module docstring); otherwise the calibration's normalisation."""
        bundle = model.loaded.bundle
        self.name = name
        self.model = model
        self.recording = recording
        window = STREAM_WINDOW_CONTEXTS * bundle.context_frames
        self.normalisation = WindowedNormalisation(model.num_units, window=window) if own_normalisation else None
        self._own_normalisation = own_normalisation
        self._normalisation_due = False  # an estimate waits for the forecast of the frame that completed it
        self.ring = ContextRing(context_frames=bundle.context_frames, num_units=model.num_units)
        # Scored against the frames as they arrive; reset whenever the model that forecasts changes. None: off.
        self.accuracy = (
            LiveAccuracy(std=model.calibration.std, horizon=bundle.horizon, config=accuracy)
            if accuracy.enabled
            else None
        )
        self._scratch = np.empty(model.num_units, dtype=np.float32)  # decode target when not recording
        self.opened_ns = time.time_ns()
        self._last_frame_index: int | None = None
        self._first_acquisition_time_ns: int | None = None  # of the first frame taken: how long it has recorded
        self._last_acquisition_time_ns: int | None = None
        self._stray_run: StrayRun | None = None  # frames just dropped far behind the last taken one (policy.py)
        self._last_received_ns: int | None = None
        self._last_received_monotonic: float | None = None
        self._pending_forecast = False  # a frame was taken since the last forecast
        self._unkept_forecast: tuple[int, np.ndarray] | None = None  # (frame index, forecast) until it is sent
        self._stalled = False  # as last logged by the ingest thread
        self._frames_accepted = 0
        self._frames_gap_filled = 0
        self._resets = 0
        self._frames_dropped = 0
        self._frames_rejected = 0
        self._forecasts = 0

    # Read-only views of the state this class alone writes (see the module docstring).

    @property
    def last_frame_index(self) -> int | None:
        return self._last_frame_index

    @property
    def first_acquisition_time_ns(self) -> int | None:
        return self._first_acquisition_time_ns

    @property
    def last_acquisition_time_ns(self) -> int | None:
        return self._last_acquisition_time_ns

    @property
    def stalled(self) -> bool:
        return self._stalled

    @property
    def frames_accepted(self) -> int:
        return self._frames_accepted

    @property
    def pending_forecast(self) -> bool:
        return self._pending_forecast

    @property
    def num_units(self) -> int:
        return self.model.num_units

    @property
    def accuracy_enabled(self) -> bool:
        return self.accuracy is not None

    @property
    def interval_levels(self) -> tuple[float, ...]:
        return () if self.accuracy is None else self.accuracy.levels

    def accuracy_readout(self) -> UnitAccuracy | None:
        """A copy of the live per-unit accuracy (allocates: for requests); None when it is turned off."""
        return None if self.accuracy is None else self.accuracy.readout()

    def crossing_probability(self, forecast: np.ndarray, *, unit: int, value: float, above: bool) -> float | None:
        """P(unit `unit` of this (N, P) raw forecast goes above / below `value` within P frames); None before
        any forecast of the current model has been scored at every step."""
        if self.accuracy is None:
            return None
        return self.accuracy.crossing_probability(forecast, unit=unit, value=value, above=above)

    @property
    def accuracy_paths(self) -> int:
        """Residual paths a crossing probability is computed from now."""
        return 0 if self.accuracy is None else self.accuracy.complete_paths

    def status(self, now_monotonic: float, stall_after_s: float, adaptation: AdaptationStatus | None) -> SessionStatus:
        model, bundle = self.model, self.model.loaded.bundle
        return SessionStatus(
            name=self.name,
            state=self.state(now_monotonic, stall_after_s),
            calibration=model.calibration.name,
            calibration_hash=model.calibration_hash,
            zero_shot=model.zero_shot,
            adaptation=adaptation,
            model_version=model.version,
            bundle=model.loaded.id,
            unit_count=self.num_units,
            context_frames=bundle.context_frames,
            horizon=bundle.horizon,
            frames_in_context=self.ring.filled,
            last_frame_index=self._last_frame_index,
            last_acquisition_time_ns=self._last_acquisition_time_ns,
            last_received_ns=self._last_received_ns,
            frames_accepted=self._frames_accepted,
            frames_gap_filled=self._frames_gap_filled,
            resets=self._resets,
            frames_dropped=self._frames_dropped,
            frames_rejected=self._frames_rejected,
            forecasts=self._forecasts,
            recording=self.recording.directory if self.recording is not None else None,
            accuracy_enabled=self.accuracy_enabled,
            interval_levels=self.interval_levels,
        )

    def recent_context(
        self, units: np.ndarray | None, *, after: int | None
    ) -> tuple[np.ndarray, int | None, SessionModel]:
        """On the ingest thread: a (k, n) copy of the normalised frames of `units` (None: all) whose index is
        above `after` (None: every frame in the context), the newest frame's index, and the model whose
        normalisation they are in.

        The context holds at most C frames, and only those since the session opened or last reset. A
        reader that polls passes the last index it has and so gets every new frame exactly once, however
        late its request is answered.
        """
        last, filled = self._last_frame_index, self.ring.filled
        count = filled if after is None or last is None else max(0, min(filled, last - after))
        return self.ring.recent(count, units), last, self.model

    def decode_target(self) -> np.ndarray:
        """The (N,) float32 row the next frame is decoded into: kept only if the frame passes every check."""
        return self.recording.row() if self.recording is not None else self._scratch

    def state(self, now_monotonic: float, stall_after_s: float) -> SessionState:
        last = self._last_received_monotonic
        if last is not None and now_monotonic - last > stall_after_s:
            return SessionState.STALLED
        return SessionState.STREAMING if self.ring.full else SessionState.WARMING_UP

    def classify(
        self, frame: FrameHeader, *, max_gap_fill_frames: int, resync_after_frames: int
    ) -> tuple[FrameOrder, int]:
        """The frame's order against the last one taken, and the frames missing before it (policy.py)."""
        return classify_frame(
            self._last_frame_index,
            frame.frame_index,
            max_gap_fill_frames=max_gap_fill_frames,
            last_acquisition_time_ns=self._last_acquisition_time_ns,
            acquisition_time_ns=frame.acquisition_time_ns,
            stray_run=self._stray_run,
            resync_after_frames=resync_after_frames,
        )

    def drop(self, frame: FrameHeader, order: FrameOrder, *, max_gap_fill_frames: int) -> None:
        """Count a frame the order policy drops, and follow the run of frames far behind the last one taken
        that a resync watches for."""
        self._stray_run = stray_run_after(
            self._stray_run, order, self._last_frame_index, frame.frame_index, max_gap_fill_frames=max_gap_fill_frames
        )
        self._frames_dropped += 1

    def reject(self) -> None:
        """Count a frame for this session that was refused (unit count, NaN, a payload the wire refuses)."""
        self._frames_rejected += 1

    def update_stalled(self, now_monotonic: float, stall_after_s: float) -> bool:
        """Set the stall flag from the time since the last frame; whether it changed (the caller logs it)."""
        stalled = self.state(now_monotonic, stall_after_s) is SessionState.STALLED
        changed = stalled != self._stalled
        self._stalled = stalled
        return changed

    def take(self, raw: np.ndarray, *, frame: FrameHeader, received_ns: int, order: FrameOrder, missing: int) -> None:
        """Put a checked raw (N,) frame into the context, after filling or resetting for a gap, note it as
        the last frame taken, and stage it for `finish_taken_frame`.

        Raises NonFiniteValues, the session unchanged, for a frame that holds NaN or inf or overflows once
        normalised: normalising is the one check of both, and tells them apart only for a frame it refuses.
        """
        calibration = self.model.calibration
        if not self.ring.stage(raw, calibration.mean, calibration.std):
            require_finite(Frame(header=frame, values=raw))  # NaN or inf as sent
            unit = self.ring.first_overflowing_unit()
            raise NonFiniteValues(
                f"session {self.name!r}: unit {unit}'s value {raw[unit]:g} is beyond float32 once normalised by "
                f"the calibration (mean {calibration.mean[unit]:g}, std {calibration.std[unit]:g})"
            )
        if order is FrameOrder.GAP_FILLED:
            self.ring.hold_last(missing)
            self._frames_gap_filled += missing
        elif order.resets:
            self.ring.reset()
            self._resets += 1
            if order is FrameOrder.RESTART:
                self._forget_pending_forecasts()
        self.ring.push_staged()
        self._stray_run = None
        self._last_frame_index = frame.frame_index
        if self._first_acquisition_time_ns is None:
            self._first_acquisition_time_ns = frame.acquisition_time_ns
        self._last_acquisition_time_ns = frame.acquisition_time_ns
        self._last_received_ns = received_ns
        self._last_received_monotonic = time.monotonic()
        if self.accuracy is not None:
            self.accuracy.stage(frame.frame_index, raw)
        self._frames_accepted += 1
        if self.normalisation is not None:
            self._estimate_normalisation(raw)
        self._pending_forecast = self.ring.full

    def _estimate_normalisation(self, raw: np.ndarray) -> None:
        """Add a new animal's frame to its estimate. The first estimate (at C frames) is swapped in at once,
        before the first forecast; each later one, every C frames, waits until the frame's forecast is out
        (`refresh_normalisation`): re-estimating and re-hashing the calibration takes about a millisecond
        at N = 1000, which is not the forecast's to wait for."""
        normalisation = self.normalisation
        normalisation.add(raw)
        if normalisation.count % self.ring.context_frames:
            return
        if normalisation.count == self.ring.context_frames:
            self._switch(self.model.renormalised(*normalisation.estimate()))
        else:
            self._normalisation_due = True

    def refresh_normalisation(self) -> None:
        """Swap a due normalisation estimate in: after the forecasts of the frames taken are out, between frames."""
        if self._normalisation_due:
            self._normalisation_due = False
            self._switch(self.model.renormalised(*self.normalisation.estimate()))

    def finish_taken_frame(self) -> None:
        """Once the forecasts are out (off the frame path): keep this session's forecast, if it made one, for
        scoring, then score the forecasts the last taken frame completes."""
        unkept, self._unkept_forecast = self._unkept_forecast, None
        if self.accuracy is None:
            return
        if unkept is not None:
            self.accuracy.keep(*unkept)
        self.accuracy.score_staged()

    def context_into(self, out: np.ndarray) -> np.ndarray:
        """The normalised context, (C, N) ring -> (N, C) `out`, oldest first: the network input the engine
        hands this session (its buffer for a stream forecast alone, or this session's rows of a batch)."""
        return self.ring.context_into(out)

    def finish_forecast(self, values: np.ndarray) -> tuple[np.ndarray, ForecastIntervals | None]:
        """The engine's (N, P) normalised forecast of this context -> raw units, in place (a fresh array, or a
        batch's rows of one); counted, with its intervals once calibrated. `finish_taken_frame` keeps it
        for scoring once it is sent."""
        model = self.model
        np.multiply(values, model.std_column, out=values)
        np.add(values, model.mean_column, out=values)
        self._pending_forecast = False
        self._forecasts += 1
        if self.accuracy is None or self._last_frame_index is None:
            return values, None
        self._unkept_forecast = (self._last_frame_index, values)
        return values, self.accuracy.intervals(values)

    def rebind(self, model: SessionModel) -> None:
        """Swap another model in between two frames. A new animal's stream keeps the normalisation of its
        own frames (this module's docstring): only the incoming model's network and embeddings are taken."""
        model.check_replaces(self.model)
        if self._own_normalisation:
            current = self.model.calibration
            model = model.renormalised(current.mean, current.std)
        self._switch(model)

    def _switch(self, model: SessionModel) -> None:
        """Switch to another model between two frames; the context is re-expressed in its normalisation.

        The live accuracy starts again when the network or the embeddings change, since the old
        model's residuals say nothing of the new one's; a normalisation refresh (the same network and
        embeddings) keeps it, in the new normalisation's units.
        """
        old_model, old, new = self.model, self.model.calibration, model.calibration
        if not (np.array_equal(old.mean, new.mean) and np.array_equal(old.std, new.std)):
            self.ring.renormalise(old_mean=old.mean, old_std=old.std, new_mean=new.mean, new_std=new.std)
        self.model = model
        if self.accuracy is None:
            return
        same_forecaster = model.loaded is old_model.loaded and np.array_equal(new.unit_embeddings, old.unit_embeddings)
        if same_forecaster:
            self.accuracy.renormalise(std=new.std)
        else:
            self.accuracy.reset(std=new.std)

    def _forget_pending_forecasts(self) -> None:
        """The frame count restarted: recorded forecasts name frames that are still to come."""
        if self.accuracy is not None:
            self.accuracy.forget_pending()


class SessionTable:
    """Open sessions by stream name. Changed by the ingest thread only, read from anywhere.

    Every change replaces the dict, so a reader's `snapshot()` is never mutated under it and the
    ingest thread's lookups need no lock.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, StreamSession] = {}

    def get(self, name: str) -> StreamSession:
        session = self._sessions.get(name)
        if session is None:
            raise UnknownSession(f"no open session {name!r}; open it with POST /v1/sessions first")
        return session

    def snapshot(self) -> dict[str, StreamSession]:
        return self._sessions

    def add(self, session: StreamSession) -> None:
        self._sessions = {**self._sessions, session.name: session}

    def remove(self, name: str) -> StreamSession:
        session = self.get(name)
        self._sessions = {key: value for key, value in self._sessions.items() if key != name}
        return session
