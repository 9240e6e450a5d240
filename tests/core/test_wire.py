"""The wire format against its spec (docs/protocol.md): golden bytes, round trips, every reject reason.

The golden messages are hex literals written from the spec's layout tables, not from the encoder,
and the malformed cases are edits of those bytes, so the decoder is checked against the document.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from poco_rt import wire
from poco_rt.bundle import check_session_name
from poco_rt.errors import (
    BadDtype,
    BadHeader,
    BadModelVersion,
    BadSessionName,
    BadShape,
    FrameError,
    NonFiniteValues,
    Oversized,
    PayloadSizeMismatch,
    PocoRtError,
    RejectReason,
    TopicMismatch,
    UnitCountMismatch,
    UnsupportedVersion,
    WrongPartCount,
)
from tests.core.wire_examples import (
    ACQUISITION_TIME_NS,
    FORECAST_TIMES_NS,
    FUZZ,
    GOLDEN_FORECAST,
    GOLDEN_FRAME,
    edited,
    frame_like,
    hex_bytes_of,
)

NAME_RULE = "use letters, digits, '.', '_' and '-', starting with a letter or digit"


def encode_rig1(values: np.ndarray, **overrides) -> wire.EncodedMessage:
    return wire.encode_frame(
        values, **{"session": "rig1", "frame_index": 7, "acquisition_time_ns": ACQUISITION_TIME_NS, **overrides}
    )


def frame_with(
    *, header_fields: dict[str, int] | None = None, session: bytes = b"rig1", payload: bytes | None = None
) -> list[bytes]:
    """A frame header packed field by field from the spec table (offsets 0-27, then the name)."""
    fields = {"version": 1, "kind": 1, "dtype": 1, "name_length": len(session), "units": 3, **(header_fields or {})}
    header = struct.pack(
        "<4sBBBBQqI",
        b"PCRT",
        fields["version"],
        fields["kind"],
        fields["dtype"],
        fields["name_length"],
        7,
        ACQUISITION_TIME_NS,
        fields["units"],
    )
    return [header + session, GOLDEN_FRAME[1] if payload is None else payload]


# --- golden bytes --------------------------------------------------------------------------------


def test_frame_encoding_is_the_golden_bytes():
    message = encode_rig1(np.array([1.0, -2.5, 0.5], dtype=np.float32))
    assert [bytes(part) for part in message.parts] == GOLDEN_FRAME
    assert message.copy is True


def test_golden_frame_decodes_to_its_fields():
    frame = wire.decode_frame(GOLDEN_FRAME)
    assert frame.header == wire.FrameHeader(
        session="rig1",
        frame_index=7,
        acquisition_time_ns=ACQUISITION_TIME_NS,
        unit_count=3,
        dtype=wire.WireDtype.FLOAT32,
    )
    np.testing.assert_array_equal(frame.values, np.array([1.0, -2.5, 0.5], dtype=np.float32))


def test_forecast_encoding_is_the_golden_bytes():
    message = wire.encode_forecast(
        np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32),
        session="rig1",
        frame_index=7,
        acquisition_time_ns=ACQUISITION_TIME_NS,
        model_version="v1",
        **FORECAST_TIMES_NS,
    )
    assert [bytes(part) for part in message.parts] == GOLDEN_FORECAST
    assert message.copy is True


def test_golden_forecast_decodes_to_its_fields():
    forecast = wire.decode_forecast(GOLDEN_FORECAST)
    assert forecast.header == wire.ForecastHeader(
        session="rig1",
        frame_index=7,
        acquisition_time_ns=ACQUISITION_TIME_NS,
        model_version="v1",
        unit_count=2,
        horizon=3,
        **FORECAST_TIMES_NS,
    )
    np.testing.assert_array_equal(forecast.values, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    assert forecast.values.flags.owndata and forecast.values.flags.writeable


def test_worked_examples_in_the_spec_are_the_golden_bytes():
    spec = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    frame_example, forecast_example = (
        spec.split(f"## Worked example: {name}")[1].split("```")[1] for name in ("one frame", "one forecast")
    )
    assert hex_bytes_of(frame_example) == b"".join(GOLDEN_FRAME)
    assert hex_bytes_of(forecast_example) == b"".join(GOLDEN_FORECAST)


# --- round trips and dtype conversion ------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "wire_dtype"),
    [(np.float32, wire.WireDtype.FLOAT32), (np.float64, wire.WireDtype.FLOAT64), (np.uint16, wire.WireDtype.UINT16)],
)
def test_frame_round_trips_each_dtype_to_float32(dtype, wire_dtype):
    values = np.array([0, 1, 2, 65_535, 300], dtype=dtype)
    message = encode_rig1(values)
    assert len(message.parts[1]) == values.size * np.dtype(dtype).itemsize  # sent in its own dtype
    frame = wire.decode_frame(message.parts)
    assert frame.header.dtype is wire_dtype
    assert frame.values.dtype == np.float32
    np.testing.assert_array_equal(frame.values, [0, 1, 2, 65_535, 300])


def test_float64_beyond_float32_range_decodes_to_inf_without_a_warning():
    frame = wire.decode_frame(encode_rig1(np.array([1e300, -1e300, 1.5])).parts)
    np.testing.assert_array_equal(frame.values, [np.inf, -np.inf, 1.5])
    assert not wire.all_finite(frame.values)


def test_big_endian_and_strided_input_encode_to_the_same_bytes():
    expected = GOLDEN_FRAME[1]
    big_endian = np.array([1.0, -2.5, 0.5], dtype=">f4")
    strided = np.array([1.0, 9.0, -2.5, 9.0, 0.5, 9.0], dtype=np.float32)[::2]
    assert bytes(encode_rig1(big_endian).parts[1]) == expected
    assert bytes(encode_rig1(strided).parts[1]) == expected


def test_transposed_forecast_is_sent_in_c_order():
    values = np.array([[1, 4], [2, 5], [3, 6]], dtype=np.float32).T  # (2, 3), Fortran-ordered
    message = wire.encode_forecast(
        values,
        session="rig1",
        frame_index=7,
        acquisition_time_ns=ACQUISITION_TIME_NS,
        model_version="v1",
        **FORECAST_TIMES_NS,
    )
    assert bytes(message.parts[2]) == GOLDEN_FORECAST[2]


def test_large_payloads_are_sent_zero_copy_and_small_ones_copied():
    large = np.zeros(wire.ZERO_COPY_MIN_BYTES // 4, dtype=np.float32)
    message = encode_rig1(large)
    assert message.copy is False
    assert np.shares_memory(np.frombuffer(message.parts[1], dtype=np.uint8), large)  # no copy made to send it
    assert encode_rig1(large[:-1]).copy is True


# --- decoding into a preallocated buffer ---------------------------------------------------------


def test_decode_into_writes_the_callers_buffer_and_returns_it():
    out = np.full(3, np.nan, dtype=np.float32)
    frame = wire.decode_frame_into(GOLDEN_FRAME, out)
    assert frame.values is out
    np.testing.assert_array_equal(out, [1.0, -2.5, 0.5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_decode_into_with_the_header_already_read_decodes_the_same_values(dtype):
    parts = encode_rig1(np.array([3.0, 0.0, 7.0], dtype=dtype)).parts
    header = wire.decode_frame_header(parts)
    once, twice = np.empty(3, np.float32), np.empty(3, np.float32)
    frame = wire.decode_frame_into(parts, once, header=header)
    assert frame.header is header
    assert wire.decode_frame_into(parts, twice).header == header
    np.testing.assert_array_equal(once, twice)
    np.testing.assert_array_equal(once, [3.0, 0.0, 7.0])
    with pytest.raises(UnitCountMismatch):
        wire.decode_frame_into(parts, np.empty(4, np.float32), header=header)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_decode_into_allocates_nothing_of_frame_size(dtype):
    unit_count = 60_000  # 240 kB of float32 (and within uint16): a per-frame array would dwarf the allowance
    parts = [bytes(part) for part in encode_rig1(np.arange(unit_count, dtype=dtype)).parts]
    out = np.empty(unit_count, dtype=np.float32)
    tracemalloc.start()
    try:
        wire.decode_frame_into(parts, out)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 16_384
    assert out[-1] == unit_count - 1


def read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    "out",
    [np.empty(3, np.float64), np.empty((3, 1), np.float32), read_only(np.empty(3, np.float32)), [0.0, 0.0, 0.0]],
    ids=["float64", "2-d", "read-only", "list"],
)
def test_decode_into_a_wrong_buffer_is_a_programming_error_not_a_reject(out):
    with pytest.raises(ValueError, match=r"^out must be a writeable \(N,\) float32 numpy array; got ") as caught:
        wire.decode_frame_into(GOLDEN_FRAME, out)
    assert not isinstance(caught.value, FrameError)


# --- one test per reject reason ------------------------------------------------------------------

# Written out, not read off the classes, so that a class counted under the wrong reason fails here.
EXPECTED_REASON = {
    WrongPartCount: RejectReason.WRONG_PART_COUNT,
    BadHeader: RejectReason.BAD_HEADER,
    UnsupportedVersion: RejectReason.UNSUPPORTED_VERSION,
    BadDtype: RejectReason.BAD_DTYPE,
    BadSessionName: RejectReason.BAD_SESSION_NAME,
    BadModelVersion: RejectReason.BAD_MODEL_VERSION,
    BadShape: RejectReason.BAD_SHAPE,
    Oversized: RejectReason.OVERSIZED,
    PayloadSizeMismatch: RejectReason.PAYLOAD_SIZE_MISMATCH,
    TopicMismatch: RejectReason.TOPIC_MISMATCH,
    UnitCountMismatch: RejectReason.UNIT_COUNT_MISMATCH,
    NonFiniteValues: RejectReason.NON_FINITE,
}

DECODE_FRAME_REJECTS = [
    ("one-part", [GOLDEN_FRAME[0]], WrongPartCount, "a frame message has 2 parts (header, payload); got 1"),
    ("three-parts", [*GOLDEN_FRAME, b""], WrongPartCount, "a frame message has 2 parts (header, payload); got 3"),
    ("prelude-cut", [b"PCRT\x01", GOLDEN_FRAME[1]], BadHeader, "frame header is 5 bytes; not even the 6-byte prelude"),
    (
        "bad-magic",
        edited(GOLDEN_FRAME, 0, 0, b"PCRX"),
        BadHeader,
        "header starts with b'PCRX', not b'PCRT': not a poco-rt message",
    ),
    (
        "version-2",
        edited(GOLDEN_FRAME, 0, 4, b"\x02"),
        UnsupportedVersion,
        "protocol version 2 is not supported (this side reads version 1); run the same poco-rt release on both sides",
    ),
    (
        "forecast-kind",
        [GOLDEN_FORECAST[1], GOLDEN_FRAME[1]],
        BadHeader,
        "message kind 2 where a frame (kind 1) was expected",
    ),
    (
        "fixed-part-cut",
        [GOLDEN_FRAME[0][:20], GOLDEN_FRAME[1]],
        BadHeader,
        "frame header is 20 bytes; its fixed part alone is 28",
    ),
    (
        "trailing-byte",
        [GOLDEN_FRAME[0] + b"x", GOLDEN_FRAME[1]],
        BadHeader,
        "frame header is 33 bytes; its length fields make it 32",
    ),
    (
        "name-length-lies",
        frame_with(header_fields={"name_length": 5}),
        BadHeader,
        "frame header is 32 bytes; its length fields make it 33",
    ),
    (
        "dtype-0",
        frame_with(header_fields={"dtype": 0}),
        BadDtype,
        "dtype code 0 is not one of 1 (float32), 2 (float64), 3 (uint16)",
    ),
    (
        "dtype-9",
        frame_with(header_fields={"dtype": 9}),
        BadDtype,
        "dtype code 9 is not one of 1 (float32), 2 (float64), 3 (uint16)",
    ),
    (
        "empty-session",
        frame_with(session=b""),
        BadSessionName,
        "session name is empty; name the recording session, e.g. 'rig1'",
    ),
    (
        "long-session",
        frame_with(session=b"r" * 129),
        BadSessionName,
        "session name is 129 bytes; the limit is max_session_name_bytes=128",
    ),
    (
        "path-session",
        frame_with(session=b"../x"),
        BadSessionName,
        f"session name b'../x' is not valid: {NAME_RULE}",
    ),
    (
        "non-ascii-session",
        frame_with(session="ü".encode()),
        BadSessionName,
        f"session name b'\\xc3\\xbc' is not valid: {NAME_RULE}",
    ),
    (
        "zero-units",
        frame_with(header_fields={"units": 0}, payload=b""),
        BadShape,
        "unit count is 0; a message carries at least one unit",
    ),
    (
        "too-many-units",
        frame_with(header_fields={"units": 131_073}),
        Oversized,
        "unit count 131073 is over the limit max_units=131072",
    ),
    (
        "payload-short",
        [GOLDEN_FRAME[0], GOLDEN_FRAME[1][:-1]],
        PayloadSizeMismatch,
        "frame payload is 11 bytes; the header declares 3 float32 values = 12 bytes",
    ),
    (
        "payload-float64-declared",
        frame_with(header_fields={"dtype": 2}),
        PayloadSizeMismatch,
        "frame payload is 12 bytes; the header declares 3 float64 values = 24 bytes",
    ),
]


@pytest.mark.parametrize(
    ("parts", "error", "message"), [case[1:] for case in DECODE_FRAME_REJECTS], ids=[c[0] for c in DECODE_FRAME_REJECTS]
)
def test_malformed_frame_is_rejected_with_its_reason(parts, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$") as caught:
        wire.decode_frame(parts)
    assert type(caught.value) is error
    assert caught.value.reason is EXPECTED_REASON[error]
    # decode_frame_header stops at the same check: the server's first call counts the same reason
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        wire.decode_frame_header(parts)


def test_payload_over_the_byte_limit_is_rejected_before_the_header_is_read():
    limits = wire.WireLimits(max_payload_bytes=8)
    with pytest.raises(Oversized, match=r"^frame payload is 12 bytes; the limit is max_payload_bytes=8$") as caught:
        wire.decode_frame([b"junk", GOLDEN_FRAME[1]], limits=limits)
    assert caught.value.reason is RejectReason.OVERSIZED


def test_declared_payload_over_the_byte_limit_is_oversized_even_when_the_bytes_are_short():
    limits = wire.WireLimits(max_payload_bytes=16)
    parts = frame_with(header_fields={"dtype": 2, "units": 3})  # declares 24 bytes, carries 12
    with pytest.raises(Oversized, match=r"^payload of 24 bytes is over the limit max_payload_bytes=16$"):
        wire.decode_frame(parts, limits=limits)


def test_frame_with_another_unit_count_than_the_buffer_is_rejected():
    with pytest.raises(
        UnitCountMismatch, match=r"^frame 7 of session 'rig1' has 3 units; the buffer it is decoded into holds 4$"
    ) as caught:
        wire.decode_frame_into(GOLDEN_FRAME, np.zeros(4, dtype=np.float32))
    assert caught.value.reason is RejectReason.UNIT_COUNT_MISMATCH


def test_session_name_limit_is_a_parameter():
    limits = wire.WireLimits(max_session_name_bytes=3)
    with pytest.raises(BadSessionName, match=r"^session name is 4 bytes; the limit is max_session_name_bytes=3$"):
        wire.decode_frame(GOLDEN_FRAME, limits=limits)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_require_finite_names_the_first_bad_unit(bad):
    frame = wire.decode_frame(encode_rig1(np.array([0.0, bad, 2.0, bad], dtype=np.float32)).parts)
    assert not wire.all_finite(frame.values)
    with pytest.raises(
        NonFiniteValues, match=r"^frame 7 of session 'rig1' has 2 NaN or inf values \(first at unit 1\)$"
    ):
        wire.require_finite(frame)


def test_finite_frame_passes_the_finiteness_check():
    frame = wire.decode_frame(GOLDEN_FRAME)
    assert wire.all_finite(frame.values)
    wire.require_finite(frame)


DECODE_FORECAST_REJECTS = [
    (
        "two-parts",
        GOLDEN_FORECAST[1:],
        WrongPartCount,
        "a forecast message has 3 parts (topic, header, payload); got 2",
    ),
    (
        "frame-kind",
        [GOLDEN_FORECAST[0], GOLDEN_FRAME[0], GOLDEN_FORECAST[2]],
        BadHeader,
        "message kind 1 where a forecast (kind 2) was expected",
    ),
    (
        "empty-model-version",
        [GOLDEN_FORECAST[0], edited(GOLDEN_FORECAST, 1, 7, b"\x00")[1][:-2], GOLDEN_FORECAST[2]],
        BadModelVersion,
        "model version b'' must be 1-64 visible ASCII characters (no spaces)",
    ),
    (
        "model-version-with-space",
        edited(GOLDEN_FORECAST, 1, 60, b" 1"),
        BadModelVersion,
        "model version b' 1' must be 1-64 visible ASCII characters (no spaces)",
    ),
    (
        "zero-horizon",
        [*edited(GOLDEN_FORECAST, 1, 52, b"\x00")[:2], b""],
        BadShape,
        "forecast horizon is 0; a forecast covers at least one frame ahead",
    ),
    (
        "topic-of-another-session",
        [b"rig10\x00", *GOLDEN_FORECAST[1:]],
        TopicMismatch,
        "forecast topic b'rig10\\x00' does not name the header's session (expected b'rig1\\x00')",
    ),
    (
        "topic-without-nul",
        [b"rig1", *GOLDEN_FORECAST[1:]],
        TopicMismatch,
        "forecast topic b'rig1' does not name the header's session (expected b'rig1\\x00')",
    ),
    (
        "payload-long",
        [*GOLDEN_FORECAST[:2], GOLDEN_FORECAST[2] + b"\x00" * 4],
        PayloadSizeMismatch,
        "forecast payload is 28 bytes; the header declares 6 float32 values = 24 bytes",
    ),
]


@pytest.mark.parametrize(
    ("parts", "error", "message"),
    [case[1:] for case in DECODE_FORECAST_REJECTS],
    ids=[c[0] for c in DECODE_FORECAST_REJECTS],
)
def test_malformed_forecast_is_rejected_with_its_reason(parts, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$") as caught:
        wire.decode_forecast(parts)
    assert type(caught.value) is error
    assert caught.value.reason is EXPECTED_REASON[error]


def test_forecast_horizon_over_the_limit_is_oversized():
    with pytest.raises(Oversized, match=r"^forecast horizon 3 is over the limit max_horizon=2$"):
        wire.decode_forecast(GOLDEN_FORECAST, limits=wire.WireLimits(max_horizon=2))


def test_every_reject_reason_has_exactly_one_error_class():
    classes = FrameError.__subclasses__()
    assert {cls: cls.reason for cls in classes} == EXPECTED_REASON
    assert sorted(cls.reason for cls in classes) == sorted(RejectReason)
    assert all(issubclass(cls, PocoRtError) and issubclass(cls, ValueError) for cls in classes)


# --- the encoder refuses what a receiver would reject ---------------------------------------------


@pytest.mark.parametrize(
    ("values", "overrides", "error", "message"),
    [
        (
            np.zeros((2, 2), np.float32),
            {},
            BadShape,
            "frame values have shape (2, 2); a frame is one (N,) vector of unit values",
        ),
        (np.zeros(0, np.float32), {}, BadShape, "unit count is 0; a message carries at least one unit"),
        (
            np.zeros(3, np.int32),
            {},
            BadDtype,
            "frame dtype int32 is not carried; send float32 (native), float64 or uint16",
        ),
        (
            np.zeros(3, np.float32),
            {"session": "rig 1"},
            BadSessionName,
            f"session name b'rig 1' is not valid: {NAME_RULE}",
        ),
    ],
    ids=["2-d", "empty", "int32", "space-in-session"],
)
def test_encoder_rejects_what_the_server_would(values, overrides, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        encode_rig1(values, **overrides)


def test_forecast_encoder_wants_float32():
    with pytest.raises(BadDtype, match=r"^forecast dtype float64 is not float32; cast with \.astype\(np\.float32\)$"):
        wire.encode_forecast(
            np.zeros((2, 3)),
            session="rig1",
            frame_index=0,
            acquisition_time_ns=0,
            model_version="v1",
            **FORECAST_TIMES_NS,
        )


def test_out_of_range_frame_index_is_a_plain_value_error():
    with pytest.raises(ValueError, match=r"^frame_index=-1 is outside \[0, 18446744073709551615\]") as caught:
        encode_rig1(np.zeros(3, np.float32), frame_index=-1)
    assert not isinstance(caught.value, FrameError)


def test_limits_outside_their_wire_fields_are_refused():
    with pytest.raises(ValueError, match=r"^WireLimits\.max_session_name_bytes=256 is outside \[1, 255\]"):
        wire.WireLimits(max_session_name_bytes=256)


@pytest.mark.parametrize(
    "name", ["rig1", "a", "A.b_c-9", "r" * 128, "", ".hidden", "-x", "rig 1", "ü", "a/b", "r" * 129]
)
def test_session_names_follow_the_bundles_rule(name):
    try:
        check_session_name(name)
        bundle_accepts = True
    except ValueError:
        bundle_accepts = False
    try:
        wire.forecast_topic(name)
        wire_accepts = True
    except BadSessionName:
        wire_accepts = False
    assert wire_accepts == bundle_accepts


def test_topic_of_one_session_is_no_prefix_of_anothers():
    assert not wire.forecast_topic("rig10").startswith(wire.forecast_topic("rig1"))


# --- properties ----------------------------------------------------------------------------------


@FUZZ
@given(parts=st.one_of(st.lists(st.binary(max_size=48), max_size=4), frame_like()))
def test_any_bytes_decode_to_a_frame_or_a_frame_error(parts):
    out = np.empty(3, dtype=np.float32)
    for decode in (wire.decode_frame, lambda p: wire.decode_frame_into(p, out)):
        try:
            frame = decode(parts)
        except FrameError:
            continue
        assert frame.values.dtype == np.float32
        assert frame.values.shape == (frame.header.unit_count,)


@FUZZ
@given(
    parts=st.one_of(
        st.lists(st.binary(max_size=72), max_size=4),
        st.tuples(st.integers(0, 2), st.integers(0, 80), st.binary(max_size=3)).map(
            lambda edit: edited(GOLDEN_FORECAST, edit[0], min(edit[1], len(GOLDEN_FORECAST[edit[0]])), edit[2])
        ),
    )
)
def test_any_bytes_decode_to_a_forecast_or_a_frame_error(parts):
    try:
        forecast = wire.decode_forecast(parts)
    except FrameError:
        return
    assert forecast.values.shape == (forecast.header.unit_count, forecast.header.horizon)


@FUZZ
@given(
    values=hnp.arrays(
        dtype=st.sampled_from([np.dtype("<f4"), np.dtype(">f4"), np.dtype("<f8"), np.dtype("<u2")]),
        shape=st.integers(1, 16),
    ),
    session=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True),
    frame_index=st.integers(0, 2**64 - 1),
    acquisition_time_ns=st.integers(-(2**63), 2**63 - 1),
)
def test_every_valid_frame_round_trips(values, session, frame_index, acquisition_time_ns):
    message = wire.encode_frame(
        values, session=session, frame_index=frame_index, acquisition_time_ns=acquisition_time_ns
    )
    frame = wire.decode_frame(message.parts)
    assert (frame.header.session, frame.header.frame_index) == (session, frame_index)
    assert frame.header.acquisition_time_ns == acquisition_time_ns
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(frame.values, values.astype(np.float32))


# --- boundaries ----------------------------------------------------------------------------------


def test_wire_module_imports_no_zmq_torch_or_web_framework():
    banned = ("torch", "zmq", "fastapi", "onnxruntime", "pydantic")
    code = f"import sys, poco_rt.wire; print([name for name in {banned!r} if name in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_frames_and_forecasts_cross_real_zeromq_sockets():
    zmq = pytest.importorskip("zmq")
    with zmq.Context() as context:
        context.setsockopt(zmq.LINGER, 0)
        with context.socket(zmq.PULL) as pull, context.socket(zmq.PUSH) as push:
            pull.bind("tcp://127.0.0.1:*")
            push.connect(pull.getsockopt_string(zmq.LAST_ENDPOINT))
            for unit_count in (3, 20_000):  # copied, then zero-copy (80 kB)
                values = np.linspace(-1, 1, unit_count, dtype=np.float32)
                message = encode_rig1(values)
                push.send_multipart(message.parts, copy=message.copy)
                assert pull.poll(timeout=5_000), "no frame within 5 s"
                out = np.empty(unit_count, dtype=np.float32)
                wire.decode_frame_into(pull.recv_multipart(copy=False), out)
                np.testing.assert_array_equal(out, values)
            push.send_multipart(GOLDEN_FORECAST)
            assert pull.poll(timeout=5_000), "no forecast within 5 s"
            assert wire.decode_forecast(pull.recv_multipart()).header.horizon == 3


def test_subscriber_gets_only_its_sessions_forecasts():
    zmq = pytest.importorskip("zmq")
    other = [wire.forecast_topic("rig10"), *GOLDEN_FORECAST[1:]]  # header says rig1, topic rig10: filtered out
    with zmq.Context() as context:
        context.setsockopt(zmq.LINGER, 0)
        with context.socket(zmq.PUB) as pub, context.socket(zmq.SUB) as sub:
            pub.bind("tcp://127.0.0.1:*")
            sub.connect(pub.getsockopt_string(zmq.LAST_ENDPOINT))
            sub.subscribe(wire.forecast_topic("rig1"))
            deadline = time.monotonic() + 5.0
            while not sub.poll(timeout=20):  # a subscription takes a moment to reach the publisher
                assert time.monotonic() < deadline, "no forecast within 5 s"
                pub.send_multipart(other)
                pub.send_multipart(GOLDEN_FORECAST)
            assert bytes(sub.recv_multipart()[0]) == b"rig1\x00"
