"""A server recording as an NWB ophys file, for labs that share and archive their data as NWB.

Neurodata Without Borders (Rübel et al. 2022, eLife 11:e78362; schema at https://nwb-schema.readthedocs.io)
stores calcium traces as a `RoiResponseSeries` whose columns are rows of a `PlaneSegmentation` on an
`ImagingPlane`. One recording directory (poco_rt.server.recording_files) becomes one file:

    session_start_time         the first frame's acquisition time, to the microsecond below it
    notes                      the recording's meta.json as JSON: session, calibration, calibration_hash,
                               model_version, bundle, unit ids
    processing/ophys/
      ImageSegmentation/PlaneSegmentation   one row per unit; column `unit_id` holds the bundle's unit ids
      Fluorescence/RoiResponseSeries        (T, N) float32 values as acquired, with their acquisition times
      frame_index                           (T,) uint64: the rig's frame indices, so gaps stay visible
      received_time                         (T,) float64 s: when the server received each frame (its clock)

Times are seconds after session_start_time on the acquisition PC's clock; the regular case (every
interval the same to the nanosecond) is written as a rate instead, as NWB asks. Frames that never
arrived or were rejected are not in a recording, so a gap is a jump in `frame_index` and in the
timestamps; nothing is filled in. The server knows its units by id, not by position, so each ROI's
pixel mask is one placeholder pixel (x = its row); what the lab knows about the preparation (subject,
indicator, wavelengths, location) comes in through `NwbMetadata`.

The serving install has no pynwb, so importing this module without it raises MissingExtra, naming
the extra that brings it.

Legend: T recorded frames, N units.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

import poco_rt
from poco_rt.errors import MissingExtra, RecordingError
from poco_rt.server.recording_files import RecordedFrames, read_recorded_frames

try:
    from pynwb import NWBHDF5IO, H5DataIO, NWBFile, ProcessingModule, TimeSeries
    from pynwb.file import Subject
    from pynwb.ophys import (
        Fluorescence,
        ImageSegmentation,
        ImagingPlane,
        OpticalChannel,
        PlaneSegmentation,
        RoiResponseSeries,
    )
except ModuleNotFoundError as error:
    raise MissingExtra(
        f"exporting NWB needs pynwb, which this install lacks ({error}): pip install 'poco-rt[train]'"
    ) from error

logger = logging.getLogger(__name__)
UNIT_ID_COLUMN = "unit_id"
PROCESSING_MODULE = "ophys"
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NwbMetadata:
    """What the lab knows and the recording does not; every field is optional (None: left out of the file).

    DANDI asks for a subject (`subject_id`, `species`, `sex`, `age`); nwbinspector reports what is missing.
    """

    session_description: str | None = None  # None: "poco-rt stream <session> ..." from the recording
    experiment_description: str | None = None
    experimenter: tuple[str, ...] = ()  # "Last, First" each
    institution: str | None = None
    lab: str | None = None
    keywords: tuple[str, ...] = ()
    subject_id: str | None = None
    species: str | None = None  # Latin binomial ("Mus musculus") or an NCBI taxonomy URL
    sex: str | None = None  # "M", "F", "U" or "O"
    age: str | None = None  # ISO 8601 duration, e.g. "P90D"
    subject_description: str | None = None  # genotype, strain, anything else about the animal
    device: str = "unknown"  # the microscope, as a description
    indicator: str = "unknown"  # e.g. "GCaMP6f"
    location: str = "unknown"  # the imaged brain area
    excitation_lambda_nm: float = math.nan  # NaN: not known
    emission_lambda_nm: float = math.nan
    trace_unit: str = "a.u."  # the unit of the values the rig sends (raw fluorescence, dF/F, ...)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(field.default, tuple):
                ok = isinstance(value, tuple) and all(isinstance(item, str) for item in value)
                expected = "a list of strings"
            elif isinstance(field.default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                expected = "a number"
            else:
                ok = isinstance(value, str) or (value is None and field.default is None)
                expected = "a string"
            if not ok:
                raise ValueError(f"NWB metadata {field.name!r}: expected {expected}, got {value!r}")

    @classmethod
    def from_json(cls, path: Path) -> NwbMetadata:
        """The fields given in a JSON object (lists for the tuple fields); an unknown key is refused by name."""
        try:
            given = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not readable as JSON ({error})") from error
        if not isinstance(given, dict):
            raise ValueError(f"{path}: expected a JSON object of metadata fields, got {type(given).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"{path}: unknown metadata fields {unknown}; the fields are {sorted(known)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in given.items()})


@dataclasses.dataclass(frozen=True)
class NwbExport:
    """What was written: `missing_frames` counts the frame indices between the first and last that are absent."""

    path: Path
    frames: int
    units: int
    missing_frames: int


def export_nwb(
    recording_dir: Path, out: Path, *, metadata: NwbMetadata | None = None, overwrite: bool = False
) -> NwbExport:
    """Write the recording in `recording_dir` (unfinished chunks included) to the NWB file `out`.

    The file appears complete or not at all: it is written beside `out` and renamed into place.
    """
    metadata = metadata or NwbMetadata()
    if out.suffix != ".nwb":
        raise ValueError(f"{out}: an NWB file's name ends in .nwb")
    if out.exists() and not overwrite:
        raise ValueError(f"{out}: exists already; choose another path or pass overwrite (--overwrite)")
    frames = read_recorded_frames(recording_dir)
    if len(frames.frame_index) == 0:
        raise RecordingError(f"{recording_dir}: the recording holds no frames; there is nothing to export")
    unit_ids = _unit_ids(recording_dir, frames)
    nwbfile = _nwb_file(recording_dir, frames, unit_ids, metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.stem}.part.nwb")
    try:
        with NWBHDF5IO(str(partial), mode="w") as io:
            io.write(nwbfile)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    missing = int(frames.frame_index[-1] - frames.frame_index[0]) + 1 - len(frames.frame_index)
    return NwbExport(path=out, frames=len(frames.frame_index), units=len(unit_ids), missing_frames=missing)


def _unit_ids(recording_dir: Path, frames: RecordedFrames) -> list[str]:
    units = frames.values.shape[1]
    unit_ids = frames.meta.get("unit_ids")
    if unit_ids is None:
        return [f"unit{i:05d}" for i in range(units)]
    if not isinstance(unit_ids, list) or len(unit_ids) != units:
        raise RecordingError(f"{recording_dir}: meta.json's unit_ids are not a list of {units} ids (num_units)")
    return [str(unit_id) for unit_id in unit_ids]


def _nwb_file(recording_dir: Path, frames: RecordedFrames, unit_ids: list[str], metadata: NwbMetadata) -> NWBFile:
    meta = frames.meta
    session = str(meta.get("session", recording_dir.parent.name))
    origin_ns = int(frames.acquisition_time_ns[0]) // 1000 * 1000  # a datetime holds microseconds
    if np.any(np.diff(frames.acquisition_time_ns) <= 0):
        logger.warning("%s: acquisition times do not always increase; NWB readers expect them to", recording_dir)
    nwbfile = NWBFile(
        session_description=metadata.session_description
        or f"poco-rt stream {session}: the frames its real-time server accepted",
        identifier=str(uuid.uuid4()),
        session_start_time=_EPOCH + datetime.timedelta(microseconds=origin_ns // 1000),
        session_id=session,
        experiment_description=metadata.experiment_description,
        experimenter=list(metadata.experimenter) or None,
        institution=metadata.institution,
        lab=metadata.lab,
        keywords=list(metadata.keywords) or None,
        notes=json.dumps(meta, sort_keys=True),
        data_collection=_provenance(meta, recording_dir),
        source_script=f"poco-rt {poco_rt.__version__} recording export-nwb",
        source_script_file_name="poco-rt",
        subject=_subject(metadata),
    )
    ophys = nwbfile.create_processing_module(
        name=PROCESSING_MODULE, description=f"frames the poco-rt server accepted on stream {session}"
    )
    plane = _imaging_plane(nwbfile, session, metadata, frames.acquisition_time_ns)
    units = _unit_table(ophys, plane, unit_ids)
    fluorescence = Fluorescence(name="Fluorescence")
    ophys.add(fluorescence)
    traces = fluorescence.create_roi_response_series(
        name="RoiResponseSeries",
        data=H5DataIO(frames.values, compression="gzip"),  # (T, N) float32, lossless
        rois=units.create_roi_table_region(description="every unit", region=list(range(len(unit_ids)))),
        unit=metadata.trace_unit,
        description="values as the rig sent them (before the model's normalisation), one row per accepted frame",
        comments=_provenance(meta, recording_dir),
        **_times(frames.acquisition_time_ns, origin_ns),
    )
    ophys.add(
        _beside(
            traces,
            name="frame_index",
            data=frames.frame_index,
            unit="frames",
            description="the rig's frame index of each row of RoiResponseSeries; a jump is a gap (frames that "
            "never arrived, or were rejected, are not recorded)",
        )
    )
    ophys.add(
        _beside(
            traces,
            name="received_time",
            data=(frames.received_ns - origin_ns).astype(np.float64) / 1e9,
            unit="seconds",
            description="when the server received each row of RoiResponseSeries, in seconds after "
            "session_start_time on the server's clock",
        )
    )
    return nwbfile


def _imaging_plane(nwbfile: NWBFile, session: str, metadata: NwbMetadata, acquired_ns: np.ndarray) -> ImagingPlane:
    interval_ns = np.diff(acquired_ns)
    median_interval_ns = float(np.median(interval_ns)) if len(interval_ns) else 0.0
    return nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(
            name="OpticalChannel", description="as acquired by the rig", emission_lambda=metadata.emission_lambda_nm
        ),
        description=f"the plane or volume whose units poco-rt stream {session} carried",
        device=nwbfile.create_device(name="Microscope", description=metadata.device),
        excitation_lambda=metadata.excitation_lambda_nm,
        indicator=metadata.indicator,
        location=metadata.location,
        imaging_rate=1e9 / median_interval_ns if median_interval_ns > 0 else None,
    )


def _unit_table(ophys: ProcessingModule, plane: ImagingPlane, unit_ids: list[str]) -> PlaneSegmentation:
    """One ROI per unit, in column order, each carrying its id (NWB's ROI ids are integers, the bundle's are not)."""
    segmentation = ImageSegmentation(name="ImageSegmentation")
    ophys.add(segmentation)
    units = segmentation.create_plane_segmentation(
        name="PlaneSegmentation",
        imaging_plane=plane,
        description="one row per unit of the stream, in column order; the server knows units by id, not by "
        "position, so each pixel mask is one placeholder pixel (x = the row)",
    )
    units.add_column(name=UNIT_ID_COLUMN, description="the unit's id in the model bundle's calibration")
    for row, unit_id in enumerate(unit_ids):
        units.add_roi(pixel_mask=[(row, 0, 1.0)], unit_id=unit_id)
    return units


def _beside(traces: RoiResponseSeries, *, name: str, data: np.ndarray, unit: str, description: str) -> TimeSeries:
    """A (T,) series on the traces' own clock: their timestamps linked, or their starting time and rate."""
    if traces.timestamps is not None:
        return TimeSeries(name=name, data=data, unit=unit, timestamps=traces, description=description)
    return TimeSeries(
        name=name,
        data=data,
        unit=unit,
        starting_time=traces.starting_time,
        rate=traces.rate,
        description=description,
    )


def _times(acquired_ns: np.ndarray, origin_ns: int) -> dict[str, Any]:
    """Timestamps in seconds after `origin_ns`, or starting_time and rate where every interval is the same."""
    since_origin_s = (acquired_ns - origin_ns).astype(np.float64) / 1e9
    interval_ns = np.diff(acquired_ns)
    if len(interval_ns) >= 2 and interval_ns[0] > 0 and np.all(interval_ns == interval_ns[0]):
        return {"starting_time": float(since_origin_s[0]), "rate": 1e9 / float(interval_ns[0])}
    return {"timestamps": since_origin_s}


def _provenance(meta: dict[str, Any], recording_dir: Path) -> str:
    return (
        f"Recorded by the poco-rt server in {recording_dir.name}: model version {meta.get('model_version')} "
        f"(bundle {meta.get('bundle')}), calibration {meta.get('calibration')} "
        f"(hash {meta.get('calibration_hash')}); the model that was serving when the session opened."
    )


def _subject(metadata: NwbMetadata) -> Subject | None:
    fields = {
        "subject_id": metadata.subject_id,
        "species": metadata.species,
        "sex": metadata.sex,
        "age": metadata.age,
        "description": metadata.subject_description,
    }
    given = {key: value for key, value in fields.items() if value is not None}
    return Subject(**given) if given else None
