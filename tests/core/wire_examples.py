"""The worked examples of docs/protocol.md as bytes, and a Hypothesis strategy of frame-like messages:
shared by the wire's own tests, the forecast-interval tests, the C publisher's and the server's fuzzing."""

from __future__ import annotations

import re
import struct

from hypothesis import settings
from hypothesis import strategies as st

ACQUISITION_TIME_NS = 1_700_000_000_123_456_789

GOLDEN_FRAME = [
    bytes.fromhex(
        "50435254"  # magic "PCRT"
        "01"  # protocol version 1
        "01"  # kind 1: frame
        "01"  # dtype 1: float32
        "04"  # session name length: 4 bytes
        "0700000000000000"  # frame index 7 (u64)
        "15cd853dfe9c9717"  # acquisition time 1_700_000_000_123_456_789 ns (i64)
        "03000000"  # unit count N = 3 (u32)
        "72696731"  # session name "rig1"
    ),
    bytes.fromhex("0000803f000020c00000003f"),  # 1.0, -2.5, 0.5 as float32
]

GOLDEN_FORECAST = [
    bytes.fromhex("7269673100"),  # topic: "rig1" + NUL
    bytes.fromhex(
        "50435254"  # magic "PCRT"
        "01"  # protocol version 1
        "02"  # kind 2: forecast
        "04"  # session name length: 4 bytes
        "02"  # model version length: 2 bytes
        "0700000000000000"  # frame index 7 (u64)
        "15cd853dfe9c9717"  # acquisition time 1_700_000_000_123_456_789 ns (i64)
        "40599d3dfe9c9717"  # received 1_700_000_000_125_000_000 ns
        "a03cb43dfe9c9717"  # inferred 1_700_000_000_126_500_000 ns
        "40c3b53dfe9c9717"  # sent 1_700_000_000_126_600_000 ns
        "02000000"  # unit count N = 2 (u32)
        "03000000"  # horizon P = 3 (u32)
        "72696731"  # session name "rig1"
        "7631"  # model version "v1"
    ),
    bytes.fromhex("0000803f0000004000004040000080400000a0400000c040"),  # [[1, 2, 3], [4, 5, 6]]
]

FORECAST_TIMES_NS = {
    "received_ns": 1_700_000_000_125_000_000,
    "inferred_ns": 1_700_000_000_126_500_000,
    "sent_ns": 1_700_000_000_126_600_000,
}


def edited(message: list[bytes], part: int, offset: int, new: bytes) -> list[bytes]:
    """The message with `new` written over part `part` at `offset` (or appended at offset == len)."""
    parts = [bytearray(p) for p in message]
    parts[part][offset : offset + len(new)] = new
    return [bytes(p) for p in parts]


def hex_bytes_of(dump: str) -> bytes:
    """The bytes of a hex dump whose lines start with byte pairs and end with a comment."""
    pairs = []
    for line in dump.splitlines():
        for token in line.split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                break
            pairs.append(token)
    return bytes.fromhex("".join(pairs))


FUZZ = settings(max_examples=200, deadline=None, database=None)

BREAKABLE_FIELDS = ("magic", "version", "kind", "dtype", "name_length", "session", "units", "payload", "extra_part")


@st.composite
def frame_like(draw) -> list[bytes]:
    """Valid frames with at most one field made arbitrary, so that the fuzzing reaches every check."""
    broken = draw(st.sampled_from((None, *BREAKABLE_FIELDS)))

    def field(name: str, valid: object, arbitrary: st.SearchStrategy) -> object:
        return draw(arbitrary) if name == broken else valid

    session = field("session", draw(st.sampled_from([b"rig1", b"A.b-9"])), st.binary(max_size=200))
    dtype = field("dtype", draw(st.integers(1, 3)), st.integers(0, 255))
    units = field("units", draw(st.integers(1, 6)), st.integers(0, 2**32 - 1))
    payload_bytes = units * {1: 4, 2: 8, 3: 2}.get(dtype, 4)
    exact = st.binary(min_size=payload_bytes, max_size=payload_bytes) if payload_bytes <= 256 else st.just(b"")
    payload = field("payload", draw(exact), st.binary(max_size=64))
    header = struct.pack(
        "<4sBBBBQqI",
        field("magic", b"PCRT", st.binary(min_size=4, max_size=4)),
        field("version", 1, st.integers(0, 255)),
        field("kind", 1, st.integers(0, 255)),
        dtype,
        field("name_length", len(session) % 256, st.integers(0, 255)),
        draw(st.integers(0, 2**64 - 1)),
        draw(st.integers(-(2**63), 2**63 - 1)),
        units,
    )
    extra_parts = draw(st.lists(st.binary(max_size=4), min_size=1, max_size=2)) if broken == "extra_part" else []
    return [header + session, payload, *extra_parts]
