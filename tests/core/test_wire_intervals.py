"""Forecast messages with interval bounds (protocol version 2) against docs/protocol.md: golden bytes, rejects.

As in test_wire.py, the golden message is a hex literal written from the spec's layout table, and
each malformed case is an edit of it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from poco_rt import wire
from poco_rt.errors import BadHeader, BadShape, Oversized, PayloadSizeMismatch, UnsupportedVersion
from tests.core.wire_examples import ACQUISITION_TIME_NS, FORECAST_TIMES_NS, GOLDEN_FORECAST, edited, hex_bytes_of

VALUES = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
INTERVALS = wire.ForecastIntervals(levels=(0.75,), lower=(VALUES - 0.5)[None], upper=(VALUES + 0.5)[None])

GOLDEN_FORECAST_V2 = [
    bytes.fromhex("7269673100"),  # topic: "rig1" + NUL
    bytes.fromhex(
        "50435254"  # magic "PCRT"
        "02"  # protocol version 2
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
        "01000000"  # interval level count K = 1 (u32)
        "72696731"  # session name "rig1"
        "7631"  # model version "v1"
        "0000403f"  # level 0.75 (f32)
    ),
    bytes.fromhex(
        "0000803f0000004000004040000080400000a0400000c040"  # values [[1, 2, 3], [4, 5, 6]]
        "0000003f0000c03f0000204000006040000090400000b040"  # lower, level 0.75: values - 0.5
        "0000c03f0000204000006040000090400000b0400000d040"  # upper, level 0.75: values + 0.5
    ),
]


def encode(values: np.ndarray = VALUES, **overrides) -> wire.EncodedMessage:
    fields = {
        "session": "rig1",
        "frame_index": 7,
        "acquisition_time_ns": ACQUISITION_TIME_NS,
        "model_version": "v1",
        "intervals": INTERVALS,
        **FORECAST_TIMES_NS,
        **overrides,
    }
    return wire.encode_forecast(values, **fields)


def test_forecast_with_intervals_encodes_to_the_golden_bytes():
    assert [bytes(part) for part in encode().parts] == GOLDEN_FORECAST_V2


def test_golden_forecast_with_intervals_decodes_to_its_bounds():
    forecast = wire.decode_forecast(GOLDEN_FORECAST_V2)
    assert forecast.header == wire.decode_forecast(GOLDEN_FORECAST).header  # the same fields as version 1
    np.testing.assert_array_equal(forecast.values, VALUES)
    assert forecast.intervals.levels == (0.75,)
    lower, upper = forecast.intervals.bounds(0.75)
    np.testing.assert_array_equal(lower, VALUES - 0.5)
    np.testing.assert_array_equal(upper, VALUES + 0.5)
    assert lower.base is None or lower.base.flags.owndata  # owns its memory, not the received buffer


def test_version_1_is_still_sent_without_intervals_and_decoded_without_them():
    message = encode(intervals=None)
    assert [bytes(part) for part in message.parts] == GOLDEN_FORECAST
    assert wire.decode_forecast(GOLDEN_FORECAST).intervals is None


def test_a_warming_up_forecast_is_version_2_with_no_levels():
    none = np.empty((0, 2, 3), dtype=np.float32)
    message = encode(intervals=wire.ForecastIntervals(levels=(), lower=none, upper=none))
    forecast = wire.decode_forecast(message.parts)
    assert bytes(message.parts[1])[4] == wire.INTERVALS_VERSION
    assert forecast.intervals.levels == ()
    with pytest.raises(ValueError, match=r"^no 0.8 interval: this forecast carries levels \[\]$"):
        forecast.intervals.bounds(0.8)


def test_worked_example_of_version_2_in_the_spec_is_the_golden_bytes():
    spec = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    example = spec.split("## Worked example: one forecast with intervals")[1].split("```")[1]
    assert hex_bytes_of(example) == b"".join(GOLDEN_FORECAST_V2)


DECODE_REJECTS = [
    (
        "version-3",
        edited(GOLDEN_FORECAST_V2, 1, 4, b"\x03"),
        UnsupportedVersion,
        "protocol version 3 is not supported (this side reads versions 1 and 2); "
        "run the same poco-rt release on both sides",
    ),
    (
        "level-count-without-its-level",
        [GOLDEN_FORECAST_V2[0], GOLDEN_FORECAST_V2[1][:-4], GOLDEN_FORECAST_V2[2]],
        BadHeader,
        "forecast header is 66 bytes; its length fields make it 70",
    ),
    (
        "fixed-part-cut",
        [GOLDEN_FORECAST_V2[0], GOLDEN_FORECAST_V2[1][:58], GOLDEN_FORECAST_V2[2]],
        BadHeader,
        "forecast header is 58 bytes; its fixed part alone is 60",
    ),
    (
        "level-of-one",
        edited(GOLDEN_FORECAST_V2, 1, 66, bytes.fromhex("0000803f")),
        BadHeader,
        "interval levels [1.0] must each be in (0, 1) and increasing",
    ),
    (
        "level-not-a-number",
        edited(GOLDEN_FORECAST_V2, 1, 66, bytes.fromhex("0000c07f")),
        BadHeader,
        "interval levels [nan] must each be in (0, 1) and increasing",
    ),
    (
        "too-many-levels",
        edited(GOLDEN_FORECAST_V2, 1, 56, bytes.fromhex("11000000")),
        Oversized,
        "interval level count 17 is over the limit of 16",
    ),
    (
        "bounds-missing",
        [*GOLDEN_FORECAST_V2[:2], GOLDEN_FORECAST_V2[2][:24]],
        PayloadSizeMismatch,
        "forecast payload is 24 bytes; the header declares 18 float32 values = 72 bytes",
    ),
]


@pytest.mark.parametrize(
    ("parts", "error", "message"), [case[1:] for case in DECODE_REJECTS], ids=[case[0] for case in DECODE_REJECTS]
)
def test_malformed_forecast_with_intervals_is_rejected_with_its_reason(parts, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$") as caught:
        wire.decode_forecast(parts)
    assert type(caught.value) is error


def test_levels_must_increase():
    two = wire.ForecastIntervals(levels=(0.95, 0.8), lower=np.stack([VALUES] * 2), upper=np.stack([VALUES] * 2))
    with pytest.raises(BadHeader, match=r"^interval levels \[0.95, 0.8\] must each be in \(0, 1\) and increasing$"):
        encode(intervals=two)


def test_bounds_of_another_shape_than_the_forecast_are_refused_by_the_encoder():
    wrong = wire.ForecastIntervals(levels=(0.75,), lower=VALUES[None, :, :2], upper=VALUES[None])
    with pytest.raises(BadShape, match=r"^interval lower bounds have shape \(1, 2, 2\); with 1 levels they are"):
        encode(intervals=wrong)


def test_bounds_count_against_the_payload_limit():
    with pytest.raises(Oversized, match=r"^payload of 72 bytes is over the limit max_payload_bytes=64$"):
        encode(limits=wire.WireLimits(max_payload_bytes=64))
