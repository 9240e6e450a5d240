"""Clients that try to exhaust the server: bodies without the token, held connections, foreign Hosts and Origins.

Each runs against a real uvicorn server over raw sockets on 127.0.0.1, where the attack is about
connections. After each the server must still answer; nothing here sends frames, so nothing
acknowledged can be lost (tests/server/test_soak.py runs the same clients beside a streaming soak).
"""

from __future__ import annotations

import logging
import os
import re
import resource
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from poco_rt.server.jobs.runner import JobRunner
from poco_rt.server.jobs.store import JobState
from poco_rt.server.log_redaction import UVICORN_LOGGERS
from poco_rt.server.settings import ServerSettings
from tests.helpers import wait_until

TOKEN = "s3cret-token-for-tests"


def address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def open_socket(server, timeout_s: float = 10.0) -> socket.socket:
    return socket.create_connection(address(server), timeout=timeout_s)


def read_response(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" when it closes without a word)."""
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


def post_head(length: int, *, authorization: str | None = None) -> bytes:
    head = "POST /v1/sessions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    head += f"content-length: {length}\r\n"
    if authorization is not None:
        head += f"authorization: {authorization}\r\n"
    return (head + "\r\n").encode()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0"])
def test_a_body_without_the_token_is_refused_before_a_byte_of_it_is_read(start_server, authorization):
    server = start_server(auth_token=TOKEN)
    with open_socket(server, timeout_s=10) as connection:
        connection.sendall(post_head(31 * 2**20, authorization=authorization))  # then nothing: the body never comes
        answer = read_response(connection)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"www-authenticate: Bearer" in answer
    assert b"the body was not read" in answer
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10) as http:
        assert http.post("/v1/sessions", json={"name": "sim00"}).status_code == 201


def test_body_bytes_held_at_once_are_bounded_across_connections(start_server):
    server = start_server(max_body_bytes=64 * 1024, max_buffered_body_bytes=100 * 1024)
    body = b'{"name": "sim00"}'.ljust(60 * 1024)  # valid JSON: trailing spaces
    with open_socket(server) as holder:
        holder.sendall(post_head(len(body)) + body[:1024])  # 60 kB reserved, 1 kB sent, then it stalls
        time.sleep(0.5)  # the server has read the head and reserved the body
        with open_socket(server) as second:
            second.sendall(post_head(len(body)) + body)
            refused = read_response(second)
        assert refused.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 1" in refused
        assert b"max_buffered_body_bytes=102400" in refused
    with httpx.Client(base_url=server.url, headers={"content-type": "application/json"}, timeout=10) as http:
        taken = lambda: http.post("/v1/sessions", content=body).status_code == 201  # noqa: E731
        wait_until(taken, "a full-size body taken once the holder left (its reservation returned)")


def test_connections_beyond_max_http_connections_are_answered_503_and_closed(start_server):
    server = start_server(max_http_connections=8, max_websocket_subscribers=4)
    silent = [open_socket(server) for _ in range(8)]
    try:
        with open_socket(server) as extra:
            answer = read_response(extra)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"the limit (max_http_connections)" in answer
    finally:
        for connection in silent:
            connection.close()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        wait_until(lambda: http.get("/healthz").status_code == 200, "REST answering once the connections closed")


def test_a_connection_that_sends_no_request_is_closed_after_the_header_timeout(start_server):
    server = start_server(request_header_timeout_s=0.5)
    with open_socket(server, timeout_s=15) as connection:
        assert read_response(connection) == b""  # closed by the server, not by the 15 s socket timeout


def test_a_connection_that_drips_its_headers_is_closed_after_the_header_timeout(start_server):
    server = start_server(request_header_timeout_s=0.5)
    with open_socket(server) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        deadline = time.monotonic() + 15
        while not select.select([connection], [], [], 0.1)[0]:  # a header line every 0.1 s, for ever
            if time.monotonic() > deadline:
                pytest.fail("a connection dripping its headers was still open after 15 s")
            connection.sendall(b"x-drip: 1\r\n")
        assert read_response(connection) == b""


def test_a_kept_alive_connection_outlives_the_header_timeout_between_requests(start_server):
    server = start_server(request_header_timeout_s=0.5)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        first = http.get("/healthz")
        time.sleep(1.5)  # idle: keep-alive's 65 s apply, not the header timeout
        second = http.get("/healthz")
    assert first.status_code == second.status_code == 200
    assert first.extensions["network_stream"] is second.extensions["network_stream"]


def is_ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_a_flood_of_connections_past_the_open_file_limit_logs_no_tracebacks(tmp_path: Path):
    """`poco-rt serve` under a 160-descriptor limit, 300 silent connections: a few log lines, then it serves on.
    A second flood is still on when the server stops, so asyncio's retry of a failed accept (a second after it)
    comes after the listening socket has closed."""
    log_path = tmp_path / "serve.log"
    command = ["prlimit", "--nofile=160:160", sys.executable, "-m", "poco_rt.cli.main", "serve", "--data-dir"]
    command += [str(tmp_path / "data"), "--http-port", "0", "--frame-port", "0", "--forecast-port", "0"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    connections: list[socket.socket] = []
    try:
        wait_until(lambda: re.search(r"HTTP on (http://\S+)", log_path.read_text()), "the server's address", 60)
        url = re.search(r"HTTP on (http://\S+)", log_path.read_text()).group(1)
        port = int(url.rsplit(":", 1)[1])
        with httpx.Client(base_url=url, timeout=10) as http:
            wait_until(lambda: is_ready(http), "the server ready", 60)
            for _ in range(300):
                connections.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(3)  # asyncio retries the accept every second meanwhile
            for connection in connections:
                connection.close()
            connections.clear()
            wait_until(lambda: is_ready(http), "the server ready after the flood", 30)
            for _ in range(300):
                connections.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            time.sleep(1.5)  # an accept has failed and its retry is due
            process.terminate()
            process.wait(30)
    finally:
        for connection in connections:
            connection.close()
        process.terminate()
        process.wait(30)
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "a retry of a failed HTTP accept came after the listening socket closed" in text
    assert "the open-file limit (160) leaves little beside max_http_connections=256" in text
    assert 1 <= text.count("cannot accept HTTP connections: [Errno 24] Too many open files") <= 5


def test_the_job_runner_outlives_running_out_of_file_descriptors(tmp_path: Path):
    """A job that cannot get a descriptor for its worker fails, naming why; the runner thread runs the next job."""
    runner = JobRunner(ServerSettings(data_dir=tmp_path, job_idle_priority=False))
    runner.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        open_now = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_now, hard))  # not one more descriptor
        try:
            starved = runner.submit("pinning", {"target": "bump", "units": 40, "runs": 2, "free_runs": 1})
            wait_until(lambda: runner.get(starved.id).state is not JobState.QUEUED, "the runner taking the job")
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # Out of descriptors, either the spawn fails (the job fails, naming why) or the job table cannot be
        # written (the runner retries each turn, and the job runs once descriptors are back): never stuck.
        wait_until(lambda: runner.get(starved.id).state.finished, "the starved job to end", timeout_s=60)
        starved_job = runner.get(starved.id)
        if starved_job.state is JobState.FAILED:
            assert "could not be started: [Errno 24] Too many open files" in starved_job.error
        else:
            assert starved_job.state is JobState.SUCCEEDED
        assert runner.started
        following = runner.submit("pinning", {"target": "bump", "units": 40, "runs": 2, "free_runs": 1})
        wait_until(lambda: runner.get(following.id).state is not JobState.QUEUED, "the next job started")
    finally:
        runner.stop(timeout_s=10)


# --- Host and Origin -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed_hosts", "expected"),
    [
        ("127.0.0.1", None, {"127.0.0.1", "localhost", "::1"}),
        ("::1", None, {"127.0.0.1", "localhost", "::1"}),
        ("localhost", ["Rig.Example", "[fe80::1]"], {"rig.example", "fe80::1"}),
        ("0.0.0.0", None, None),  # a wildcard bind has no one name; it needs a token anyway
        ("127.0.0.1", ["*"], None),
    ],
)
def test_the_hosts_a_server_answers_to(host, allowed_hosts, expected):
    settings = ServerSettings(host=host, allowed_hosts=allowed_hosts, auth_token=TOKEN)
    assert settings.http_hosts() == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_body_bytes": 2**20, "max_buffered_body_bytes": 2**19}, "max_buffered_body_bytes=524288 is below"),
        ({"max_http_connections": 64}, "max_http_connections=64 leaves no connection for REST"),
    ],
)
def test_limits_that_contradict_each_other_are_refused_at_start(fields, message):
    with pytest.raises(ValueError, match=message):
        ServerSettings(**fields)


def test_a_request_for_a_host_the_server_does_not_go_by_is_refused(start_server):
    server = start_server()
    port = address(server)[1]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        rebound = http.delete("/v1/sessions/sim00", headers={"host": f"evil.example:{port}"})
        assert rebound.status_code == 400
        assert rebound.json() == {
            "detail": f"this server does not answer to the Host 'evil.example:{port}'; add the name to allowed_hosts"
        }
        assert http.get("/v1/sessions/sim00").status_code == 200  # still open
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert http.get("/healthz", headers={"host": host}).status_code == 200, host
    handshake = (
        "GET /v1/sessions/sim00/forecasts/ws HTTP/1.1\r\nhost: evil.example\r\nupgrade: websocket\r\n"
        "connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    )
    with open_socket(server) as connection:
        connection.sendall(handshake.encode())
        assert read_response(connection).startswith(b"HTTP/1.1 403 ")


def test_allowed_hosts_replace_the_default_names(start_server):
    server = start_server(allowed_hosts=["rig.example"])
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/healthz", headers={"host": "rig.example:8700"}).status_code == 200
        assert http.get("/healthz").status_code == 400  # 127.0.0.1 is no longer listed


def test_a_websocket_from_another_origin_is_refused_unless_configured(start_server):
    server = start_server(allowed_origins=["https://dash.example"])
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
    url = f"{server.ws_url}/v1/sessions/sim00/forecasts/ws"
    with pytest.raises(InvalidStatus, match="403"):
        connect(url, origin="http://evil.example")
    for origin in (server.url, "https://dash.example", None):  # the dashboard's own page, a listed one, none
        with connect(url, origin=origin, open_timeout=10) as websocket:
            assert websocket.protocol.state.name == "OPEN", origin


# --- the token out of the log ----------------------------------------------------------------------------------


@pytest.fixture
def uvicorn_records(caplog):
    """A factory: call after the server started (uvicorn's config sets its loggers' levels then) to capture
    uvicorn's access and error lines at INFO; uvicorn's own config keeps them from the root logger."""
    loggers = [logging.getLogger(name) for name in UVICORN_LOGGERS]

    def capture():
        for log in loggers:
            log.addHandler(caplog.handler)
            caplog.set_level(logging.INFO, logger=log.name)
        return caplog

    yield capture
    for log in loggers:
        log.removeHandler(caplog.handler)


def test_the_websocket_token_never_reaches_the_log(start_server, uvicorn_records):
    server = start_server(auth_token=TOKEN)
    records = uvicorn_records()
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        assert http.get(f"/healthz?token={TOKEN}").status_code == 200
    for token in (TOKEN, "a-wrong-guess"):
        with connect(f"{server.ws_url}/v1/sessions/sim00/forecasts/ws?format=json&token={token}", open_timeout=10):
            pass
    logged = "\n".join(record.getMessage() for record in records.records)
    assert logged.count("token=***") >= 3, logged
    assert TOKEN not in logged and "a-wrong-guess" not in logged
