"""Every kind of bad input is refused, counted under its reason, and the server goes on forecasting.

One server for the module (its session warmed up once); each test sends one bad message, then a
good frame, and asserts that the good frame's forecast arrives and that exactly one reject was
counted under the expected reason (and no other).
"""

from __future__ import annotations

import itertools
import struct

import httpx
import numpy as np
import pytest

from poco_rt.server.metrics import REJECT_REASONS
from poco_rt.server.settings import ServerSettings
from poco_rt.wire import encode_frame
from tests.conftest import RunningServer, StreamClient
from tests.helpers import C, scraped_metric

UNITS = 14  # sim00
MAX_PAYLOAD_BYTES = 100  # 14 float32 values (56 bytes) pass, 14 float64 values (112 bytes) are oversized


@pytest.fixture(scope="module")
def server(served_bundle, tmp_path_factory):
    settings = ServerSettings(
        bundle=served_bundle,
        data_dir=tmp_path_factory.mktemp("rejects"),
        http_port=0,
        frame_port=0,
        forecast_port=0,
        open_sessions={"sim00": "sim00"},
        max_payload_bytes=MAX_PAYLOAD_BYTES,
        max_gap_fill_frames=1_000_000,  # a rejected frame leaves a gap; keep the session streaming
    )
    running = RunningServer(settings).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stream(server):
    import zmq

    context = zmq.Context()
    try:
        client = StreamClient(context, server)
        for index in range(C):
            client.send(np.ones(UNITS, dtype=np.float32), frame_index=index)
        client.receive()
        yield client
    finally:
        context.destroy(linger=0)


FRAME_INDEX = itertools.count(C)


def good_frame(**overrides) -> list[bytes]:
    fields = {"session": "sim00", "frame_index": next(FRAME_INDEX), "acquisition_time_ns": 1_700_000_000_000_000_000}
    message = encode_frame(overrides.pop("values", np.ones(UNITS, dtype=np.float32)), **{**fields, **overrides})
    return [bytes(part) for part in message.parts]


def edited_header(offset: int, new: bytes) -> list[bytes]:
    header, payload = good_frame()
    return [header[:offset] + new + header[offset + len(new) :], payload]


BAD_MESSAGES = {
    "wrong_part_count": lambda: [*good_frame(), b"extra"],
    "bad_header": lambda: [b"not a poco-rt header", b"\x00" * 56],
    "unsupported_version": lambda: edited_header(4, b"\x07"),
    "bad_dtype": lambda: edited_header(6, b"\x09"),
    "bad_session_name": lambda: edited_header(28, b"../x"),  # same length as "sim0" + "0" kept
    "bad_shape": lambda: edited_header(24, struct.pack("<I", 0)),
    "oversized": lambda: good_frame(values=np.ones(UNITS, dtype=np.float64)),
    "payload_size_mismatch": lambda: [good_frame()[0], b"\x00" * 12],
    "unit_count_mismatch": lambda: good_frame(values=np.ones(UNITS - 1, dtype=np.float32)),
    "non_finite": lambda: good_frame(values=np.array([np.nan] + [1.0] * (UNITS - 1), dtype=np.float32)),
    "unknown_session": lambda: good_frame(session="not-open"),
}


def rejects(server: RunningServer) -> dict[str, float | None]:
    """Every reason's reject count, from one scrape (the server counts under no reason but these)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).raise_for_status().text
    return {
        reason: scraped_metric(text, "poco_rt_frames_rejected_total", {"reason": reason}) for reason in REJECT_REASONS
    }


@pytest.mark.parametrize("reason", sorted(BAD_MESSAGES))
def test_a_bad_message_is_counted_under_its_reason_and_streaming_goes_on(server, stream, reason):
    before = rejects(server)
    stream.send_parts(BAD_MESSAGES[reason]())
    index = next(FRAME_INDEX)
    stream.send(np.ones(UNITS, dtype=np.float32), frame_index=index)
    assert stream.receive().header.frame_index == index  # the frame after the bad one is forecast
    after = rejects(server)
    assert after[reason] == before[reason] + 1
    assert {key: value for key, value in after.items() if key != reason} == {
        key: value for key, value in before.items() if key != reason
    }


def test_inf_is_rejected_like_nan(server, stream):
    before = rejects(server)["non_finite"]
    stream.send_parts(good_frame(values=np.array([np.inf] * UNITS, dtype=np.float32)))
    index = next(FRAME_INDEX)
    stream.send(np.ones(UNITS, dtype=np.float32), frame_index=index)
    assert stream.receive().header.frame_index == index
    assert rejects(server)["non_finite"] == before + 1


def test_a_frame_finite_as_sent_that_overflows_once_normalised_is_rejected_like_nan(server, stream):
    before = rejects(server)["non_finite"]
    lowest = np.full(UNITS, np.finfo(np.float32).min, dtype=np.float32)  # finite; over a std below 1 it is -inf
    stream.send_parts(good_frame(values=lowest))
    index = next(FRAME_INDEX)
    stream.send(np.ones(UNITS, dtype=np.float32), frame_index=index)
    forecast = stream.receive()
    assert forecast.header.frame_index == index and np.isfinite(forecast.values).all()  # the context kept no inf
    assert rejects(server)["non_finite"] == before + 1


def test_a_flood_of_bad_frames_is_logged_once_per_interval(server, stream, caplog):
    with caplog.at_level("WARNING", logger="poco_rt.server.pipeline"):
        for _ in range(50):
            stream.send_parts([b"junk"])
        index = next(FRAME_INDEX)
        stream.send(np.ones(UNITS, dtype=np.float32), frame_index=index)
        assert stream.receive().header.frame_index == index
    assert len([r for r in caplog.records if "wrong_part_count" in r.getMessage()]) <= 1


def test_a_frame_posted_over_http_goes_through_the_same_checks(server, stream):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        index = next(FRAME_INDEX)
        short = {"frame_index": index, "acquisition_time_ns": 1, "values": [1.0] * (UNITS - 1)}
        refused = http.post("/v1/sessions/sim00/frames", json=short)
        accepted = http.post(
            "/v1/sessions/sim00/frames", json={"frame_index": index, "acquisition_time_ns": 1, "values": [1.0] * UNITS}
        )
        unknown = http.post(
            "/v1/sessions/nope/frames", json={"frame_index": 0, "acquisition_time_ns": 1, "values": [1.0]}
        )
    assert (refused.status_code, refused.json()["label"]) == (422, "unit_count_mismatch")
    assert (accepted.status_code, accepted.json()["status"]) == (202, "accepted")
    assert (unknown.status_code, unknown.json()["label"]) == (404, "unknown_session")
    assert stream.receive().header.frame_index == index  # an HTTP frame's forecast goes out on ZeroMQ too
