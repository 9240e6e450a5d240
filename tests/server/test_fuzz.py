"""Hypothesis through the real ingest loop: no message, whatever its bytes, stops the server taking frames.

tests/core/test_wire.py fuzzes the decoder alone; this sends the same kinds of messages over ZeroMQ to a
running server, where the order policy, the calibration, the recorder and the publisher see them too.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import zmq
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from poco_rt.wire import encode_frame
from tests.core.wire_examples import FUZZ, frame_like
from tests.helpers import C, wait_until

UNITS = 14  # sim00


def test_no_message_whatever_its_bytes_stops_the_ingest_loop(start_server):
    """Arbitrary parts, frames with one field broken (tests/core/test_wire.py's strategy), and well-formed frames
    for an open session with any values (NaN, inf, float64 beyond float32, float32 that overflows once
    normalised), any frame index and any acquisition time. After each message the ingest thread must be
    alive; after all of them a new session must still stream and forecast."""
    server = start_server(open_sessions={"rig1": "sim00"}, max_gap_fill_frames=3)
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(server.frame_endpoint)
    sent = 0

    def taken() -> float:
        return server.runtime.metric_value("poco_rt_frames_received_total") or 0.0

    def rig1_frame(values: np.ndarray, index: int, stamp: int) -> list[bytes]:
        message = encode_frame(values, session="rig1", frame_index=index, acquisition_time_ns=stamp)
        return [bytes(part) for part in message.parts]

    rig1_frames = st.builds(
        rig1_frame,
        hnp.arrays(dtype=st.sampled_from([np.dtype("<f4"), np.dtype("<f8"), np.dtype("<u2")]), shape=UNITS),
        st.integers(0, 2**64 - 1),
        st.integers(-(2**63), 2**63 - 1),
    )

    @FUZZ
    @given(parts=st.one_of(st.lists(st.binary(max_size=64), min_size=1, max_size=4), frame_like(), rig1_frames))
    def one_message(parts: list[bytes]) -> None:
        nonlocal sent
        push.send_multipart(parts)
        sent += 1
        deadline = time.monotonic() + 10
        while taken() < sent:  # polled finely: 200 messages, each taken within a millisecond or so
            assert time.monotonic() < deadline, "the ingest loop stopped taking messages"
            time.sleep(0.001)
        assert server.runtime.readiness().ingest_failure is None and server.runtime.streaming

    try:
        one_message()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            http.post("/v1/sessions", json={"name": "after", "calibration": "sim00"}).raise_for_status()
            for index in range(C):
                message = encode_frame(np.ones(UNITS, dtype=np.float32), session="after", frame_index=index,
                                       acquisition_time_ns=1)  # fmt: skip
                push.send_multipart(message.parts)
            wait_until(lambda: http.get("/v1/sessions/after").json()["forecasts"] >= 1, "a forecast after the fuzzing")
            assert http.get("/readyz").status_code == 200
    finally:
        push.close(linger=0)
        context.term()
