"""The recorder on its own: chunks completed by rename, a crash's partial chunk still readable, overflow counted."""

from __future__ import annotations

import time

import numpy as np
import pytest

from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.recorder import Recorder, SessionRecording
from poco_rt.server.recording_files import read_recording

UNITS = 3


def record(recorder: Recorder, recording: SessionRecording, frame_index: int) -> np.ndarray:
    """What the ingest thread does for one accepted frame: decode into the row, then commit it."""
    values = np.full(UNITS, frame_index, dtype=np.float32)
    recording.row()[:] = values
    recorder.commit(
        recording, frame_index=frame_index, acquisition_time_ns=10 * frame_index, received_ns=11 * frame_index
    )
    return values


def wait_for_recorded(metrics: ServerMetrics, frames: int) -> None:
    deadline = time.monotonic() + 10
    while metrics.registry.get_sample_value("poco_rt_recorded_frames_total") < frames:
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {frames} frames recorded within 10 s")
        time.sleep(0.01)


def test_full_chunks_are_renamed_and_a_crash_leaves_whole_records_readable(tmp_path):
    metrics = ServerMetrics()
    recorder = Recorder(root=tmp_path, chunk_frames=4, queue_frames=8, metrics=metrics)
    recorder.start()
    try:
        recording = recorder.open("rig1", num_units=UNITS, meta={"calibration": "sim00"})
        sent = np.stack([record(recorder, recording, index) for index in range(6)])
        wait_for_recorded(metrics, 6)
        files = sorted(p.name for p in recording.directory.glob("chunk-*"))
        assert files == ["chunk-000000.frames", "chunk-000001.frames.part"]
        with (recording.directory / "chunk-000001.frames.part").open("ab") as part:
            part.write(b"\x01\x02\x03")  # a record torn by a crash
        crashed = read_recording(recording.directory)
        np.testing.assert_array_equal(crashed.values, sent)
        np.testing.assert_array_equal(crashed.frame_index, np.arange(6))
        np.testing.assert_array_equal(crashed.acquisition_time_ns, 10 * np.arange(6))
        assert read_recording(recording.directory, include_partial=False).values.shape == (4, UNITS)
    finally:
        recorder.stop(timeout_s=5)


def test_stopping_completes_the_last_chunk(tmp_path):
    metrics = ServerMetrics()
    recorder = Recorder(root=tmp_path, chunk_frames=4, queue_frames=8, metrics=metrics)
    recorder.start()
    recording = recorder.open("rig1", num_units=UNITS, meta={})
    for index in range(5):
        record(recorder, recording, index)
    recorder.stop(timeout_s=5)
    assert sorted(p.name for p in recording.directory.glob("chunk-*")) == ["chunk-000000.frames", "chunk-000001.frames"]
    assert read_recording(recording.directory, include_partial=False).frame_index.tolist() == [0, 1, 2, 3, 4]
    assert not recorder.started


def test_a_full_queue_drops_and_counts_without_touching_queued_frames(tmp_path):
    metrics = ServerMetrics()
    recorder = Recorder(root=tmp_path, chunk_frames=100, queue_frames=2, metrics=metrics)
    recording = recorder.open("rig1", num_units=UNITS, meta={})
    for index in range(5):  # the writer is not running yet: the disk is "slow"
        record(recorder, recording, index)
    assert metrics.registry.get_sample_value("poco_rt_recorder_dropped_frames_total") == 3
    recorder.start()
    recorder.stop(timeout_s=5)
    recorded = read_recording(recording.directory)
    assert recorded.frame_index.tolist() == [0, 1]
    np.testing.assert_array_equal(recorded.values, [[0.0] * UNITS, [1.0] * UNITS])


def test_a_recording_without_frames_reads_as_zero_rows_of_its_units(tmp_path):
    recorder = Recorder(root=tmp_path, chunk_frames=4, queue_frames=8, metrics=ServerMetrics())
    recording = recorder.open("rig1", num_units=UNITS, meta={})  # opened, then closed before any frame
    recorded = read_recording(recording.directory)
    assert recorded.values.shape == (0, UNITS) and recorded.frame_index.shape == (0,)
