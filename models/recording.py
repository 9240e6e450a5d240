"""Recordings: sessions of calcium traces, read from .npz, Flavell-style HDF5 or NWB.

Everything downstream (split, training, the simulator's output, replay) speaks one type,
`Recording`, so that a new file format is one reader here and nothing else.
The frames a server logs to disk are read by poco_rt.server.recording_files instead (as
`RecordedFrames`, one session stream each); exported to NWB, they load here like any recording.

Legend: T frames, N units.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from poco_rt.errors import RecordingError

SUPPORTED_SUFFIXES = (".npz", ".h5", ".hdf5", ".nwb")


@dataclasses.dataclass(frozen=True, eq=False)
class Session:
    """One continuous recording of one animal.

    `traces` is (T, N) float32, C-contiguous, finite. `unit_ids` names each column so that a
    session can be matched to its embeddings in a bundle.
    """

    name: str
    traces: np.ndarray
    frame_rate_hz: float
    unit_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        traces = np.ascontiguousarray(self.traces, dtype=np.float32)
        if traces.ndim != 2:
            raise RecordingError(f"session {self.name!r}: traces must be 2-D (T, N), got shape {traces.shape}")
        frames, units = traces.shape
        if frames == 0 or units == 0:
            raise RecordingError(f"session {self.name!r}: traces are empty (shape {traces.shape})")
        bad = ~np.isfinite(traces)
        if bad.any():
            frame, unit = np.argwhere(bad)[0]
            raise RecordingError(
                f"session {self.name!r}: {int(bad.sum())} non-finite values (first at frame {frame}, "
                f"unit {unit}); interpolate or drop those units before training"
            )
        if not np.isfinite(self.frame_rate_hz) or self.frame_rate_hz <= 0:
            raise RecordingError(f"session {self.name!r}: frame_rate_hz must be > 0, got {self.frame_rate_hz}")
        if len(self.unit_ids) != units:
            raise RecordingError(f"session {self.name!r}: {len(self.unit_ids)} unit ids for {units} units")
        object.__setattr__(self, "traces", traces)
        object.__setattr__(self, "frame_rate_hz", float(self.frame_rate_hz))
        object.__setattr__(self, "unit_ids", tuple(str(u) for u in self.unit_ids))

    @property
    def num_frames(self) -> int:
        return self.traces.shape[0]

    @property
    def num_units(self) -> int:
        return self.traces.shape[1]


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """A dataset: sessions from one preparation and pipeline, sharing one dataset embedding."""

    name: str
    sessions: tuple[Session, ...]

    def __post_init__(self) -> None:
        if not self.sessions:
            raise RecordingError(f"recording {self.name!r} has no sessions")
        names = [s.name for s in self.sessions]
        if len(set(names)) != len(names):
            raise RecordingError(f"recording {self.name!r}: duplicate session names {sorted(names)}")
        object.__setattr__(self, "sessions", tuple(self.sessions))

    def session(self, name: str) -> Session:
        for session in self.sessions:
            if session.name == name:
                return session
        raise RecordingError(f"recording {self.name!r} has no session {name!r}; it has {self.session_names}")

    @property
    def session_names(self) -> list[str]:
        return [s.name for s in self.sessions]

    def save_npz(self, path: Path) -> None:
        """Write the multi-session .npz layout that `load_recording` reads back."""
        arrays: dict[str, np.ndarray] = {"dataset": np.array(self.name)}
        for s in self.sessions:
            arrays[f"{s.name}/traces"] = s.traces
            arrays[f"{s.name}/frame_rate_hz"] = np.array(s.frame_rate_hz)
            arrays[f"{s.name}/unit_ids"] = np.array(s.unit_ids)
        np.savez_compressed(path, **arrays)


def default_unit_ids(count: int) -> tuple[str, ...]:
    return tuple(f"unit{i:05d}" for i in range(count))


def load_recording(path: str | Path, *, name: str | None = None) -> Recording:
    """Read a file, or every supported file under a directory (sorted), as one Recording."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
        if not files:
            raise RecordingError(f"{path}: no {'/'.join(SUPPORTED_SUFFIXES)} files in this directory")
        sessions = [s for f in files for s in _read_file(f).sessions]
        return Recording(name=name or path.name, sessions=tuple(sessions))
    if not path.exists():
        raise RecordingError(f"{path}: no such file or directory")
    recording = _read_file(path)
    return dataclasses.replace(recording, name=name) if name else recording


def load_recordings(paths: Iterable[str | Path]) -> list[Recording]:
    recordings = [load_recording(p) for p in paths]
    names = [r.name for r in recordings]
    if len(set(names)) != len(names):
        raise RecordingError(f"two --data paths give the same dataset name: {names}")
    return recordings


def _read_file(path: Path) -> Recording:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in (".h5", ".hdf5"):
        return _read_flavell_hdf5(path)
    if suffix == ".nwb":
        return _read_nwb(path)
    raise RecordingError(f"{path}: unknown recording format {suffix!r}; poco-rt reads {SUPPORTED_SUFFIXES}")


def _read_npz(path: Path) -> Recording:
    """Two layouts: one session (`traces`, `frame_rate_hz`, optional `unit_ids`), or several
    (`<session>/traces`, ...), as `Recording.save_npz` writes them."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{path}: not a readable .npz file ({exc})") from exc
    dataset = str(arrays.pop("dataset", path.stem))
    if "traces" in arrays:
        return Recording(name=dataset, sessions=(_npz_session(path, path.stem, arrays, prefix=""),))
    session_names = sorted({k.rsplit("/", 1)[0] for k in arrays if k.endswith("/traces")})
    if not session_names:
        raise RecordingError(f"{path}: no 'traces' array (keys: {sorted(arrays)})")
    sessions = tuple(_npz_session(path, s, arrays, prefix=f"{s}/") for s in session_names)
    return Recording(name=dataset, sessions=sessions)


def _npz_session(path: Path, name: str, arrays: dict[str, np.ndarray], *, prefix: str) -> Session:
    if f"{prefix}frame_rate_hz" not in arrays:
        raise RecordingError(f"{path}: session {name!r} has no '{prefix}frame_rate_hz'")
    traces = arrays[f"{prefix}traces"]
    if not np.issubdtype(traces.dtype, np.number):
        raise RecordingError(f"{path}: '{prefix}traces' has dtype {traces.dtype}, expected numbers")
    unit_ids = arrays.get(f"{prefix}unit_ids")
    units = traces.shape[1] if traces.ndim == 2 else 0
    return Session(
        name=name,
        traces=traces,
        frame_rate_hz=float(arrays[f"{prefix}frame_rate_hz"]),
        unit_ids=tuple(unit_ids.tolist()) if unit_ids is not None else default_unit_ids(units),
    )


def _read_flavell_hdf5(path: Path) -> Recording:
    """The Flavell lab's ANTSUN export: `gcamp/trace_array` (T, N) as h5py shows it, and
    `timing/timestamp_confocal` (T,) in seconds, from which the frame rate is the median step."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "gcamp/trace_array" not in f:
                raise RecordingError(f"{path}: HDF5 without 'gcamp/trace_array' (top-level keys: {sorted(f)})")
            traces = np.asarray(f["gcamp/trace_array"][()])
            stamps = np.asarray(f["timing/timestamp_confocal"][()]) if "timing/timestamp_confocal" in f else None
    except OSError as exc:
        raise RecordingError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if stamps is None or stamps.size < 2:
        raise RecordingError(f"{path}: no 'timing/timestamp_confocal' to derive the frame rate from")
    frame_rate_hz = 1.0 / float(np.median(np.diff(stamps)))
    name = path.stem.removesuffix("-data")
    units = traces.shape[1] if traces.ndim == 2 else 0
    session = Session(name=name, traces=traces, frame_rate_hz=frame_rate_hz, unit_ids=default_unit_ids(units))
    return Recording(name=path.parent.name, sessions=(session,))


def _read_nwb(path: Path) -> Recording:
    """Every `RoiResponseSeries` in the file's processing modules is one session (data (T, N))."""
    from pynwb import NWBHDF5IO
    from pynwb.ophys import RoiResponseSeries

    try:
        io = NWBHDF5IO(str(path), mode="r")
        nwbfile = io.read()
    except (OSError, ValueError, KeyError) as exc:
        raise RecordingError(f"{path}: not a readable NWB file ({exc})") from exc
    with io:
        series = [obj for obj in nwbfile.objects.values() if isinstance(obj, RoiResponseSeries)]
        if not series:
            raise RecordingError(f"{path}: NWB file without a RoiResponseSeries (Fluorescence / DfOverF)")
        sessions = tuple(_nwb_session(path, s, several=len(series) > 1) for s in series)
    return Recording(name=path.stem, sessions=sessions)


def _nwb_session(path: Path, series: object, *, several: bool) -> Session:
    traces = np.asarray(series.data[()])
    if traces.ndim == 1:
        traces = traces[:, None]
    if series.rate is not None:
        frame_rate_hz = float(series.rate)
    elif series.timestamps is not None and len(series.timestamps) > 1:
        frame_rate_hz = 1.0 / float(np.median(np.diff(np.asarray(series.timestamps[()]))))
    else:
        raise RecordingError(f"{path}: series {series.name!r} has neither a rate nor timestamps")
    unit_ids = _nwb_unit_ids(series)
    if len(unit_ids) != traces.shape[1]:
        unit_ids = default_unit_ids(traces.shape[1])
    name = f"{path.stem}-{series.name}" if several else path.stem
    return Session(name=name, traces=traces, frame_rate_hz=frame_rate_hz, unit_ids=unit_ids)


def _nwb_unit_ids(series: object) -> tuple[str, ...]:
    """The ROI table's `unit_id` column where it has one (poco-rt's NWB export writes it), else the ROI rows."""
    if series.rois is None:
        return ()
    rows = np.asarray(series.rois.data[()])
    table = series.rois.table
    if "unit_id" in table.colnames:
        return tuple(str(unit_id) for unit_id in table["unit_id"][rows.tolist()])
    return tuple(str(row) for row in rows)


def split_recording_at(recording: Recording, frame: int) -> tuple[Recording, Recording]:
    """Frames [0, frame) and [frame, T) of every session: calibrate on the first, replay the second."""
    heads, tails = [], []
    for s in recording.sessions:
        if not 0 < frame < s.num_frames:
            raise RecordingError(f"session {s.name!r} has {s.num_frames} frames; cannot split at {frame}")
        heads.append(dataclasses.replace(s, traces=s.traces[:frame]))
        tails.append(dataclasses.replace(s, traces=s.traces[frame:]))
    return dataclasses.replace(recording, sessions=tuple(heads)), dataclasses.replace(recording, sessions=tuple(tails))
