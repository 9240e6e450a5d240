"""The wire format: frames in (acquisition -> server) and forecasts out (server -> subscribers).

Both sides import this module, so it needs only the standard library and numpy (never zmq, torch
or fastapi): a message is a sequence of byte buffers and the caller owns the sockets. The byte
layout, the versioning rules, the limits and the reject reasons are specified in docs/protocol.md;
this module is their one implementation, and tests/core/test_wire.py pins it with golden bytes.

Legend: N units per frame, P forecast horizon (frames ahead).

    frame    = [header (28 bytes + session name), payload (N values: float32, float64 or uint16)]
    forecast = [topic (session name + NUL), header (56 bytes + session name + model version),
                payload ((N, P) float32)]                                                  version 1
    forecast = [topic, header (60 bytes + session name + model version + K float32 levels),
                payload ((1 + 2K, N, P) float32: values, then each level's lower and upper)]  version 2

Every integer and value is little-endian and every array C-order. Headers are fixed binary
layouts read with one `struct` call at fixed offsets, and every size is checked against the header
and the receiver's `WireLimits` before a payload byte is read, so a malformed message costs
microseconds and raises exactly one `FrameError` subclass (see poco_rt.errors), never anything
else. Encoding and decoding are pure; `decode_frame_into` writes only into the caller's buffer.
The module is one file of ~570 lines on purpose: most of it is the checks, one
per reject reason, and splitting them from the layouts they check would split the spec.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import operator
import re
import struct
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np

from poco_rt.errors import (
    BadDtype,
    BadHeader,
    BadModelVersion,
    BadSessionName,
    BadShape,
    NonFiniteValues,
    Oversized,
    PayloadSizeMismatch,
    TopicMismatch,
    UnitCountMismatch,
    UnsupportedVersion,
    WrongPartCount,
)

MAGIC = b"PCRT"
PROTOCOL_VERSION = 1  # of frames, and of forecasts without intervals
INTERVALS_VERSION = 2  # of forecasts that carry interval bounds
FORECAST_VERSIONS = (PROTOCOL_VERSION, INTERVALS_VERSION)  # what decode_forecast reads
MAX_INTERVAL_LEVELS = 16
# pyzmq's own zmq.COPY_THRESHOLD: below it, handing ZeroMQ a reference costs more than a memcpy.
ZERO_COPY_MIN_BYTES = 65_536
MAX_MODEL_VERSION_BYTES = 64
FORECAST_TOPIC_END = b"\x00"

WirePart: TypeAlias = bytes | bytearray | memoryview  # or any C-contiguous buffer, e.g. a zmq.Frame


class MessageKind(enum.IntEnum):
    """Byte 5 of every header, so that a forecast sent to the frame socket is told apart from junk."""

    FRAME = 1
    FORECAST = 2


class WireDtype(enum.IntEnum):
    """A frame payload's dtype code (header byte 6). Zero is not a code, so a zeroed header fails."""

    FLOAT32 = 1
    FLOAT64 = 2
    UINT16 = 3

    @property
    def numpy_dtype(self) -> np.dtype:
        return _NUMPY_DTYPES[self]


_NUMPY_DTYPES = {
    WireDtype.FLOAT32: np.dtype("<f4"),
    WireDtype.FLOAT64: np.dtype("<f8"),
    WireDtype.UINT16: np.dtype("<u2"),
}
_WIRE_DTYPES = {(dtype.kind, dtype.itemsize): code for code, dtype in _NUMPY_DTYPES.items()}
_FORECAST_DTYPE = np.dtype("<f4")

_PRELUDE = struct.Struct("<4sBB")  # magic, version, kind: the same in every version, so any decoder can say which
# prelude, dtype, session name bytes, frame index, acquisition time (ns), unit count
_FRAME_HEADER = struct.Struct("<4sBBBBQqI")
# prelude, session name bytes, model version bytes, frame index, acquisition, received, inferred, sent (ns), N, P
_FORECAST_HEADER = struct.Struct("<4sBBBBQqqqqII")
# version 2: the same, then the interval level count K; the K float32 levels follow the names
_FORECAST_HEADER_V2 = struct.Struct("<4sBBBBQqqqqIII")
_LEVEL = struct.Struct("<f")

# The bundle's session rule (poco_rt.bundle.check_session_name), checked at the boundary: a name
# that passes can key a ring buffer, a recording file and a sessions/<name>.npz after fine-tuning.
_SESSION_NAME = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]*")
_MODEL_VERSION = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: a version, a tag or a hash prefix
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class WireLimits:
    """What a receiver accepts; larger messages are `Oversized`. Defaults fit a whole-brain zebrafish rig."""

    max_units: int = 131_072  # N; a ring buffer of C frames costs C * N * 4 bytes per session
    max_horizon: int = 1_024  # P of a forecast
    max_payload_bytes: int = 16 * 2**20  # a float64 frame of max_units is 1 MiB; (max_units, 32) forecast 16 MiB
    max_session_name_bytes: int = 128  # the bundle's limit; the wire field holds at most 255

    def __post_init__(self) -> None:
        for field, value, high in (
            ("max_units", self.max_units, _U32_MAX),
            ("max_horizon", self.max_horizon, _U32_MAX),
            ("max_payload_bytes", self.max_payload_bytes, _U64_MAX),
            ("max_session_name_bytes", self.max_session_name_bytes, 255),
        ):
            if not 1 <= value <= high:
                raise ValueError(f"WireLimits.{field}={value} is outside [1, {high}]; pick a positive limit")


DEFAULT_LIMITS = WireLimits()


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class FrameHeader:
    session: str
    frame_index: int
    acquisition_time_ns: int  # the acquisition PC's time.time_ns(): ns since the Unix epoch
    unit_count: int  # N
    dtype: WireDtype  # what was sent; decoded values are always float32


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, eq=False)  # arrays have no single truth value
class Frame:
    header: FrameHeader
    values: np.ndarray  # (N,) float32


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ForecastHeader:
    """Server times are the server's time.time_ns() so that they compare across machines with synced clocks."""

    session: str
    frame_index: int  # the frame this forecast was made after; it covers frame_index + 1 .. frame_index + P
    acquisition_time_ns: int  # that frame's acquisition time, echoed, so a subscriber can compute the age
    model_version: str
    received_ns: int  # the frame's message was taken off the server's socket
    inferred_ns: int  # the forecast came out of the engine
    sent_ns: int  # the forecast was handed to the publishing socket
    unit_count: int  # N
    horizon: int  # P


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, eq=False)  # arrays have no single truth value
class ForecastIntervals:
    """Bounds around a forecast at each coverage level: the target lies in [lower, upper] with that probability."""

    levels: tuple[float, ...]  # (L,) increasing, each in (0, 1)
    lower: np.ndarray  # (L, N, P) float32, raw units
    upper: np.ndarray  # (L, N, P) float32

    def bounds(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper), each (N, P), of `level`; ValueError naming the levels carried if it is not one."""
        for index, carried in enumerate(self.levels):
            if math.isclose(carried, level, abs_tol=1e-6):
                return self.lower[index], self.upper[index]
        raise ValueError(f"no {level} interval: this forecast carries levels {list(self.levels)}")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, eq=False)  # arrays have no single truth value
class Forecast:
    header: ForecastHeader
    values: np.ndarray  # (N, P) float32
    intervals: ForecastIntervals | None = None  # version 2 messages only


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedMessage:
    """Parts for `socket.send_multipart(message.parts, copy=message.copy)`.

    The payload part is a view of the encoded array, not a copy: with `copy=False` (payloads of
    ZERO_COPY_MIN_BYTES and more) ZeroMQ reads it after `send_multipart` returns, so the array must
    not be written until the message is out (`track=True` tells when). Small parts are copied by
    pyzmq even when `copy=False`.
    """

    parts: tuple[bytes | memoryview, ...]
    copy: bool


def encode_frame(
    values: np.ndarray,
    *,
    session: str,
    frame_index: int,
    acquisition_time_ns: int,
    limits: WireLimits = DEFAULT_LIMITS,
) -> EncodedMessage:
    """One frame (N,) of float32, float64 or uint16 as [header, payload], sent in its own dtype.

    The encoder refuses, with the same `FrameError` a receiver with the same limits would raise,
    anything the receiver would reject, so a publisher finds its mistake at the first frame.
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise BadShape(f"frame values have shape {values.shape}; a frame is one (N,) vector of unit values")
    dtype = _WIRE_DTYPES.get((values.dtype.kind, values.dtype.itemsize))
    if dtype is None:
        raise BadDtype(f"frame dtype {values.dtype} is not carried; send float32 (native), float64 or uint16")
    name = _check_session_name(session.encode("utf-8"), limits)
    unit_count = _check_units(values.shape[0], limits)
    _check_payload_limit(unit_count * dtype.numpy_dtype.itemsize, limits)
    index = _checked_int("frame_index", frame_index, 0, _U64_MAX)
    (time_ns,) = _checked_ns(acquisition_time_ns=acquisition_time_ns)
    header = _FRAME_HEADER.pack(
        MAGIC, PROTOCOL_VERSION, MessageKind.FRAME, dtype, len(name), index, time_ns, unit_count
    )
    payload = _byte_view(np.ascontiguousarray(values, dtype=dtype.numpy_dtype))
    return EncodedMessage((header + name, payload), copy=payload.nbytes < ZERO_COPY_MIN_BYTES)


def decode_frame_header(parts: Sequence[WirePart], *, limits: WireLimits = DEFAULT_LIMITS) -> FrameHeader:
    """Check a frame message in full except its values, without reading the payload.

    The server calls this first to learn the session, picks that session's buffer slot, then
    calls `decode_frame_into` with the header it got here.
    """
    header, payload = _split(parts, MessageKind.FRAME, limits)
    return _read_frame_header(header, payload, limits)


def decode_frame_into(
    parts: Sequence[WirePart],
    out: np.ndarray,
    *,
    limits: WireLimits = DEFAULT_LIMITS,
    header: FrameHeader | None = None,
) -> Frame:
    """Decode a frame's values into `out`, a preallocated (N,) float32 array; returns a Frame holding `out`.

    Nothing of size N is allocated for any dtype: float64 and uint16 are converted while copying,
    float64 beyond float32's range becoming +-inf (which `all_finite` then reports). Decode into a
    slot that is kept only once the frame has also passed the server's own checks. `header`, if
    given, is what `decode_frame_header` returned for these same parts (with the same limits): the
    header is then not read and checked a second time.
    """
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 1 or not out.flags.writeable:
        got = f"{getattr(out, 'dtype', type(out).__name__)} of shape {getattr(out, 'shape', None)}"
        raise ValueError(f"out must be a writeable (N,) float32 numpy array; got {got}")
    if header is None:
        header_bytes, payload = _split(parts, MessageKind.FRAME, limits)
        frame_header = _read_frame_header(header_bytes, payload, limits)
    else:
        frame_header, payload = header, memoryview(parts[1]).cast("B")
    if out.shape[0] != frame_header.unit_count:
        raise UnitCountMismatch(
            f"frame {frame_header.frame_index} of session {frame_header.session!r} has "
            f"{frame_header.unit_count} units; the buffer it is decoded into holds {out.shape[0]}"
        )
    wire_values = np.frombuffer(payload, dtype=frame_header.dtype.numpy_dtype, count=frame_header.unit_count)
    with np.errstate(over="ignore"):  # float64 -> float32 overflow is +-inf by design, not a warning
        np.copyto(out, wire_values, casting="same_kind")
    return Frame(header=frame_header, values=out)


def decode_frame(parts: Sequence[WirePart], *, limits: WireLimits = DEFAULT_LIMITS) -> Frame:
    """Decode a frame into a new (N,) float32 array (for tools and tests; the server uses `decode_frame_into`)."""
    header = decode_frame_header(parts, limits=limits)
    return decode_frame_into(parts, np.empty(header.unit_count, dtype=np.float32), limits=limits, header=header)


def all_finite(values: np.ndarray) -> bool:
    """Whether a decoded frame holds no NaN or inf: min and max carry both, so nothing of size N is allocated."""
    if values.size == 0:
        return True
    return math.isfinite(values.min()) and math.isfinite(values.max())


def require_finite(frame: Frame) -> None:
    """Raise NonFiniteValues naming how many values are NaN or inf and the first such unit (for a rejecting policy)."""
    if all_finite(frame.values):
        return
    bad_units = np.flatnonzero(~np.isfinite(frame.values))
    raise NonFiniteValues(
        f"frame {frame.header.frame_index} of session {frame.header.session!r} has {bad_units.size} "
        f"NaN or inf values (first at unit {bad_units[0]})"
    )


def forecast_topic(session: str, *, limits: WireLimits = DEFAULT_LIMITS) -> bytes:
    """The first part of a session's forecasts; `sub.subscribe(forecast_topic("rig1"))` gets rig1 only.

    ZeroMQ filters by prefix: the NUL after the name keeps "rig1" from also matching "rig10".
    """
    return _check_session_name(session.encode("utf-8"), limits) + FORECAST_TOPIC_END


def encode_forecast(
    values: np.ndarray,
    *,
    session: str,
    frame_index: int,
    acquisition_time_ns: int,
    model_version: str,
    received_ns: int,
    inferred_ns: int,
    sent_ns: int,
    intervals: ForecastIntervals | None = None,
    limits: WireLimits = DEFAULT_LIMITS,
) -> EncodedMessage:
    """One (N, P) forecast as [topic, header, payload]; values must be float32 (any byte order or layout).

    Without `intervals` the message is version 1, byte for byte what every subscriber reads; with
    them (any number of levels, zero included) it is version 2, which needs a decoder that reads it.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise BadShape(f"forecast values have shape {values.shape}; a forecast is (N, P): units by horizon")
    if values.dtype.kind != "f" or values.dtype.itemsize != 4:
        raise BadDtype(f"forecast dtype {values.dtype} is not float32; cast with .astype(np.float32)")
    name = _check_session_name(session.encode("utf-8"), limits)
    version = _check_model_version(model_version.encode("utf-8"))
    unit_count = _check_units(values.shape[0], limits)
    horizon = _check_horizon(values.shape[1], limits)
    blocks = 1 if intervals is None else 1 + 2 * len(_check_levels(intervals.levels))
    _check_payload_limit(blocks * unit_count * horizon * _FORECAST_DTYPE.itemsize, limits)
    index = _checked_int("frame_index", frame_index, 0, _U64_MAX)
    times_ns = _checked_ns(
        acquisition_time_ns=acquisition_time_ns, received_ns=received_ns, inferred_ns=inferred_ns, sent_ns=sent_ns
    )
    fields = (len(name), len(version), index, *times_ns, unit_count, horizon)
    topic = name + FORECAST_TOPIC_END
    if intervals is None:
        header = _FORECAST_HEADER.pack(MAGIC, PROTOCOL_VERSION, MessageKind.FORECAST, *fields)
        payload = _byte_view(np.ascontiguousarray(values, dtype=_FORECAST_DTYPE))
        return EncodedMessage((topic, header + name + version, payload), copy=payload.nbytes < ZERO_COPY_MIN_BYTES)
    levels = len(intervals.levels)
    for field in ("lower", "upper"):
        if np.shape(getattr(intervals, field)) != (levels, unit_count, horizon):
            raise BadShape(
                f"interval {field} bounds have shape {np.shape(getattr(intervals, field))}; "
                f"with {levels} levels they are (L, N, P) = {(levels, unit_count, horizon)}"
            )
    header = _FORECAST_HEADER_V2.pack(MAGIC, INTERVALS_VERSION, MessageKind.FORECAST, *fields, levels)
    level_bytes = b"".join(_LEVEL.pack(level) for level in intervals.levels)
    stacked = np.empty((blocks, unit_count, horizon), dtype=_FORECAST_DTYPE)  # values, lower 1, upper 1, ...
    stacked[0] = values
    stacked[1::2] = intervals.lower
    stacked[2::2] = intervals.upper
    payload = _byte_view(stacked)
    parts = (topic, header + name + version + level_bytes, payload)
    return EncodedMessage(parts, copy=payload.nbytes < ZERO_COPY_MIN_BYTES)


def decode_forecast(parts: Sequence[WirePart], *, limits: WireLimits = DEFAULT_LIMITS) -> Forecast:
    """Decode [topic, header, payload], version 1 or 2, into a Forecast whose float32 arrays own their memory."""
    topic, header, payload = _split(parts, MessageKind.FORECAST, limits)
    version = _read_prelude(header, MessageKind.FORECAST, _FORECAST_HEADER, FORECAST_VERSIONS)
    layout = _FORECAST_HEADER if version == PROTOCOL_VERSION else _FORECAST_HEADER_V2
    if header.nbytes < layout.size:
        raise BadHeader(f"forecast header is {header.nbytes} bytes; its fixed part alone is {layout.size}")
    fields = layout.unpack_from(header)
    name_bytes, version_bytes, frame_index, acquisition_time_ns, received_ns, inferred_ns, sent_ns = fields[3:10]
    unit_count, horizon = fields[10:12]
    level_count = fields[12] if version == INTERVALS_VERSION else 0
    if level_count > MAX_INTERVAL_LEVELS:
        raise Oversized(f"interval level count {level_count} is over the limit of {MAX_INTERVAL_LEVELS}")
    names_at = layout.size
    levels_at = names_at + name_bytes + version_bytes
    _check_header_length(header, levels_at + level_count * _LEVEL.size, MessageKind.FORECAST)
    name = header[names_at : names_at + name_bytes].tobytes()
    session = _check_session_name(name, limits).decode("ascii")
    model_version = _check_model_version(header[names_at + name_bytes : levels_at].tobytes()).decode("ascii")
    levels = _check_levels(
        tuple(round(_LEVEL.unpack_from(header, levels_at + 4 * i)[0], 6) for i in range(level_count))
    )  # float32 on the wire: 0.8 reads back as 0.8
    _check_units(unit_count, limits)
    _check_horizon(horizon, limits)
    blocks = 1 + 2 * level_count
    _check_payload_size(payload, blocks * unit_count * horizon, _FORECAST_DTYPE, limits, "forecast")
    if topic != name + FORECAST_TOPIC_END:
        raise TopicMismatch(
            f"forecast topic {topic.tobytes()[:64]!r} does not name the header's session "
            f"(expected {name + FORECAST_TOPIC_END!r})"
        )
    stacked = np.frombuffer(payload, dtype=_FORECAST_DTYPE).reshape(blocks, unit_count, horizon)
    forecast_header = ForecastHeader(
        session=session,
        frame_index=frame_index,
        acquisition_time_ns=acquisition_time_ns,
        model_version=model_version,
        received_ns=received_ns,
        inferred_ns=inferred_ns,
        sent_ns=sent_ns,
        unit_count=unit_count,
        horizon=horizon,
    )
    intervals = None
    if version == INTERVALS_VERSION:
        owned = stacked.astype(np.float32)  # native byte order, its own memory
        intervals = ForecastIntervals(levels=levels, lower=owned[1::2], upper=owned[2::2])
    return Forecast(header=forecast_header, values=stacked[0].astype(np.float32), intervals=intervals)


def pack_parts(parts: Sequence[WirePart]) -> bytes:
    """A message's parts as one WebSocket binary message: each part after its u32 little-endian length.

    Here, beside the ZeroMQ form, because both ends use it: the server's WebSocket and the clients'.
    """
    return b"".join(len(part).to_bytes(4, "little") + bytes(part) for part in parts)


def unpack_parts(message: bytes) -> list[bytes]:
    """The inverse of `pack_parts`: the parts to give `decode_forecast`."""
    parts, offset = [], 0
    while offset < len(message):
        length = int.from_bytes(message[offset : offset + 4], "little")
        parts.append(message[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return parts


def _split(parts: Sequence[WirePart], kind: MessageKind, limits: WireLimits) -> tuple[memoryview, ...]:
    """Byte views of the parts, after the two checks that need no parsing: part count and payload size."""
    expected = 2 if kind is MessageKind.FRAME else 3
    if len(parts) != expected:
        layout = "header, payload" if kind is MessageKind.FRAME else "topic, header, payload"
        raise WrongPartCount(f"a {kind.name.lower()} message has {expected} parts ({layout}); got {len(parts)}")
    views = tuple(memoryview(part).cast("B") for part in parts)
    if views[-1].nbytes > limits.max_payload_bytes:
        raise Oversized(
            f"{kind.name.lower()} payload is {views[-1].nbytes} bytes; the limit is "
            f"max_payload_bytes={limits.max_payload_bytes}"
        )
    return views


def _read_prelude(
    header: memoryview, kind: MessageKind, layout: struct.Struct, versions: tuple[int, ...] = (PROTOCOL_VERSION,)
) -> int:
    """Check magic, version and kind, then that the fixed part of the header is all there; returns the version."""
    if header.nbytes < _PRELUDE.size:
        raise BadHeader(f"{kind.name.lower()} header is {header.nbytes} bytes; not even the 6-byte prelude")
    magic, version, found_kind = _PRELUDE.unpack_from(header)
    if magic != MAGIC:
        raise BadHeader(f"header starts with {magic!r}, not {MAGIC!r}: not a poco-rt message")
    if version not in versions:
        readable = " and ".join(str(known) for known in versions)
        raise UnsupportedVersion(
            f"protocol version {version} is not supported (this side reads version{'s' * (len(versions) > 1)} "
            f"{readable}); run the same poco-rt release on both sides"
        )
    if found_kind != kind:
        raise BadHeader(f"message kind {found_kind} where a {kind.name.lower()} (kind {kind.value}) was expected")
    if header.nbytes < layout.size:
        raise BadHeader(f"{kind.name.lower()} header is {header.nbytes} bytes; its fixed part alone is {layout.size}")
    return version


def _read_frame_header(header: memoryview, payload: memoryview, limits: WireLimits) -> FrameHeader:
    _read_prelude(header, MessageKind.FRAME, _FRAME_HEADER)
    _, _, _, dtype_code, name_bytes, frame_index, acquisition_time_ns, unit_count = _FRAME_HEADER.unpack_from(header)
    _check_header_length(header, _FRAME_HEADER.size + name_bytes, MessageKind.FRAME)
    if dtype_code not in _NUMPY_DTYPES:
        raise BadDtype(f"dtype code {dtype_code} is not one of 1 (float32), 2 (float64), 3 (uint16)")
    dtype = WireDtype(dtype_code)
    session = _check_session_name(header[_FRAME_HEADER.size :].tobytes(), limits).decode("ascii")
    _check_units(unit_count, limits)
    _check_payload_size(payload, unit_count, dtype.numpy_dtype, limits, "frame")
    return FrameHeader(
        session=session,
        frame_index=frame_index,
        acquisition_time_ns=acquisition_time_ns,
        unit_count=unit_count,
        dtype=dtype,
    )


def _check_header_length(header: memoryview, expected: int, kind: MessageKind) -> None:
    if header.nbytes != expected:
        raise BadHeader(f"{kind.name.lower()} header is {header.nbytes} bytes; its length fields make it {expected}")


def _check_session_name(name: bytes, limits: WireLimits) -> bytes:
    """The name's UTF-8 bytes if it is a valid session name (then it is ASCII, so bytes and str agree)."""
    if not name:
        raise BadSessionName("session name is empty; name the recording session, e.g. 'rig1'")
    if len(name) > limits.max_session_name_bytes:
        raise BadSessionName(
            f"session name is {len(name)} bytes; the limit is max_session_name_bytes={limits.max_session_name_bytes}"
        )
    if _SESSION_NAME.fullmatch(name) is None:
        raise BadSessionName(
            f"session name {name!r} is not valid: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def _check_model_version(version: bytes) -> bytes:
    if not 1 <= len(version) <= MAX_MODEL_VERSION_BYTES or _MODEL_VERSION.fullmatch(version) is None:
        raise BadModelVersion(
            f"model version {version[: MAX_MODEL_VERSION_BYTES + 1]!r} must be 1-{MAX_MODEL_VERSION_BYTES} "
            "visible ASCII characters (no spaces)"
        )
    return version


def _check_levels(levels: tuple[float, ...]) -> tuple[float, ...]:
    """Interval levels: at most MAX_INTERVAL_LEVELS, each strictly between 0 and 1, strictly increasing."""
    if len(levels) > MAX_INTERVAL_LEVELS:
        raise Oversized(f"interval level count {len(levels)} is over the limit of {MAX_INTERVAL_LEVELS}")
    for index, level in enumerate(levels):
        if not 0.0 < level < 1.0 or (index and level <= levels[index - 1]):
            raise BadHeader(
                f"interval levels {[round(known, 6) for known in levels]} must each be in (0, 1) and increasing"
            )
    return levels


def _check_units(unit_count: int, limits: WireLimits) -> int:
    if unit_count == 0:
        raise BadShape("unit count is 0; a message carries at least one unit")
    if unit_count > limits.max_units:
        raise Oversized(f"unit count {unit_count} is over the limit max_units={limits.max_units}")
    return unit_count


def _check_horizon(horizon: int, limits: WireLimits) -> int:
    if horizon == 0:
        raise BadShape("forecast horizon is 0; a forecast covers at least one frame ahead")
    if horizon > limits.max_horizon:
        raise Oversized(f"forecast horizon {horizon} is over the limit max_horizon={limits.max_horizon}")
    return horizon


def _check_payload_limit(payload_bytes: int, limits: WireLimits) -> None:
    if payload_bytes > limits.max_payload_bytes:
        raise Oversized(
            f"payload of {payload_bytes} bytes is over the limit max_payload_bytes={limits.max_payload_bytes}"
        )


def _check_payload_size(payload: memoryview, count: int, dtype: np.dtype, limits: WireLimits, kind: str) -> None:
    """The header's declared size against the limit first (it may be a lie), then against the actual payload."""
    expected = count * dtype.itemsize
    _check_payload_limit(expected, limits)
    if payload.nbytes != expected:
        raise PayloadSizeMismatch(
            f"{kind} payload is {payload.nbytes} bytes; the header declares "
            f"{count} {dtype.name} values = {expected} bytes"
        )


def _checked_ns(**times_ns: int) -> list[int]:
    return [_checked_int(field, value, _I64_MIN, _I64_MAX) for field, value in times_ns.items()]


def _checked_int(field: str, value: int, low: int, high: int) -> int:
    number = operator.index(value)
    if not low <= number <= high:
        raise ValueError(f"{field}={number} is outside [{low}, {high}], the range of its wire field")
    return number


def _byte_view(array: np.ndarray) -> memoryview:
    """A flat byte view of a C-contiguous array (a memoryview cast would refuse non-native byte orders)."""
    return memoryview(array.reshape(-1).view(np.uint8))
