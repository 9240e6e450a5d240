"""Every accepted frame to disk, on a writer thread, so the ingest thread never waits for a disk.

The ingest thread decodes each frame straight into a row of its session's staging array (the
record layout of poco_rt.server.recording_files, preallocated), and once the frame is accepted
hands the row's slot to the writer through one bounded queue: no allocation and no I/O on the
hot path. The writer appends the record to the open chunk file with one unbuffered write; after
`chunk_frames` records it fsyncs and renames the chunk, which makes it complete. A process crash
therefore loses only frames still queued (at most `queue_frames`), a power cut at most a chunk.

When the disk falls behind and the queue is full, the frame is still forecast but not recorded:
`poco_rt_recorder_dropped_frames_total` counts it and the log says so. While the server drains at
stop (`wait_for_disk_until`), a full queue waits for the disk instead, up to the drain's deadline.
A failing disk (OSError, or a short write: a full disk takes what fits) is logged and counted
(`poco_rt_recorder_write_errors_total`), the frame is not counted as recorded, a torn record is cut
off and the chunk closed; streaming goes on.

Slot safety: a session's staging array has `queue_frames + 2` rows and a slot is reused only
after that many later frames of the session were queued, by which time the writer has finished
with it (at most `queue_frames` items wait and one is being written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from poco_rt.errors import DataDirUnusable
from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.ratelog import RateLimitedLog
from poco_rt.server.recording_files import chunk_name, record_dtype, write_meta

logger = logging.getLogger(__name__)


class SessionRecording:
    """One session's staging rows (written by the ingest thread) and chunk files (written by the writer)."""

    def __init__(self, directory: Path, *, num_units: int, staging_rows: int, chunk_frames: int) -> None:
        self.directory = directory
        self._staging = np.zeros(staging_rows, dtype=record_dtype(num_units))
        self._values = self._staging["values"]  # (S, N) float32 view: decode targets
        self._frame_index = self._staging["frame_index"]  # (S,) views of the header fields
        self._acquisition_time_ns = self._staging["acquisition_time_ns"]
        self._received_ns = self._staging["received_ns"]
        self._record_bytes = self._staging.view(np.uint8).reshape(staging_rows, -1)  # what the writer writes
        self._slot = 0
        self._chunk_frames = chunk_frames
        self._chunk_index = 0
        self._rows_in_chunk = 0
        self._file: Any = None  # the open chunk (a binary file), None between chunks

    # ingest thread --------------------------------------------------------------------------------

    def row(self) -> np.ndarray:
        """The (N,) float32 row the next frame decodes into."""
        return self._values[self._slot]

    def stamp(self, *, frame_index: int, acquisition_time_ns: int, received_ns: int) -> int:
        """Fill the current slot's header fields and return the slot; the caller then queues or abandons it."""
        slot = self._slot
        self._frame_index[slot] = frame_index
        self._acquisition_time_ns[slot] = acquisition_time_ns
        self._received_ns[slot] = received_ns
        return slot

    def advance(self) -> None:
        self._slot = (self._slot + 1) % len(self._staging)

    # writer thread --------------------------------------------------------------------------------

    def write(self, slot: int) -> None:
        if self._file is None:
            # Unbuffered: each record goes to the OS as it is written, so a process crash loses none of them.
            self._file = open(self.directory / chunk_name(self._chunk_index, complete=False), "wb", buffering=0)  # noqa: SIM115
        record = self._record_bytes[slot]
        written = self._file.write(record)
        if written != record.nbytes:  # a full disk (or a file-size limit) takes what fits and says no more
            raise OSError(
                f"short write: {written} of {record.nbytes} bytes of frame {int(self._frame_index[slot])} reached "
                "the disk (is it full?)"
            )
        self._rows_in_chunk += 1
        if self._rows_in_chunk == self._chunk_frames:
            self.finish_chunk()

    def finish_chunk(self) -> None:
        """Make the open chunk complete: flush, fsync, rename (then fsync the folder so the rename holds)."""
        if self._file is None:
            return
        file, self._file = self._file, None
        part = self.directory / chunk_name(self._chunk_index, complete=False)
        try:
            try:
                file.flush()
                os.fsync(file.fileno())
            finally:
                file.close()
            os.replace(part, self.directory / chunk_name(self._chunk_index, complete=True))
            _fsync_directory(self.directory)
        finally:  # failed or not, the next chunk gets a name of its own: reopening this one would truncate it
            self._chunk_index += 1
            self._rows_in_chunk = 0

    def abandon_chunk(self) -> None:
        """After a write error: cut a torn record off the open chunk and start a new one.

        The chunk keeps its whole records, under its .part name, for readers; one that holds none (its
        first write failed: the disk is full) is removed, so a full disk does not leave a trail of empty
        files, one per frame it refused. Errors here are the same disk's and are not raised again."""
        if self._file is None:
            return
        file, self._file = self._file, None
        part = self.directory / chunk_name(self._chunk_index, complete=False)
        with contextlib.suppress(OSError):
            file.truncate(self._rows_in_chunk * self._record_bytes.shape[1])
        with contextlib.suppress(OSError):
            file.close()
        if self._rows_in_chunk == 0:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            return  # the next chunk takes this one's name
        self._chunk_index += 1
        self._rows_in_chunk = 0


@dataclasses.dataclass(frozen=True)
class _Close:
    recording: SessionRecording


class Recorder:
    def __init__(self, *, root: Path, chunk_frames: int, queue_frames: int, metrics: ServerMetrics) -> None:
        self._root = root
        self._chunk_frames = chunk_frames
        self._queue: queue.Queue[tuple[SessionRecording, int] | _Close] = queue.Queue(maxsize=queue_frames)
        self._metrics = metrics
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = RateLimitedLog(logger, interval_s=5.0)
        self._wait_until: float | None = None  # a monotonic deadline while the ingest thread drains
        metrics.recorder_queue_depth.set_function(self._queue.qsize)

    @property
    def started(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the writer; DataDirUnusable if the recordings folder cannot be made (read-only, not a folder)."""
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataDirUnusable(f"cannot create the recordings folder {self._root}: {error.strerror}") from None
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="poco-rt-recorder", daemon=True)
        self._thread.start()
        logger.info("recording accepted frames under %s", self._root)

    def stop(self, *, timeout_s: float) -> None:
        """Write what is queued, complete every open chunk, and end the thread (within `timeout_s`)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.error("the recorder did not stop within %.1f s; %d frames unwritten", timeout_s, self._queue.qsize())
        self._thread = None

    def open(self, session: str, *, num_units: int, meta: dict[str, Any]) -> SessionRecording:
        """A new recording directory for a session being opened (on the caller's thread); DataDirUnusable
        if the disk refuses it (full, read-only), so that the session is not opened without its recording."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        parent = self._root / session
        try:
            parent.mkdir(parents=True, exist_ok=True)
            directory = _new_folder(parent, stamp)
            meta = {"session": session, "num_units": num_units, "chunk_frames": self._chunk_frames, **meta}
            write_meta(directory, meta)
        except OSError as error:
            raise DataDirUnusable(
                f"cannot start a recording of session {session!r} under {parent}: {error.strerror or error}"
            ) from None
        return SessionRecording(
            directory, num_units=num_units, staging_rows=self._queue.maxsize + 2, chunk_frames=self._chunk_frames
        )

    def wait_for_disk_until(self, deadline: float | None) -> None:
        """Ingest thread: until the monotonic `deadline`, `commit` waits for room rather than drop (None: never)."""
        self._wait_until = deadline

    def commit(
        self, recording: SessionRecording, *, frame_index: int, acquisition_time_ns: int, received_ns: int
    ) -> None:
        """Queue the current slot of an accepted frame (ingest thread; never blocks, except while draining)."""
        slot = recording.stamp(
            frame_index=frame_index, acquisition_time_ns=acquisition_time_ns, received_ns=received_ns
        )
        try:
            if self._wait_until is None:
                self._queue.put_nowait((recording, slot))
            else:
                self._queue.put((recording, slot), timeout=max(0.0, self._wait_until - time.monotonic()))
        except queue.Full:
            self._metrics.recorder_dropped_frames.inc()
            self._log.warning(
                "full",
                "recorder queue full (%d frames): frame %d forecast but not recorded (frames arrive faster than "
                "the disk takes them; counted in poco_rt_recorder_dropped_frames_total)",
                self._queue.maxsize,
                frame_index,
            )
            return
        recording.advance()

    def close(self, recording: SessionRecording, *, timeout_s: float = 1.0) -> None:
        """Complete the recording's last chunk once its queued frames are written."""
        try:
            self._queue.put(_Close(recording), timeout=timeout_s)
        except queue.Full:
            logger.error("recorder queue full: %s left with an unfinished chunk", recording.directory)

    def _run(self) -> None:
        open_recordings: set[SessionRecording] = set()
        while not (self._stopping.is_set() and self._queue.empty()):
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, _Close):
                open_recordings.discard(item.recording)
                self._finish(item.recording)
                continue
            recording, slot = item
            open_recordings.add(recording)
            try:
                recording.write(slot)
            except OSError as error:
                self._metrics.recorder_write_errors.inc()
                self._log.error("write", "recording to %s failed: %s", recording.directory, error)
                recording.abandon_chunk()
                continue
            self._metrics.recorded_frames.inc()
        for recording in open_recordings:
            self._finish(recording)

    def _finish(self, recording: SessionRecording) -> None:
        try:
            recording.finish_chunk()
        except OSError as error:
            self._metrics.recorder_write_errors.inc()
            logger.error("completing a chunk in %s failed: %s", recording.directory, error)


def _new_folder(parent: Path, stamp: str) -> Path:
    for attempt in range(1000):
        directory = parent / f"{stamp}-{attempt}"
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: 1000 recordings opened within one second; something is looping")


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return  # Windows has no directory fsync; the rename is durable once NTFS journals it
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
