"""Where a frame falls in its session's stream, by frame index, and what the session does with it.

The stated policy (docs/server.md repeats it):
- the first frame of a session (or the first after a reset) starts it, whatever its index;
- the next index is taken as is;
- a gap of up to `max_gap_fill_frames` missing frames is filled by holding the last frame's
  values (the model sees a flat stretch, as if the microscope had repeated itself), then the
  frame is taken; the filled frames are counted;
- a larger gap resets the session to warming up: C new frames are needed before it forecasts
  again, since a context that spans a long hole would forecast from data that no longer holds;
- a frame whose index was already taken (a duplicate) or is older than the last taken one
  (out of order) is dropped and counted: the context has moved on and cannot be rewritten;
- except a restart: an index more than `max_gap_fill_frames` behind the last one, stamped with a
  later acquisition time than it, is the acquisition software counting again from its start
  (restarted, or a publisher replaced mid-experiment). The session resets to warming up and
  takes the frame as its first, as for a large gap forward; dropping every frame until the new
  count passed the old one would silence the session for as long as the last run lasted. A late
  frame carries an earlier acquisition time, and a few frames back is the out-of-order case.
- and a resync: `resync_after_frames` (R) frames in a row dropped as out of order, each more than
  `max_gap_fill_frames` behind the last taken one and each following the one before it (an index
  1..max_gap_fill_frames + 1 higher), are a stream that agrees with itself and not with the last
  taken frame. The R-th resets the session to warming up and is taken as its first. Without it,
  one frame far ahead in index and stamped later than the publisher's clock will ever reach
  (a corrupt header, a clock that ran ahead, a stray peer on the frame port; INT64_MAX, say)
  would make every later frame out of order, until the session was reopened. R frames are needed,
  not one, so that a single stray frame far behind cannot move the session back either: whichever
  side one odd frame lands on, it costs the session at most one warm-up and R - 1 dropped frames.
A rejected frame (NaN, wrong unit count, ...) does not advance the session, so the next good
frame sees it as a gap of one and holds the last values in its place.
"""

from __future__ import annotations

import dataclasses
import enum

DEFAULT_RESYNC_AFTER_FRAMES = 8  # R: at 30 Hz, a quarter of a second of frames before a session resyncs


class FrameOrder(enum.StrEnum):
    """A frame's place in its stream; the value is its metric label."""

    FIRST = "first"
    NEXT = "next"
    GAP_FILLED = "gap_filled"
    GAP_RESET = "gap_reset"
    RESTART = "restart"
    RESYNC = "resync"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"

    @property
    def taken(self) -> bool:
        return self not in (FrameOrder.DUPLICATE, FrameOrder.OUT_OF_ORDER)

    @property
    def resets(self) -> bool:
        """Whether the session starts warming up again before taking the frame."""
        return self in (FrameOrder.GAP_RESET, FrameOrder.RESTART, FrameOrder.RESYNC)


@dataclasses.dataclass(frozen=True, slots=True)
class StrayRun:
    """The frames just dropped in a row far behind the last taken one, each following the one before it."""

    last_index: int
    frames: int

    def continued_by(self, frame_index: int, *, max_gap_fill_frames: int) -> bool:
        return 1 <= frame_index - self.last_index <= max_gap_fill_frames + 1


def stray_run_after(
    run: StrayRun | None, order: FrameOrder, last_index: int | None, frame_index: int, *, max_gap_fill_frames: int
) -> StrayRun | None:
    """The stray run once a frame was classified as `order`: longer, begun anew, or ended (None)."""
    if order is not FrameOrder.OUT_OF_ORDER or last_index is None or last_index - frame_index <= max_gap_fill_frames:
        return None
    if run is not None and run.continued_by(frame_index, max_gap_fill_frames=max_gap_fill_frames):
        return StrayRun(last_index=frame_index, frames=run.frames + 1)
    return StrayRun(last_index=frame_index, frames=1)


def classify_frame(
    last_index: int | None,
    frame_index: int,
    *,
    max_gap_fill_frames: int,
    last_acquisition_time_ns: int | None,
    acquisition_time_ns: int,
    stray_run: StrayRun | None = None,
    resync_after_frames: int = DEFAULT_RESYNC_AFTER_FRAMES,
) -> tuple[FrameOrder, int]:
    """The frame's order and the number of frames missing before it (0 unless a gap).

    `stray_run` is what `stray_run_after` returned for the frame before this one."""
    if last_index is None:
        return FrameOrder.FIRST, 0
    if frame_index == last_index:
        return FrameOrder.DUPLICATE, 0
    if frame_index < last_index:
        clock_went_on = last_acquisition_time_ns is not None and acquisition_time_ns > last_acquisition_time_ns
        far_behind = last_index - frame_index > max_gap_fill_frames
        if clock_went_on and far_behind:
            return FrameOrder.RESTART, 0
        stray_frames = (
            stray_run.frames + 1
            if stray_run is not None and stray_run.continued_by(frame_index, max_gap_fill_frames=max_gap_fill_frames)
            else 1
        )
        if far_behind and stray_frames >= resync_after_frames:
            return FrameOrder.RESYNC, 0
        return FrameOrder.OUT_OF_ORDER, 0
    missing = frame_index - last_index - 1
    if missing == 0:
        return FrameOrder.NEXT, 0
    if missing <= max_gap_fill_frames:
        return FrameOrder.GAP_FILLED, missing
    return FrameOrder.GAP_RESET, missing
