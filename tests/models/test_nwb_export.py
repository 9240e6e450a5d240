"""`poco-rt recording export-nwb`: a real server's recording as an NWB file that nwbinspector passes.

The file is read back two ways: by pynwb (acquisition times to the nanosecond, frame indices, the
model in the metadata) and by the project's own NWB reader (poco_rt.models.recording), whose traces
and unit ids must be exactly what the server recorded.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from poco_rt.bundle import load_bundle
from poco_rt.cli.main import main
from poco_rt.models.recording import load_recording
from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.recorder import Recorder
from poco_rt.server.recording_files import META_FILE, read_recorded_frames, session_recordings
from tests.helpers import wait_until

pynwb = pytest.importorskip("pynwb")
nwbinspector = pytest.importorskip("nwbinspector")

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
LAB_METADATA = {
    "subject_id": "mouse-17",
    "species": "Mus musculus",
    "sex": "F",
    "age": "P90D",
    "subject_description": "wild type C57BL/6J",
    "experimenter": ["Doe, Jane"],
    "institution": "Example Institute",
    "keywords": ["closed loop", "forecasting"],
    "experiment_description": "a closed-loop session",
    "indicator": "GCaMP6f",
    "location": "VISp",
    "excitation_lambda_nm": 920.0,
    "emission_lambda_nm": 510.0,
}
WHAT_THE_LAB_MUST_ADD = {  # nwbinspector's checks a recording alone cannot satisfy
    ("CRITICAL", "check_subject_exists"),
    ("BEST_PRACTICE_SUGGESTION", "check_experimenter_exists"),
    ("BEST_PRACTICE_SUGGESTION", "check_experiment_description"),
    ("BEST_PRACTICE_SUGGESTION", "check_institution"),
    ("BEST_PRACTICE_SUGGESTION", "check_keywords"),
}


def inspect(path: Path) -> set[tuple[str, str]]:
    """nwbinspector's findings (pynwb's schema validation included) as (importance, check) pairs."""
    return {(m.importance.name, m.check_function_name) for m in nwbinspector.inspect_nwbfile(nwbfile_path=path)}


def export(recording_dir: Path, out: Path, *extra: str) -> int:
    return main(["recording", "export-nwb", str(recording_dir), str(out), *extra])


def test_a_served_recording_with_gaps_exports_exactly_and_passes_nwbinspector(
    start_server, stream_client, tiny_recording, served_bundle, tmp_path
):
    traces = tiny_recording.session("sim00").traces[:60]  # (60, N = 14) raw
    server = start_server(open_sessions={"sim00": "sim00"}, recorder_chunk_frames=16)
    client = stream_client(server)
    rejected = traces[30].copy()
    rejected[3] = np.nan
    sent = [index for index in range(60) if index not in (20, 21, 30)]  # 20, 21 never arrive; 30 is rejected
    for index in range(60):
        if index == 30:
            client.send(rejected, frame_index=30)
        elif index in sent:
            client.send(traces[index], frame_index=index)
    wait_until(lambda: server.runtime.metric_value("poco_rt_recorded_frames_total") == len(sent), "the frames recorded")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        served = http.get("/v1/sessions/sim00").json()
    assert served["frames_rejected"] == 1
    (directory,) = session_recordings(tmp_path / "data" / "recordings", "sim00")
    assert len(list(directory.glob("chunk-*.frames"))) == 3 and len(list(directory.glob("chunk-*.part"))) == 1
    metadata = tmp_path / "lab.json"
    metadata.write_text(json.dumps(LAB_METADATA))

    out = tmp_path / "sim00.nwb"
    assert export(directory, out, "--metadata", str(metadata)) == 0  # while the session still streams

    assert inspect(out) == set()
    recorded = read_recorded_frames(directory)
    np.testing.assert_array_equal(recorded.values, traces[sent])
    (session,) = load_recording(out).sessions
    np.testing.assert_array_equal(session.traces, recorded.values)
    assert session.unit_ids == tuple(recorded.meta["unit_ids"])
    with pynwb.NWBHDF5IO(str(out), mode="r") as io:
        nwbfile = io.read()
        ophys = nwbfile.processing["ophys"]
        series = ophys["Fluorescence"]["RoiResponseSeries"]
        origin_ns = (nwbfile.session_start_time - EPOCH) // datetime.timedelta(microseconds=1) * 1000
        acquired_ns = origin_ns + np.round(series.timestamps[()] * 1e9).astype(np.int64)
        np.testing.assert_array_equal(acquired_ns, recorded.acquisition_time_ns)
        np.testing.assert_array_equal(ophys["frame_index"].data[()], sent)
        notes = json.loads(nwbfile.notes)
        assert nwbfile.subject.subject_id == "mouse-17" and series.rois.table.imaging_plane.indicator == "GCaMP6f"
    assert (notes["model_version"], notes["calibration"]) == (load_bundle(served_bundle).version, "sim00")
    assert notes["calibration_hash"] == served["calibration_hash"]


def test_a_regular_clock_is_written_as_a_rate_and_the_inspector_names_only_what_the_lab_must_add(tmp_path):
    metrics = ServerMetrics()
    recorder = Recorder(root=tmp_path / "recordings", chunk_frames=4, queue_frames=16, metrics=metrics)
    recorder.start()
    recording = recorder.open("rig1", num_units=3, meta={"unit_ids": ["a", "b", "c"]})
    start_ns = 1_780_000_000_000_000_000
    for index in range(10):
        recording.row()[:] = [index, -index, 0.5]
        recorder.commit(
            recording, frame_index=index, acquisition_time_ns=start_ns + index * 50_000_000, received_ns=time.time_ns()
        )
    recorder.close(recording)
    recorder.stop(timeout_s=10)

    out = tmp_path / "rig1.nwb"
    assert export(recording.directory, out) == 0

    assert inspect(out) == WHAT_THE_LAB_MUST_ADD
    with pynwb.NWBHDF5IO(str(out), mode="r") as io:
        series = io.read().processing["ophys"]["Fluorescence"]["RoiResponseSeries"]
        assert (series.rate, series.starting_time, series.timestamps) == (20.0, 0.0, None)
    (session,) = load_recording(out).sessions
    assert (session.frame_rate_hz, session.unit_ids) == (20.0, ("a", "b", "c"))


def broken_recording(tmp_path: Path, damage: str) -> Path:
    """A recording of 3 frames of 2 units, then damaged as named."""
    directory = tmp_path / "recordings" / "rig1" / "20261202T120000Z-0"
    directory.mkdir(parents=True)
    (directory / META_FILE).write_text(json.dumps({"format_version": 1, "session": "rig1", "num_units": 2}))
    records = np.zeros(3, dtype=[("frame_index", "<u8"), ("acquisition_time_ns", "<i8"), ("received_ns", "<i8"),
                                 ("values", "<f4", (2,))])  # fmt: skip
    records["frame_index"] = records["acquisition_time_ns"] = np.arange(3)
    records.tofile(directory / "chunk-000000.frames")
    if damage == "no meta.json":
        (directory / META_FILE).unlink()
    elif damage == "meta.json not JSON":
        (directory / META_FILE).write_text('{"format_version": 1, "num_un')
    elif damage == "num_units missing":
        (directory / META_FILE).write_text(json.dumps({"format_version": 1}))
    elif damage == "a torn complete chunk":
        with (directory / "chunk-000000.frames").open("ab") as chunk:
            chunk.write(b"\x00\x01")
    elif damage == "no frames":
        (directory / "chunk-000000.frames").unlink()
    elif damage == "unit ids that do not fit":
        (directory / META_FILE).write_text(json.dumps({"format_version": 1, "num_units": 2, "unit_ids": ["a"]}))
    return directory


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no meta.json", "not a recording \\(no meta.json\\)"),
        ("meta.json not JSON", "meta.json: not readable as JSON"),
        ("num_units missing", "num_units must be a positive integer, got None"),
        ("a torn complete chunk", "chunk-000000.frames: 98 bytes is not a whole number of 32-byte records"),
        ("no frames", "the recording holds no frames; there is nothing to export"),
        ("unit ids that do not fit", "unit_ids are not a list of 2 ids"),
    ],
)
def test_a_broken_recording_is_a_clear_error_and_writes_nothing(tmp_path, caplog, damage, message):
    out = tmp_path / "out.nwb"
    assert export(broken_recording(tmp_path, damage), out) == 2
    assert caplog.records[-1].levelname == "ERROR"
    assert re.search(message, caplog.records[-1].getMessage())
    assert list(tmp_path.glob("*.nwb")) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{recording}/missing", "{tmp}/out.nwb"], "missing: no such recording directory"),
        (["{recording}", "{tmp}/out.h5"], "out.h5: an NWB file's name ends in .nwb"),
        (["{recording}", "{tmp}/exists.nwb"], "exists.nwb: exists already; choose another path or pass overwrite"),
        (["{recording}", "{tmp}/out.nwb", "--metadata", "{tmp}/unknown.json"], "unknown metadata fields \\['mouse'\\]"),
        (["{recording}", "{tmp}/out.nwb", "--metadata", "{tmp}/wrong.json"], "'age': expected a string, got 90"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, caplog, arguments, message):
    recording = broken_recording(tmp_path, "none")
    (tmp_path / "exists.nwb").write_bytes(b"keep me")
    (tmp_path / "unknown.json").write_text(json.dumps({"mouse": "17"}))
    (tmp_path / "wrong.json").write_text(json.dumps({"age": 90}))
    argv = [argument.format(recording=recording, tmp=tmp_path) for argument in arguments]
    assert main(["recording", "export-nwb", *argv]) == 2
    assert re.search(message, caplog.records[-1].getMessage())
    assert (tmp_path / "exists.nwb").read_bytes() == b"keep me"


NO_PYNWB = """
import importlib.abc, sys
class NoPynwb(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pynwb" or name.startswith("pynwb."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoPynwb())
from poco_rt.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_pynwb_the_command_names_the_extra_to_install(tmp_path):
    recording = broken_recording(tmp_path, "none")
    result = subprocess.run(
        [sys.executable, "-c", NO_PYNWB, "recording", "export-nwb", str(recording), str(tmp_path / "out.nwb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "exporting NWB needs pynwb, which this install lacks" in result.stderr
    assert "pip install 'poco-rt[train]'" in result.stderr
    assert not (tmp_path / "out.nwb").exists()
