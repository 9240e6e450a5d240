"""Hostile ZeroMQ peers on the frame port, spoken to in raw ZMTP 3.0 (RFC 23/ZMTP) over a TCP socket.

A libzmq peer answers heartbeats and ends its messages by itself, so these peers are written by hand:
one that never greets, one that greets and then goes silent, one that sends the parts of a message
that never ends. Each test checks that the server ends the peer's connection and serves on.
"""

from __future__ import annotations

import socket
import struct
import time

import httpx
import numpy as np
import pytest

from poco_rt.server.memory_guard import resident_mb
from tests.helpers import C, scraped_metric

GREETING = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" + bytes(31)
MORE, LONG, COMMAND = 0x01, 0x02, 0x04


def tcp_address(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def connect_raw(endpoint: str) -> socket.socket:
    peer = socket.create_connection(tcp_address(endpoint), timeout=10)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    return peer


def greet_as_push(peer: socket.socket) -> None:
    """The NULL-mechanism handshake of a PUSH socket: greeting, then READY with its socket type."""
    peer.sendall(GREETING)
    received = b""
    while len(received) < len(GREETING):
        received += peer.recv(len(GREETING) - len(received))
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 4) + b"PUSH"
    peer.sendall(bytes([COMMAND, len(ready)]) + ready)


def closed_by_server(peer: socket.socket, timeout_s: float) -> bool:
    """Read (and ignore the server's READY and PINGs) until the server closes the connection or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        peer.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if peer.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def stream_and_forecast(server, stream_client, traces: np.ndarray) -> int:
    """A legitimate publisher's C frames make a forecast; its frame index."""
    client = stream_client(server)
    for index in range(C):
        client.send(traces[index], frame_index=index)
    return client.receive().header.frame_index


@pytest.fixture(scope="module")
def traces(tiny_recording) -> np.ndarray:
    return tiny_recording.session("sim00").traces


def test_peers_that_never_greet_or_go_silent_after_the_handshake_are_disconnected(start_server, stream_client, traces):
    server = start_server(
        open_sessions={"sim00": "sim00"},
        zmq_handshake_timeout_s=0.5,
        zmq_heartbeat_interval_s=0.2,
        zmq_heartbeat_timeout_s=1.0,
    )
    silent = connect_raw(server.frame_endpoint)  # a TCP connection and not a byte more
    greeted = connect_raw(server.frame_endpoint)
    greet_as_push(greeted)  # then silent: it never answers the server's PINGs
    assert closed_by_server(silent, timeout_s=10)
    assert closed_by_server(greeted, timeout_s=10)
    assert stream_and_forecast(server, stream_client, traces) == C - 1  # a libzmq publisher answers and stays
    silent.close()
    greeted.close()


def test_a_message_whose_parts_never_end_is_dropped_with_its_connection_before_memory_runs_out(
    start_server, stream_client, traces
):
    server = start_server(open_sessions={"sim00": "sim00"})
    resident = resident_mb()
    if resident is None:
        pytest.skip("this OS does not report resident memory (/proc/self/statm)")
    server.stop()
    bound_mb = int(resident) + 256
    server = start_server(open_sessions={"sim00": "sim00"}, max_memory_mb=bound_mb)
    peer = connect_raw(server.frame_endpoint)
    greet_as_push(peer)
    part = bytes(2**20)
    sent_mb, peak_mb = 0, 0.0
    peer.settimeout(10)
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        while sent_mb < 2048:  # 2 GiB of one message's parts, never the last one: 1:1 in memory without the bound
            peer.sendall(bytes([MORE | LONG]) + struct.pack(">Q", len(part)) + part)
            sent_mb += 1
            peak_mb = max(peak_mb, resident_mb() or 0.0)
    peer.close()
    assert peak_mb < bound_mb + 512, f"the server grew to {peak_mb:.0f} MiB (bound {bound_mb} MiB)"
    assert sent_mb < 1024
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert scraped_metric(metrics, "poco_rt_frame_socket_resets_total") == 1
    assert stream_and_forecast(server, stream_client, traces) == C - 1  # publishers reconnect and are heard
