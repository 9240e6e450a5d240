"""The recorder on its own: chunks completed by rename, a crash's partial chunk still readable, overflow counted."""

from __future__ import annotations

import time

import numpy as np
import pytest

from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.recorder import Recorder, SessionRecording
from poco_rt.server.recording_files import read_recorded_frames

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
        crashed = read_recorded_frames(recording.directory)
        np.testing.assert_array_equal(crashed.values, sent)
        np.testing.assert_array_equal(crashed.frame_index, np.arange(6))
        np.testing.assert_array_equal(crashed.acquisition_time_ns, 10 * np.arange(6))
        assert read_recorded_frames(recording.directory, include_partial=False).values.shape == (4, UNITS)
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
    assert read_recorded_frames(recording.directory, include_partial=False).frame_index.tolist() == [0, 1, 2, 3, 4]
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
    recorded = read_recorded_frames(recording.directory)
    assert recorded.frame_index.tolist() == [0, 1]
    np.testing.assert_array_equal(recorded.values, [[0.0] * UNITS, [1.0] * UNITS])


def test_a_recording_without_frames_reads_as_zero_rows_of_its_units(tmp_path):
    recorder = Recorder(root=tmp_path, chunk_frames=4, queue_frames=8, metrics=ServerMetrics())
    recording = recorder.open("rig1", num_units=UNITS, meta={})  # opened, then closed before any frame
    recorded = read_recorded_frames(recording.directory)
    assert recorded.values.shape == (0, UNITS) and recorded.frame_index.shape == (0,)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs mounted for the test (needs root and mount privileges; skipped without them)."""
    import subprocess

    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.strip() or mounted.returncode}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_counts_no_torn_record_as_recorded_and_leaves_no_empty_chunk_files(full_disk, caplog):
    metrics = ServerMetrics()
    recorder = Recorder(root=full_disk, chunk_frames=1000, queue_frames=4000, metrics=metrics)
    recording = recorder.open("rig1", num_units=UNITS, meta={})  # 36-byte records: one is torn when 64 KiB fill up
    for index in range(3000):
        record(recorder, recording, index)
    recorder.start()
    recorder.stop(timeout_s=10)
    on_disk = read_recorded_frames(recording.directory)
    recorded = metrics.registry.get_sample_value("poco_rt_recorded_frames_total")
    assert 0 < len(on_disk.frame_index) < 3000
    assert recorded == len(on_disk.frame_index)
    assert on_disk.frame_index.tolist() == list(range(int(recorded)))
    np.testing.assert_array_equal(on_disk.values[:, 0], on_disk.frame_index.astype(np.float32))
    errors = metrics.registry.get_sample_value("poco_rt_recorder_write_errors_total")
    assert errors == 3000 - recorded  # every frame the disk refused is counted as an error
    assert "short write" in caplog.text
    chunk_files = list(recording.directory.glob("chunk-*"))
    assert all(path.stat().st_size > 0 for path in chunk_files), sorted(p.name for p in chunk_files)
    record_bytes = 24 + 4 * UNITS
    assert all(path.stat().st_size % record_bytes == 0 for path in chunk_files)  # the torn record was cut off


def test_recording_resumes_in_the_next_chunk_once_a_full_disk_has_room(full_disk):
    metrics = ServerMetrics()
    recorder = Recorder(root=full_disk, chunk_frames=1000, queue_frames=4000, metrics=metrics)
    recording = recorder.open("rig1", num_units=UNITS, meta={})
    filler = full_disk / "filler"
    with filler.open("wb", buffering=0) as f, pytest.raises(OSError, match="No space left"):
        while True:
            f.write(bytes(4096))
    recorder.start()
    try:
        for index in range(5):  # the disk refuses them
            record(recorder, recording, index)
        deadline = time.monotonic() + 10
        while metrics.registry.get_sample_value("poco_rt_recorder_write_errors_total") < 5:
            assert time.monotonic() < deadline, "the refused frames were not counted"
            time.sleep(0.01)
        filler.unlink()
        for index in range(5, 8):
            record(recorder, recording, index)
        wait_for_recorded(metrics, 3)
    finally:
        recorder.stop(timeout_s=10)
    assert read_recorded_frames(recording.directory).frame_index.tolist() == [5, 6, 7]
    assert [p.name for p in recording.directory.glob("chunk-*")] == ["chunk-000000.frames"]
