"""Malicious and oversized requests: each refused with a 4xx that says why (or a clean close); the server serves on.

What tests/server/test_api.py and test_jobs.py already cover (a body over the limit with an
honest Content-Length, the token, max_sessions, max_queued_jobs) is not repeated. After each
attack the server must still answer /healthz, forecast, and have taken every good frame sent.
"""

from __future__ import annotations

import socket
import time

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers import scraped_metric

C, UNITS = 48, 14  # the served bundle's context and session sim00's units


@pytest.fixture
def server(start_server):
    return start_server(max_body_bytes=64 * 1024)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        yield client


def assert_still_serving(http: httpx.Client, *, frames_taken: int = 0) -> None:
    """The server answers probes, forecasts a posted context, and has taken exactly the good frames sent."""
    assert http.get("/healthz").json() == {"status": "ok"}
    context = {"calibration": "sim00", "frames": np.ones((C, UNITS)).tolist()}
    assert http.post("/v1/forecast", json=context).status_code == 200
    assert http.get("/v1/sessions/sim00").json()["frames_accepted"] == frames_taken
    assert http.get("/v1/jobs").json() == []


def raw_exchange(server, request: bytes, *, shut_write: bool = False) -> bytes:
    """Send bytes as they are on a fresh connection; the one response (or b"" if the server closes without one)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        if shut_write:
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := connection.recv(65536)):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            (int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length: ")), 0
        )
        while len(body) < length and (chunk := connection.recv(65536)):
            body += chunk
        return head + b"\r\n\r\n" + body if head else b""


def post_frame(http: httpx.Client, frame_index: int, values: list[float]) -> httpx.Response:
    return http.post(
        "/v1/sessions/sim00/frames", json={"frame_index": frame_index, "acquisition_time_ns": 1, "values": values}
    )


POST_SESSION = b"POST /v1/sessions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"


def test_a_content_length_that_lies_is_refused_or_dropped_and_serving_goes_on(server, http):
    huge = POST_SESSION + b"content-length: 1000000000\r\n\r\n{}"
    refused = raw_exchange(server, huge)
    assert refused.startswith(b"HTTP/1.1 413 ") and b"max_body_bytes=65536" in refused  # on the header, unread
    short = POST_SESSION + b"content-length: 500\r\n\r\n{}"
    assert raw_exchange(server, short, shut_write=True) == b""  # the client gave up mid-body: nothing to answer
    long = POST_SESSION + b'content-length: 2\r\n\r\n{"name": "rig2"}'
    answer = raw_exchange(server, long)
    assert answer.startswith(b"HTTP/1.1 422 ") and b"json_invalid" in answer  # only '{"' was read as the body
    assert [session["name"] for session in http.get("/v1/sessions").json()] == ["sim00"]
    assert_still_serving(http)


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(server, http):
    chunks = (b" " * 4096 for _ in range(64))  # no Content-Length: the limit is counted as the body arrives
    reply = http.post("/v1/forecast", content=chunks, headers={"content-type": "application/json"})
    assert (reply.status_code, reply.json()) == (413, {"detail": "the request body is over max_body_bytes=65536 bytes"})
    assert_still_serving(http)


def test_a_body_that_never_finishes_arriving_is_a_408_and_frees_its_connection(start_server):
    server = start_server(body_timeout_s=0.5)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        slow = POST_SESSION + b'content-length: 100\r\n\r\n{"name": '  # then nothing: a client stuck mid-body
        started = time.monotonic()
        answer = raw_exchange(server, slow)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"body_timeout_s=0.5" in answer
        assert time.monotonic() - started < 5
        assert [session["name"] for session in http.get("/v1/sessions").json()] == ["sim00"]  # nothing half-opened
        assert_still_serving(http)


@pytest.mark.parametrize(
    ("path", "body", "status", "detail"),
    [
        (
            "/v1/forecast",
            '{"calibration": "sim00", "frames": [[NaN]]}',
            422,
            "the body holds NaN, which is not a JSON number; send finite numbers only",
        ),
        (
            "/v1/sessions/sim00/frames",
            '{"frame_index": 0, "acquisition_time_ns": 1, "values": [-Infinity]}',
            422,
            "the body holds -Infinity, which is not a JSON number; send finite numbers only",
        ),
        (
            "/v2/models/poco/infer",
            '{"inputs": [{"name": "context", "shape": [1, 1], "datatype": "FP32", "data": [1e999]}]}',
            400,  # the Open Inference Protocol's status, in its `{"error": ...}` form
            "the body holds 1e999, beyond the range of a float64; send finite numbers only",
        ),
        (  # was a 500: the validation error echoing NaN could not be written as JSON
            "/v1/jobs/pinning",
            '{"plastic_fraction": NaN}',
            422,
            "the body holds NaN, which is not a JSON number; send finite numbers only",
        ),
        (  # was a 202: Infinity passed ge=0 and the job was queued with start_s null
            "/v1/jobs/pinning-sweep",
            '{"start_s": Infinity, "plastic_fractions": [0.5], "seeds": [0]}',
            422,
            "the body holds Infinity, which is not a JSON number; send finite numbers only",
        ),
        (  # was a 500: the error message echoing the path could not be encoded as UTF-8
            "/v1/bundles",
            '{"path": "\\ud800"}',
            422,
            "the body holds a string with an unpaired UTF-16 surrogate escape, which is not text; send valid Unicode",
        ),
        (
            "/v1/sessions",
            b'{"name": "\xff"}',
            400,
            "the body is not UTF-8 (byte 10 cannot be decoded); send JSON as UTF-8 text",
        ),
        (
            "/v1/sessions",
            "[" * 20_000 + "]" * 20_000,
            400,
            "the body's JSON nests arrays or objects too deeply to be read",
        ),
    ],
    ids=["nan-context", "infinity-frame", "overflow-infer", "nan-job", "infinity-sweep", "surrogate", "latin1", "deep"],
)
def test_bodies_that_are_not_finite_json_text_are_refused_with_the_reason(http, path, body, status, detail):
    reply = http.post(path, content=body, headers={"content-type": "application/json"})
    key = "error" if path.startswith("/v2") else "detail"
    assert (reply.status_code, reply.json()) == (status, {key: detail})
    assert_still_serving(http)


def test_values_beyond_float32_are_refused_not_forecast(http):
    context = {"calibration": "sim00", "frames": np.full((C, UNITS), 1e39).tolist()}  # finite in JSON, inf in float32
    reply = http.post("/v1/forecast", json=context)
    assert (reply.status_code, reply.json()["detail"]) == (
        422,
        "frames hold values beyond float32's range (+-3.4e38); send finite float32 values",
    )
    refused = post_frame(http, 0, [1e39] * UNITS)
    assert (refused.status_code, refused.json()["label"]) == (422, "non_finite")  # as on the wire: counted, not taken
    assert post_frame(http, 0, [1.0] * UNITS).status_code == 202
    assert_still_serving(http, frames_taken=1)


def test_a_ragged_context_is_a_422_naming_the_frame(http):
    reply = http.post("/v1/forecast", json={"calibration": "sim00", "frames": [[1.0] * UNITS, [1.0]]})  # was a 500
    assert reply.status_code == 422
    (problem,) = reply.json()["detail"]
    assert (problem["loc"], problem["msg"]) == (
        ["body", "frames"],
        "Value error, frame 1 has 1 values, frame 0 has 14: send (C, N)",
    )
    assert_still_serving(http)


def test_frame_numbers_outside_the_wire_fields_are_a_422_naming_them(http):
    reply = http.post(  # was a 500: the wire encoder's ValueError
        "/v1/sessions/sim00/frames", json={"frame_index": 2**64, "acquisition_time_ns": -(2**63) - 1, "values": [1.0]}
    )
    assert reply.status_code == 422
    assert [(problem["loc"][-1], problem["msg"]) for problem in reply.json()["detail"]] == [
        ("frame_index", "Input should be less than or equal to 18446744073709551615"),
        ("acquisition_time_ns", "Input should be greater than or equal to -9223372036854775808"),
    ]
    assert_still_serving(http)


def test_a_bundle_path_the_os_cannot_open_is_a_422(http):
    component = http.post("/v1/bundles", json={"path": "/tmp/" + "a" * 300})  # was a 500: ENAMETOOLONG
    assert component.status_code == 422
    assert component.json()["detail"][0]["msg"] == "Value error, path has a 300-byte component; the limit is 255"
    whole = http.post("/v1/bundles", json={"path": "/a" * 2100})
    assert whole.json()["detail"][0]["msg"] == "Value error, path is 4200 bytes long; the limit is 4096"
    assert_still_serving(http)


def test_a_frame_with_more_units_than_max_units_is_refused_over_http(start_server):
    server = start_server(max_units=8)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        refused = post_frame(http, 0, [1.0] * 9)
        assert (refused.status_code, refused.json()["label"]) == (422, "oversized")
        assert "9" in refused.json()["detail"] and "8" in refused.json()["detail"]
        assert scraped_metric(http, "poco_rt_frames_rejected_total", {"reason": "oversized"}) == 1


def test_huge_names_headers_and_query_strings_are_refused(server, http):
    name = http.post("/v1/sessions", json={"name": "a" * 60_000})
    assert name.status_code == 422 and name.json()["detail"][0]["loc"] == ["body", "name"]
    units = http.get("/v1/sessions/sim00/context", params={"units": ",".join(["1"] * 9000)})
    assert units.status_code == 422 and units.json()["detail"][0]["loc"] == ["query", "units"]
    big_header = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: " + b"a" * 200_000 + b"\r\n\r\n"
    headers = raw_exchange(server, big_header)
    assert headers.startswith(b"HTTP/1.1 400 ")  # uvicorn (h11) refuses a header block over 16 KiB
    query = raw_exchange(server, b"GET /healthz?q=" + b"a" * 200_000 + b" HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    assert query.startswith(b"HTTP/1.1 400 ")
    assert_still_serving(http)


def test_websocket_subscriptions_are_limited_and_a_freed_slot_is_taken_again(start_server):
    server = start_server(max_websocket_subscribers=2)
    url = f"{server.ws_url}/v1/sessions/sim00/forecasts/ws"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        with connect(url, open_timeout=10) as first, connect(url, open_timeout=10):
            with pytest.raises(ConnectionClosed) as refused, connect(url, open_timeout=10) as third:
                third.recv(timeout=10)
            assert (refused.value.rcvd.code, refused.value.rcvd.reason) == (
                1013,
                "2 forecast subscriptions are open, the limit (max_websocket_subscribers) is 2",
            )
            first.close()
            deadline = time.monotonic() + 10
            while True:  # the server frees the slot when it sees the close
                with connect(url, open_timeout=10) as again:
                    try:
                        again.recv(timeout=0.2)
                    except TimeoutError:
                        break  # accepted and waiting for a forecast: the freed slot was taken
                    except ConnectionClosed:
                        assert time.monotonic() < deadline, "the closed subscription's slot was never freed"
        assert_still_serving(http)


@pytest.mark.parametrize(
    ("size", "code", "reason"),
    [
        (10, 1008, "this subscription takes no messages; send nothing"),
        (2**20, 1009, "frame with 1048576 bytes exceeds limit of 4096 bytes"),  # uvicorn's, before it is read whole
    ],
)
def test_a_websocket_client_that_sends_is_closed_and_others_are_served(server, http, size, code, reason):
    url = f"{server.ws_url}/v1/sessions/sim00/forecasts/ws?format=json"
    with connect(url, open_timeout=10) as quiet, connect(url, open_timeout=10, max_size=None) as talker:
        talker.send(b"x" * size)
        with pytest.raises(ConnectionClosed) as closed:
            talker.recv(timeout=10)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, reason)
        for index in range(C):
            assert post_frame(http, index, [1.0] * UNITS).status_code == 202
        assert '"frame_index":47' in quiet.recv(timeout=10)  # the first forecast, after C frames
    assert_still_serving(http, frames_taken=C)
