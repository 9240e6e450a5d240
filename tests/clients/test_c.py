"""The C publisher (clients/c) writes poco_rt.wire's bytes, refuses what the wire refuses, never waits, drops and
counts past its queue, and streams to a real server that accepts and forecasts every frame.

The library is built with `make` and every warning an error, then called through ctypes; its example
program runs as a process of its own. The golden bytes are the protocol's worked example (docs/protocol.md)
(the hex literals of tests/core/test_wire.py) and, for arbitrary frames, poco_rt.wire's own encoding.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from poco_rt import wire
from poco_rt.bundle import load_bundle
from poco_rt.clients import ZmqForecastSubscriber
from poco_rt.errors import BadDtype, BadSessionName, BadShape, Oversized
from poco_rt.models.recording import load_recording
from poco_rt.resources import default_bundle_path, demo_recording_path
from poco_rt.server.engine import Engine
from tests.clients import c_publisher
from tests.clients.c_publisher import DROPPED, FLOAT32, FLOAT64, OK, UINT16
from tests.core.wire_examples import GOLDEN_FRAME  # the worked example, written from the spec's tables
from tests.helpers import C

CALIBRATION = "sim00"  # 117 units
DTYPE_CODES = {np.dtype("<f4"): FLOAT32, np.dtype("<f8"): FLOAT64, np.dtype("<u2"): UINT16}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return c_publisher.build_c_publisher(tmp_path_factory.mktemp("c_publisher"))


@pytest.fixture(scope="module")
def library(build_dir: Path) -> ctypes.CDLL:
    return c_publisher.load_library(build_dir)


@pytest.fixture(scope="module")
def traces() -> np.ndarray:
    return load_recording(demo_recording_path()).session(CALIBRATION).traces  # (T, N = 117) float32, raw


def c_encode(library: ctypes.CDLL, values: np.ndarray, *, session: bytes, frame_index: int, time_ns: int) -> list:
    """[header, payload] as the C encoder writes them; raises AssertionError naming a non-OK status."""
    values = np.ascontiguousarray(values)
    header = (ctypes.c_uint8 * 156)()  # POCO_RT_MAX_FRAME_HEADER_BYTES
    payload = (ctypes.c_uint8 * max(values.nbytes, 1))()
    header_bytes, payload_bytes = ctypes.c_uint32(), ctypes.c_uint32()
    code = DTYPE_CODES[values.dtype]
    status = library.poco_rt_encode_frame_header(
        header, len(header), ctypes.byref(header_bytes), session, code, values.shape[0], frame_index, time_ns
    )
    assert status == OK, library.poco_rt_status_message(status)
    status = library.poco_rt_encode_frame_payload(
        payload, len(payload), ctypes.byref(payload_bytes), values.ctypes.data, code, values.shape[0]
    )
    assert status == OK, library.poco_rt_status_message(status)
    return [bytes(header[: header_bytes.value]), bytes(payload[: payload_bytes.value])]


def python_encode(values: np.ndarray, *, session: str, frame_index: int, time_ns: int) -> list:
    message = wire.encode_frame(values, session=session, frame_index=frame_index, acquisition_time_ns=time_ns)
    return [bytes(part) for part in message.parts]


def test_the_c_encoder_writes_the_protocols_worked_example(library):
    parts = c_encode(
        library, np.array([1.0, -2.5, 0.5], dtype=np.float32), session=b"rig1", frame_index=7,
        time_ns=1_700_000_000_123_456_789,
    )  # fmt: skip
    assert parts == GOLDEN_FRAME


@pytest.mark.parametrize(
    ("values", "session", "frame_index", "time_ns"),
    [
        (np.array([np.nan, np.inf, -np.inf, -0.0, 1e300, 5e-324], dtype=np.float64), "rig1", 2**64 - 1, -1),
        (np.array([0, 1, 65_535, 4_096], dtype=np.uint16), "a" * 128, 0, -(2**63)),
        (np.linspace(-3, 3, 117, dtype=np.float32), "Zebrafish_7.plane-2", 123_456, 2**63 - 1),
        (np.array([3.25], dtype=np.float32), "9", 1, 0),
    ],
    ids=["float64-extremes", "uint16-longest-name", "float32-117-units", "one-unit"],
)
def test_the_c_encoder_writes_the_bytes_poco_rt_wire_writes(library, values, session, frame_index, time_ns):
    expected = python_encode(values, session=session, frame_index=frame_index, time_ns=time_ns)
    encoded = c_encode(library, values, session=session.encode(), frame_index=frame_index, time_ns=time_ns)
    assert encoded == expected


@settings(max_examples=150, deadline=None)
@given(
    values=st.sampled_from(["<f4", "<f8", "<u2"]).flatmap(
        lambda dtype: hnp.arrays(dtype, st.integers(1, 300), elements=hnp.from_dtype(np.dtype(dtype)))
    ),
    session=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True),
    frame_index=st.integers(0, 2**64 - 1),
    time_ns=st.integers(-(2**63), 2**63 - 1),
)
def test_the_c_encoder_agrees_with_poco_rt_wire_on_arbitrary_frames(library, values, session, frame_index, time_ns):
    expected = python_encode(values, session=session, frame_index=frame_index, time_ns=time_ns)
    encoded = c_encode(library, values, session=session.encode(), frame_index=frame_index, time_ns=time_ns)
    assert encoded == expected


@pytest.mark.parametrize(
    ("session", "dtype", "unit_count", "status", "wire_error"),
    [
        ("", FLOAT32, 3, c_publisher.ERR_BAD_SESSION_NAME, BadSessionName),
        ("-rig1", FLOAT32, 3, c_publisher.ERR_BAD_SESSION_NAME, BadSessionName),
        (".rig1", FLOAT32, 3, c_publisher.ERR_BAD_SESSION_NAME, BadSessionName),
        ("rig 1", FLOAT32, 3, c_publisher.ERR_BAD_SESSION_NAME, BadSessionName),
        ("rigé", FLOAT32, 3, c_publisher.ERR_BAD_SESSION_NAME, BadSessionName),
        ("a" * 129, FLOAT32, 3, c_publisher.ERR_BAD_SESSION_NAME, BadSessionName),
        ("rig1", 0, 3, c_publisher.ERR_BAD_DTYPE, BadDtype),
        ("rig1", 4, 3, c_publisher.ERR_BAD_DTYPE, BadDtype),
        ("rig1", FLOAT32, 0, c_publisher.ERR_BAD_SHAPE, BadShape),
        ("rig1", FLOAT64, 131_073, c_publisher.ERR_OVERSIZED, Oversized),
    ],
)
def test_the_c_encoder_refuses_what_poco_rt_wire_refuses_and_writes_nothing(
    library, session, dtype, unit_count, status, wire_error
):
    numpy_dtype = {FLOAT32: np.float32, FLOAT64: np.float64}.get(dtype, np.int32)  # int32: no wire dtype
    with pytest.raises(wire_error):
        wire.encode_frame(np.zeros(unit_count, numpy_dtype), session=session, frame_index=0, acquisition_time_ns=0)
    header = (ctypes.c_uint8 * 156)()
    header_bytes = ctypes.c_uint32(999)
    found = library.poco_rt_encode_frame_header(
        header, len(header), ctypes.byref(header_bytes), session.encode(), dtype, unit_count, 0, 0
    )
    assert found == status
    assert (bytes(header), header_bytes.value) == (bytes(156), 999)
    assert library.poco_rt_status_message(found).decode().startswith(wire_error.reason.value)


def test_the_c_encoder_refuses_a_buffer_one_byte_short(library):
    header, payload, written = (ctypes.c_uint8 * 31)(), (ctypes.c_uint8 * 11)(), ctypes.c_uint32()
    values = np.array([1.0, -2.5, 0.5], dtype=np.float32)
    assert library.poco_rt_encode_frame_header(
        header, 31, ctypes.byref(written), b"rig1", FLOAT32, 3, 7, 0
    ) == c_publisher.ERR_BUFFER_TOO_SMALL  # fmt: skip
    assert library.poco_rt_encode_frame_payload(
        payload, 11, ctypes.byref(written), values.ctypes.data, FLOAT32, 3
    ) == c_publisher.ERR_BUFFER_TOO_SMALL  # fmt: skip
    assert bytes(header) + bytes(payload) == bytes(42)


CPP_WORKED_EXAMPLE = r"""
#include "poco_rt_publisher.h"

#include <cstdio>
#include <vector>

int main() {
    const std::vector<float> values{1.0f, -2.5f, 0.5f};
    std::vector<uint8_t> header(POCO_RT_MAX_FRAME_HEADER_BYTES), payload(values.size() * sizeof(float));
    uint32_t header_bytes = 0, payload_bytes = 0;
    if (poco_rt_encode_frame_header(header.data(), static_cast<uint32_t>(header.size()), &header_bytes, "rig1",
                                    POCO_RT_FLOAT32, 3, 7, INT64_C(1700000000123456789)) != POCO_RT_OK ||
        poco_rt_encode_frame_payload(payload.data(), static_cast<uint32_t>(payload.size()), &payload_bytes,
                                     values.data(), POCO_RT_FLOAT32, 3) != POCO_RT_OK) {
        return 1;
    }
    for (uint32_t i = 0; i < header_bytes; ++i) std::printf("%02x", header[i]);
    std::printf("\n");
    for (uint32_t i = 0; i < payload_bytes; ++i) std::printf("%02x", payload[i]);
    std::printf("\n");
}
"""


def test_a_cpp_program_includes_the_header_links_the_library_and_writes_the_worked_example(build_dir, tmp_path):
    if shutil.which("c++") is None:
        pytest.skip("no `c++` on PATH: install g++ to check the header from C++")
    source = tmp_path / "worked_example.cpp"
    source.write_text(CPP_WORKED_EXAMPLE)
    program = tmp_path / "worked_example"
    compiled = subprocess.run(
        ["c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", f"-I{c_publisher.CLIENTS_C}", str(source),
         str(build_dir / "libpoco_rt_publisher.a"), "-lzmq", "-o", str(program)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    printed = subprocess.run([str(program)], capture_output=True, text=True, timeout=10, check=True).stdout
    assert printed.split() == [part.hex() for part in GOLDEN_FRAME]


def open_publisher(library, endpoint: str, session: bytes = b"rig1", *, queue_frames: int = 1000, linger_ms: int = 0):
    status = ctypes.c_int32(99)
    publisher = library.poco_rt_publisher_open(
        endpoint.encode(), session, queue_frames, linger_ms, ctypes.byref(status)
    )
    return publisher, status.value


def test_open_refuses_bad_arguments_with_their_status(library):
    assert open_publisher(library, "tcp://127.0.0.1:1", b"rig 1") == (None, c_publisher.ERR_BAD_SESSION_NAME)
    assert open_publisher(library, "tcp://127.0.0.1:1", queue_frames=0) == (None, c_publisher.ERR_INVALID_ARGUMENT)
    assert open_publisher(library, "tcp://127.0.0.1:1", linger_ms=-1) == (None, c_publisher.ERR_INVALID_ARGUMENT)
    assert open_publisher(library, "127.0.0.1:8701") == (None, c_publisher.ERR_ZMQ)  # no transport
    status = ctypes.c_int32(99)
    short_key, key = b"x" * 39, b"x" * 40
    for keys in ((short_key, None, None), (None, key, key), (key, key, None), (key, key, short_key)):
        opened = library.poco_rt_publisher_open_curve(b"tcp://127.0.0.1:1", b"rig1", 10, 0, *keys, ctypes.byref(status))
        assert (opened, status.value) == (None, c_publisher.ERR_BAD_CURVE_KEY), keys
    assert library.poco_rt_status_message(-1000) == b"unknown status: not one of poco_rt_publisher.h's POCO_RT_* codes"


def test_send_never_waits_for_an_absent_server_and_drops_past_its_queue(library, traces):
    with zmq.Context() as context, context.socket(zmq.PULL) as probe:  # an endpoint nobody listens on
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    publisher, status = open_publisher(library, f"tcp://127.0.0.1:{port}", queue_frames=10)
    assert status == OK
    try:
        statuses, durations_s = [], []
        for index, frame in enumerate(traces[:25]):
            started = time.perf_counter()
            statuses.append(library.poco_rt_publisher_send(publisher, frame.ctypes.data, FLOAT32, 117, index, 0))
            durations_s.append(time.perf_counter() - started)
        counts = library.poco_rt_publisher_sent(publisher), library.poco_rt_publisher_dropped(publisher)
        refused = library.poco_rt_publisher_send(publisher, traces[0].ctypes.data, FLOAT32, 0, 25, 0)
    finally:
        library.poco_rt_publisher_close(publisher)
    assert statuses == [OK] * 10 + [DROPPED] * 15
    assert counts == (10, 15)
    assert refused == c_publisher.ERR_BAD_SHAPE
    assert max(durations_s) < 1.0  # a send that waited for the network would wait for ever here


@pytest.mark.skipif(not zmq.has("curve"), reason="this pyzmq has no CURVE")
def test_a_curve_publisher_reaches_a_curve_socket(library, traces):
    server_public, server_secret = zmq.curve_keypair()
    with zmq.Context() as context, context.socket(zmq.PULL) as pull:
        pull.setsockopt(zmq.LINGER, 0)
        pull.curve_server, pull.curve_secretkey = True, server_secret
        endpoint = f"tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}".encode()
        status = ctypes.c_int32(99)
        publisher = library.poco_rt_publisher_open_curve(
            endpoint, b"rig1", 10, 0, server_public, None, None, ctypes.byref(status)
        )
        if status.value == c_publisher.ERR_NO_CURVE:
            pytest.skip("the system libzmq the C publisher links has no CURVE")
        assert status.value == OK
        try:
            assert library.poco_rt_publisher_send(publisher, traces[3].ctypes.data, FLOAT32, 117, 3, 42) == OK
            assert pull.poll(10_000)
            frame = wire.decode_frame(pull.recv_multipart())
        finally:
            library.poco_rt_publisher_close(publisher)
    assert (frame.header.session, frame.header.frame_index, frame.header.acquisition_time_ns) == ("rig1", 3, 42)
    np.testing.assert_array_equal(frame.values, traces[3])


def test_the_example_program_streams_to_a_real_server_that_accepts_and_forecasts_every_frame(
    start_default_server, build_dir
):
    def run_example(frame_endpoint: str) -> str:
        example = subprocess.run(
            [str(build_dir / "example_publisher"), frame_endpoint, "rig1", str(c_publisher.EXAMPLE_UNITS),
             str(c_publisher.EXAMPLE_FRAMES), "200"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (example.returncode, example.stderr) == (0, "")
        return example.stdout

    c_publisher.check_example_streams_to_a_server(start_default_server, run_example)


def test_frames_sent_by_the_c_library_get_the_forecast_the_bundle_makes_of_them(start_default_server, library, traces):
    expected = Engine(load_bundle(default_bundle_path())).forecast(CALIBRATION, traces[:C])  # (N, P) raw
    server = start_default_server(open_sessions={"rig1": CALIBRATION})
    publisher, status = open_publisher(library, server.frame_endpoint, linger_ms=2000)
    assert status == OK
    try:
        with ZmqForecastSubscriber(server.forecast_endpoint, session="rig1") as forecasts:
            time.sleep(c_publisher.SLOW_JOINER_S)
            for index, frame in enumerate(traces[:C]):
                sent = library.poco_rt_publisher_send(publisher, frame.ctypes.data, FLOAT32, 117, index, time.time_ns())
                assert sent == OK
            update = forecasts.receive(timeout_s=20)
    finally:
        library.poco_rt_publisher_close(publisher)
    assert server.runtime.session_status("rig1").frames_accepted == C
    assert update.frame_index == C - 1
    np.testing.assert_allclose(update.forecast, expected, rtol=1e-5, atol=1e-5)
