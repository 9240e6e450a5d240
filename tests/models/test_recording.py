from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from poco_rt.errors import RecordingError
from poco_rt.models.recording import Recording, Session, load_recording, split_recording_at
from tests.helpers import FLAVELL, needs_flavell


def session(name="s0", frames=20, units=3, rate=5.0) -> Session:
    traces = np.arange(frames * units, dtype=np.float64).reshape(frames, units)
    return Session(name=name, traces=traces, frame_rate_hz=rate, unit_ids=tuple(f"u{i}" for i in range(units)))


def test_multi_session_npz_round_trips(tmp_path: Path):
    recording = Recording(name="lab", sessions=(session("a"), session("b", units=5)))
    recording.save_npz(tmp_path / "r.npz")
    loaded = load_recording(tmp_path / "r.npz")
    assert loaded.name == "lab"
    assert loaded.session_names == ["a", "b"]
    np.testing.assert_array_equal(loaded.session("b").traces, recording.session("b").traces)
    assert loaded.session("b").traces.dtype == np.float32
    assert loaded.session("a").unit_ids == ("u0", "u1", "u2")


def test_single_session_npz_is_named_after_the_file(tmp_path: Path):
    np.savez(tmp_path / "mouse7.npz", traces=np.ones((10, 4)), frame_rate_hz=30.0)
    loaded = load_recording(tmp_path / "mouse7.npz")
    assert loaded.session_names == ["mouse7"]
    assert loaded.sessions[0].frame_rate_hz == 30.0


def test_flavell_hdf5_layout_gives_traces_and_frame_rate(tmp_path: Path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "worms" / "2022-01-01-01-data.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f["gcamp/trace_array"] = np.random.default_rng(0).normal(size=(30, 7))
        f["timing/timestamp_confocal"] = 1000.0 + 0.6 * np.arange(30)
    loaded = load_recording(path.parent)
    assert loaded.name == "worms"
    assert loaded.session_names == ["2022-01-01-01"]
    assert loaded.sessions[0].traces.shape == (30, 7)
    assert loaded.sessions[0].frame_rate_hz == pytest.approx(1 / 0.6)


def test_nwb_roi_response_series_is_read(tmp_path: Path):
    pynwb = pytest.importorskip("pynwb")
    from datetime import datetime

    from pynwb.ophys import ImageSegmentation, OpticalChannel

    nwbfile = pynwb.NWBFile(
        session_description="test", identifier="id0", session_start_time=datetime(2024, 1, 1, tzinfo=UTC)
    )
    device = nwbfile.create_device(name="scope")
    channel = OpticalChannel(name="ch", description="green", emission_lambda=500.0)
    plane = nwbfile.create_imaging_plane(
        name="plane",
        optical_channel=channel,
        description="",
        device=device,
        excitation_lambda=600.0,
        imaging_rate=30.0,
        indicator="GCaMP6f",
        location="V1",
    )
    segmentation = ImageSegmentation().create_plane_segmentation(name="rois", imaging_plane=plane, description="seg")
    for i in range(4):
        mask = np.zeros((8, 8))
        mask[i, i] = 1
        segmentation.add_roi(image_mask=mask)
    ophys = nwbfile.create_processing_module("ophys", "optical physiology")
    ophys.add(segmentation.parent)
    rois = segmentation.create_roi_table_region(description="all", region=list(range(4)))
    traces = np.random.default_rng(0).normal(size=(50, 4))
    fluorescence = pynwb.ophys.Fluorescence()
    ophys.add(fluorescence)
    fluorescence.create_roi_response_series(name="RoiResponseSeries", data=traces, rois=rois, unit="a.u.", rate=30.0)
    with pynwb.NWBHDF5IO(str(tmp_path / "m.nwb"), "w") as io:
        io.write(nwbfile)
    loaded = load_recording(tmp_path / "m.nwb")
    assert loaded.sessions[0].traces.shape == (50, 4)
    assert loaded.sessions[0].frame_rate_hz == 30.0
    np.testing.assert_allclose(loaded.sessions[0].traces, traces.astype(np.float32))


@pytest.mark.parametrize(
    ("traces", "message"),
    [
        (np.ones(10), "must be 2-D"),
        (np.ones((0, 3)), "empty"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "non-finite values \\(first at frame 0, unit 1\\)"),
    ],
)
def test_bad_traces_are_refused_with_the_reason(traces, message):
    with pytest.raises(RecordingError, match=message):
        units = traces.shape[-1]
        Session(name="bad", traces=traces, frame_rate_hz=1.0, unit_ids=("a",) * units)


def test_unknown_format_and_missing_files_are_refused(tmp_path: Path):
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(RecordingError, match=r"unknown recording format '\.csv'"):
        load_recording(tmp_path / "x.csv")
    with pytest.raises(RecordingError, match="no such file"):
        load_recording(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(RecordingError, match=r"not a readable \.npz"):
        load_recording(tmp_path / "junk.npz")


def test_split_at_keeps_every_frame_once():
    head, tail = split_recording_at(Recording(name="r", sessions=(session(frames=20),)), 15)
    assert head.sessions[0].num_frames == 15
    assert tail.sessions[0].num_frames == 5
    np.testing.assert_array_equal(
        np.concatenate([head.sessions[0].traces, tail.sessions[0].traces]), session(frames=20).traces
    )


@needs_flavell()
def test_the_real_flavell_recording_loads_as_nine_worms_of_finite_traces():
    recording = load_recording(FLAVELL)
    assert len(recording.sessions) == 9
    for session in recording.sessions:
        assert session.traces.ndim == 2 and np.isfinite(session.traces).all()
        assert 1.0 < session.frame_rate_hz < 2.0  # whole-brain C. elegans imaging, ~1.4-1.7 Hz
        assert len(session.unit_ids) == session.traces.shape[1]
