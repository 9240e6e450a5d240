"""The on-disk form of recorded frames, and its reader (numpy + json only, so fine-tuning can read it anywhere).

Legend: N units, T recorded frames.

    DATA_DIR/recordings/<session>/<UTC start>-<n>/
      meta.json              session, calibration, model version, N, unit ids, record layout
      chunk-000000.frames    complete chunk: records, flushed, fsynced, then renamed to this name
      chunk-000001.frames.part   the chunk being written (a crash leaves it; whole records still read)

A record is one accepted frame, fixed size, little-endian:
    frame_index u64, acquisition_time_ns i64, received_ns i64, values f32 x N
so a chunk is a numpy structured array on disk and a torn write loses at most its last record.
Frames filled in by the gap policy are not recorded: a recording holds what was acquired.

Two things are called a recording in this project: this one, the frames a server logged for one
session stream (read back as `RecordedFrames`), and `poco_rt.models.recording.Recording`, traces
of one or more sessions loaded from a file to train, evaluate or replay. `poco-rt recording
export-nwb` turns the first into a file the second reads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from poco_rt.errors import RecordingError

RECORDING_FORMAT_VERSION = 1
META_FILE = "meta.json"
CHUNK_SUFFIX = ".frames"
PART_SUFFIX = ".frames.part"


def record_dtype(num_units: int) -> np.dtype:
    return np.dtype(
        [
            ("frame_index", "<u8"),
            ("acquisition_time_ns", "<i8"),
            ("received_ns", "<i8"),
            ("values", "<f4", (num_units,)),
        ]
    )


def chunk_name(index: int, *, complete: bool) -> str:
    return f"chunk-{index:06d}{CHUNK_SUFFIX if complete else PART_SUFFIX}"


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    (directory / META_FILE).write_text(json.dumps({"format_version": RECORDING_FORMAT_VERSION, **meta}, indent=2))


@dataclasses.dataclass(frozen=True, eq=False)
class RecordedFrames:
    meta: dict[str, Any]
    frame_index: np.ndarray  # (T,) uint64
    acquisition_time_ns: np.ndarray  # (T,) int64
    received_ns: np.ndarray  # (T,) int64
    values: np.ndarray  # (T, N) float32, raw units as acquired


def read_recorded_frames(directory: Path, *, include_partial: bool = True) -> RecordedFrames:
    """Every record of a recording directory, in the order written; `include_partial` reads unfinished chunks too.

    Raises RecordingError for a folder that is not a recording, a meta.json that cannot be read, or a
    complete chunk that does not hold whole records (only a `.part` chunk may end in a torn record).
    """
    meta = read_meta(directory)
    dtype = record_dtype(meta["num_units"])
    files = sorted(directory.glob(f"chunk-*{CHUNK_SUFFIX}"))
    if include_partial:
        files = sorted([*files, *directory.glob(f"chunk-*{PART_SUFFIX}")], key=lambda f: f.name.split(".")[0])
    chunks = []
    for file in files:
        size = file.stat().st_size
        if file.name.endswith(CHUNK_SUFFIX) and size % dtype.itemsize:
            raise RecordingError(
                f"{file}: {size} bytes is not a whole number of {dtype.itemsize}-byte records "
                f"({meta['num_units']} units); the chunk is damaged or meta.json's num_units is wrong"
            )
        whole_records = size // dtype.itemsize  # a torn last record of a .part chunk is left out
        chunks.append(np.fromfile(file, dtype=dtype, count=whole_records))
    records = np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)
    return RecordedFrames(
        meta=meta,
        frame_index=records["frame_index"],
        acquisition_time_ns=records["acquisition_time_ns"],
        received_ns=records["received_ns"],
        values=records["values"],  # (T, N): the subarray field, (0, N) for an empty recording too
    )


def read_meta(directory: Path) -> dict[str, Any]:
    """A recording's meta.json, checked for what reading its chunks needs (format version, a positive num_units)."""
    if not directory.is_dir():
        raise RecordingError(f"{directory}: no such recording directory")
    path = directory / META_FILE
    if not path.is_file():
        raise RecordingError(
            f"{directory}: not a recording (no {META_FILE}); recordings are the folders "
            "DATA_DIR/recordings/<session>/<start>-<n>/"
        )
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordingError(f"{path}: not readable as JSON ({error})") from error
    if not isinstance(meta, dict):
        raise RecordingError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format_version") != RECORDING_FORMAT_VERSION:
        raise RecordingError(
            f"{path}: format_version {meta.get('format_version')!r}; this poco-rt reads {RECORDING_FORMAT_VERSION}"
        )
    num_units = meta.get("num_units")
    if not isinstance(num_units, int) or isinstance(num_units, bool) or num_units < 1:
        raise RecordingError(f"{path}: num_units must be a positive integer, got {num_units!r}")
    return meta


def session_recordings(recordings_dir: Path, session: str) -> list[Path]:
    """A session's recording directories, oldest first."""
    return sorted(path for path in (recordings_dir / session).glob("*") if (path / META_FILE).exists())
