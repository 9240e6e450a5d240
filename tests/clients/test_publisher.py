"""FramePublisher's promises: it never waits, drops and counts past its queue, survives a server restart, and
speaks CURVE when given keys; the ZeroMQ subscriber's CURVE option too.

The CURVE tests here stand up plain ZeroMQ CURVE sockets with keys from zmq.curve_keypair(), so that
they test the clients alone; tests/server/test_curve.py runs them against the server's CURVE.
"""

from __future__ import annotations

import socket
import statistics
import time

import numpy as np
import pytest
import zmq

from poco_rt.clients import FramePublisher, ZmqForecastSubscriber
from poco_rt.errors import BadSessionName, BadShape
from poco_rt.models.recording import load_recording
from poco_rt.resources import demo_recording_path
from poco_rt.wire import decode_frame, encode_forecast
from tests.helpers import C

SESSION = "sim00"


@pytest.fixture
def curve_server_socket():
    """A factory: a plain ZeroMQ socket acting as a CURVE server on a random port; closed after the test."""
    context = zmq.Context()
    sockets = []

    def bind(kind: int, secret_key: bytes) -> tuple[zmq.Socket, str]:
        sockets.append(context.socket(kind))
        sockets[-1].setsockopt(zmq.LINGER, 0)
        sockets[-1].curve_server = True
        sockets[-1].curve_secretkey = secret_key
        port = sockets[-1].bind_to_random_port("tcp://127.0.0.1")
        return sockets[-1], f"tcp://127.0.0.1:{port}"

    yield bind
    for socket_ in sockets:
        socket_.close(linger=0)
    context.term()


@pytest.fixture(scope="module")
def traces() -> np.ndarray:
    return load_recording(demo_recording_path()).session(SESSION).traces  # (T, N = 117) raw


def unused_tcp_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_send_never_waits_for_an_absent_server_and_drops_past_its_queue(traces):
    with FramePublisher(unused_tcp_endpoint(), session=SESSION, queue_frames=10, linger_s=0) as publisher:
        durations_s, queued = [], []
        for frame in traces[:25]:
            started = time.perf_counter()
            queued.append(publisher.send(frame))
            durations_s.append(time.perf_counter() - started)
        stats = publisher.stats
    assert queued == [True] * 10 + [False] * 15
    assert (stats.sent, stats.dropped, stats.last_index) == (10, 15, 24)
    assert statistics.median(durations_s) < 1e-3  # measured ~10 us: an encode and a copy
    assert max(durations_s) < 0.05  # no network wait, even on a loaded 2-core machine


def test_frames_sent_while_the_server_restarts_arrive_once_it_is_back(start_default_server, traces):
    first = start_default_server(open_sessions={SESSION: SESSION})
    frame_port = int(first.runtime.endpoints.frames.rsplit(":", 1)[1])
    with FramePublisher(first.runtime.endpoints.frames, session=SESSION, linger_s=0) as publisher:
        with ZmqForecastSubscriber(first.runtime.endpoints.forecasts, session=SESSION) as forecasts:
            time.sleep(0.3)  # the slow joiner
            for frame in traces[:C]:
                publisher.send(frame)
            assert forecasts.receive().frame_index == C - 1  # the first server had every frame
        first.stop()
        for frame in traces[C : C + 20]:  # nobody listens: they wait in the publisher's queue
            assert publisher.send(frame)
        second = start_default_server(open_sessions={SESSION: SESSION}, frame_port=frame_port)
        with ZmqForecastSubscriber(second.runtime.endpoints.forecasts, session=SESSION) as forecasts:
            time.sleep(0.3)
            for frame in traces[C + 20 : 2 * C + 20]:
                assert publisher.send(frame)
            last_index = 2 * C + 19
            while (frame_index := forecasts.receive().frame_index) < last_index:
                pass
        assert frame_index == last_index
        assert publisher.stats.dropped == 0
    session = second.runtime.session_status(SESSION)
    assert session.frames_accepted == C + 20  # the 20 queued while it was down, then the C sent after


@pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")
def test_a_curve_publisher_reaches_a_curve_server_that_a_plain_one_cannot(curve_server_socket, traces):
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    pull, endpoint = curve_server_socket(zmq.PULL, server_secret)
    with FramePublisher(endpoint, session=SESSION, linger_s=0) as plain:
        plain.send(traces[0])
        assert not pull.poll(500)  # the CURVE handshake fails: nothing arrives
    with FramePublisher(
        endpoint,
        session=SESSION,
        linger_s=0,
        server_public_key=server_public,
        public_key=client_public.decode(),  # str keys work too
        secret_key=client_secret,
    ) as encrypted:
        encrypted.send(traces[1])
        encrypted.send(traces[2], index=7, timestamp_ns=123)
        assert pull.poll(10_000)
        first = decode_frame(pull.recv_multipart())
        assert pull.poll(10_000)
        second = decode_frame(pull.recv_multipart())
    assert first.header.frame_index == 0
    np.testing.assert_array_equal(first.values, traces[1])
    assert (second.header.frame_index, second.header.acquisition_time_ns) == (7, 123)
    np.testing.assert_array_equal(second.values, traces[2])


@pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")
def test_the_zmq_subscriber_receives_from_a_curve_publisher(curve_server_socket):
    server_public, server_secret = zmq.curve_keypair()
    pub, endpoint = curve_server_socket(zmq.PUB, server_secret)
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    message = encode_forecast(
        values, session=SESSION, frame_index=5, acquisition_time_ns=1, model_version="v1",
        received_ns=2, inferred_ns=3, sent_ns=4,
    )  # fmt: skip
    with ZmqForecastSubscriber(endpoint, session=SESSION, server_public_key=server_public, timeout_s=0.05) as forecasts:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # resend until the subscription has joined
            pub.send_multipart(message.parts)
            try:
                frame_index, forecast, timing = forecasts.receive()
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("no forecast through CURVE within 10 s")
    assert (frame_index, timing.inferred_ns - timing.received_ns) == (5, 1)
    np.testing.assert_array_equal(forecast, values)
    assert forecasts.model_version == "v1"


def test_bad_keys_and_bad_frames_are_refused_at_the_call_that_made_them():
    with pytest.raises(ValueError, match="a CURVE key is 40 Z85 characters"):
        FramePublisher(session=SESSION, server_public_key=b"short")
    with pytest.raises(ValueError, match="give both public_key and secret_key"):
        ZmqForecastSubscriber(session=SESSION, server_public_key=zmq.curve_keypair()[0], public_key=b"x" * 40)
    with pytest.raises(ValueError, match="without server_public_key"):
        FramePublisher(session=SESSION, secret_key=b"x" * 40)
    with pytest.raises(BadSessionName):
        FramePublisher(session="rig 1")
    with FramePublisher(unused_tcp_endpoint(), session=SESSION, linger_s=0) as publisher:
        with pytest.raises(BadShape, match="a frame is one"):
            publisher.send(np.zeros((2, 3), dtype=np.float32))
        assert publisher.stats.sent == 0
