"""The REST surface: sessions, stateless and Open Inference Protocol forecasts, auth, limits, health, metrics."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from poco_rt.bundle import load_bundle
from poco_rt.server.engine import Engine
from tests.helpers import C, scraped_metric, wait_until


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_sessions_open_list_inspect_and_close(http):
    opened = http.post("/v1/sessions", json={"name": "rig1", "calibration": "sim01"})
    assert opened.status_code == 201
    expected = {
        "name": "rig1",
        "state": "warming_up",
        "calibration": "sim01",
        "unit_count": 13,
        "context_frames": C,
        "horizon": 16,
        "frames_in_context": 0,
        "frames_accepted": 0,
    }
    assert {key: opened.json()[key] for key in expected} == expected
    assert opened.json()["recording"].endswith(tuple("0123456789"))
    assert [s["name"] for s in http.get("/v1/sessions").json()] == ["rig1"]
    assert http.get("/v1/sessions/rig1").json()["calibration"] == "sim01"
    assert http.delete("/v1/sessions/rig1").status_code == 204
    assert http.get("/v1/sessions").json() == []
    missing = http.get("/v1/sessions/rig1")
    assert (missing.status_code, missing.json()) == (
        404,
        {"detail": "no open session 'rig1'; open it with POST /v1/sessions first"},
    )


def test_opening_refusals_say_why(start_server):
    server = start_server(max_sessions=1)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/v1/sessions", json={"name": "sim00"}).status_code == 201
        twice = http.post("/v1/sessions", json={"name": "sim00"})
        assert (twice.status_code, twice.json()["detail"]) == (
            409,
            "session 'sim00' is already open; close it first or pick another name",
        )
        over = http.post("/v1/sessions", json={"name": "rig2", "calibration": "sim01"})
        assert (over.status_code, over.json()["detail"]) == (409, "1 sessions are open, the limit (max_sessions) is 1")
        http.delete("/v1/sessions/sim00").raise_for_status()
        unknown = http.post("/v1/sessions", json={"name": "rig2", "calibration": "nope"})
        assert unknown.status_code == 404 and "has no session 'nope'" in unknown.json()["detail"]
        assert http.post("/v1/sessions", json={"name": "../etc"}).status_code == 422


def test_the_stateless_forecast_is_the_bundles(http, served_bundle, tiny_recording):
    frames = tiny_recording.session("sim00").traces[200 : 200 + C]
    reply = http.post("/v1/forecast", json={"calibration": "sim00", "frames": frames.tolist()})
    assert reply.status_code == 200
    expected = Engine(load_bundle(served_bundle)).forecast("sim00", frames)
    np.testing.assert_allclose(np.array(reply.json()["values"]), expected, rtol=1e-5, atol=1e-5)
    assert reply.json()["model_version"] == load_bundle(served_bundle).version
    short = http.post("/v1/forecast", json={"calibration": "sim00", "frames": frames[:10].tolist()})
    assert (short.status_code, short.json()["detail"]) == (
        422,
        "frames have shape (10, 14); 'sim00' needs (C, N) = (48, 14)",
    )


def test_the_open_inference_protocol_runs_the_network(http, served_bundle):
    bundle = load_bundle(served_bundle)
    rng = np.random.default_rng(0)
    context = rng.normal(size=(5, C)).astype(np.float32)
    embeddings = bundle.session("sim00").unit_embeddings[:5]
    body = {
        "id": "42",
        "inputs": [
            {"name": "context", "shape": [5, C], "datatype": "FP32", "data": context.ravel().tolist()},
            {
                "name": "unit_embeddings",
                "shape": list(embeddings.shape),
                "datatype": "FP32",
                "data": embeddings.ravel().tolist(),
            },
        ],
    }
    reply = http.post("/v2/models/poco/infer", json=body)
    assert reply.status_code == 200
    (output,) = reply.json()["outputs"]
    assert (reply.json()["id"], reply.json()["model_version"], output["name"], output["shape"]) == (
        "42",
        bundle.version,
        "forecast",
        [5, 16],
    )
    expected = Engine(bundle).forecast_normalised(context, embeddings)
    np.testing.assert_allclose(np.array(output["data"]).reshape(5, 16), expected, rtol=1e-5, atol=1e-5)
    body["inputs"][0]["shape"] = [5, 7]
    bad = http.post("/v2/models/poco/infer", json=body)
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": "input 'context' has shape [5, 7]; it must be [N, 48] with N >= 1"},
    )
    assert http.post("/v2/models/other/infer", json=body).status_code == 404
    metadata = http.get("/v2/models/poco").json()
    assert metadata["inputs"][0] == {"name": "context", "datatype": "FP32", "shape": [-1, C]}
    assert http.get("/v2/health/live").status_code == 200 and http.get("/v2/health/ready").json() == {"ready": True}


def test_health_readiness_docs_and_server_info(http, server):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert (http.get("/readyz").status_code, http.get("/readyz").json()) == (200, {"ready": True})
    assert "/v1/sessions/{name}/forecast" in http.get("/openapi.json").json()["paths"]
    info = http.get("/v1/server").json()
    assert info["frame_endpoint"] == server.frame_endpoint and info["forecast_endpoint"] == server.forecast_endpoint
    assert info["frame_endpoint"].startswith("tcp://127.0.0.1:") and not info["frame_endpoint"].endswith(":0")


def test_a_body_over_the_limit_is_refused_before_it_is_read(start_server):
    server = start_server(max_body_bytes=1024)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        reply = http.post("/v1/forecast", json={"calibration": "sim00", "frames": [[0.0] * 14] * 48})
        assert reply.status_code == 413
        assert http.get("/healthz").status_code == 200


def test_a_token_guards_everything_but_health(start_server):
    server = start_server(auth_token="s3cret")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/v1/sessions").status_code == 401
        assert http.get("/v1/sessions", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/metrics").status_code == 401
        assert http.get("/v1/sessions", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
        http.post("/v1/sessions", json={"name": "sim00"}, headers={"authorization": "Bearer s3cret"}).raise_for_status()
    with (
        pytest.raises(ConnectionClosed) as closed,
        connect(f"{server.ws_url}/v1/sessions/sim00/forecasts/ws", open_timeout=10) as ws,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1008
    with (
        connect(f"{server.ws_url}/v1/sessions/sim00/forecasts/ws?token=s3cret", open_timeout=10) as ws,
        pytest.raises(TimeoutError),
    ):
        ws.recv(timeout=0.2)  # accepted, and nothing to send yet


def test_the_serve_command_refuses_a_public_bind_without_a_token_before_binding(tmp_path):
    import subprocess
    import sys

    refused = subprocess.run(
        [sys.executable, "-m", "poco_rt.cli.main", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "auth_token is not set" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "jobs.sqlite").exists()  # refused before anything started


def test_a_refused_configuration_never_prints_the_token(tmp_path):
    import subprocess
    import sys

    refused = subprocess.run(
        [sys.executable, "-m", "poco_rt.cli.main", "serve", "--auth-token", "tok", "--max-sessions", "1",
         "--session", "a", "--session", "b", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "open_sessions and new_animals name 2 sessions but max_sessions=1" in refused.stderr
    assert "tok" not in refused.stderr  # pydantic's own message quotes every input, the token too


def test_forecasts_go_out_uncompressed_and_replies_without_nagle(server, http):
    import socket

    from poco_rt.server.serve import bind_http

    http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
    with connect(f"{server.ws_url}/v1/sessions/sim00/forecasts/ws", open_timeout=10) as ws:  # offers deflate
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
    probe = bind_http(server.settings.model_copy(update={"http_port": 0}))
    assert probe.proto == socket.IPPROTO_TCP  # what makes asyncio set TCP_NODELAY on accepted connections
    probe.close()


def test_closing_a_session_ends_its_websocket_subscriptions(server, http):
    http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
    with connect(f"{server.ws_url}/v1/sessions/sim00/forecasts/ws", open_timeout=10) as ws:
        http.delete("/v1/sessions/sim00").raise_for_status()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4404
    with (
        pytest.raises(ConnectionClosed) as refused,
        connect(f"{server.ws_url}/v1/sessions/sim00/forecasts/ws", open_timeout=10) as ws,
    ):
        ws.recv(timeout=10)
    assert refused.value.rcvd.code == 4404


def test_a_closed_session_leaves_no_metric_series_behind(server, http, stream_client, tiny_recording):
    traces = tiny_recording.session("sim00").traces
    client = stream_client(server)
    for _ in range(2):
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        for index in [*range(C - 2), C]:  # one gap filled
            client.send(traces[index], frame_index=index)
        client.receive()
        text = http.get("/metrics").text
        # from 0 again the second time
        assert scraped_metric(text, "poco_rt_frames_accepted_total", {"session": "sim00"}) == 47
        assert scraped_metric(text, "poco_rt_gap_frames_filled_total", {"session": "sim00"}) == 2
        http.delete("/v1/sessions/sim00").raise_for_status()
        closed = http.get("/metrics").text
        assert 'session="sim00"' not in closed
    assert scraped_metric(closed, "poco_rt_frames_received_total") == 94  # the server-wide series stay


def test_metrics_count_frames_and_time_each_stage(server, http, stream_client, tiny_recording):
    http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
    client = stream_client(server)
    traces = tiny_recording.session("sim00").traces
    for index in range(C):
        client.send(traces[index], frame_index=index)
    client.receive()
    # A forecast's counters are updated after it is sent, never before: the scrape may have to wait for them.
    wait_until(lambda: scraped_metric(http, "poco_rt_forecasts_total", {"session": "sim00"}) == 1, "forecast counted")
    text = http.get("/metrics").text
    assert scraped_metric(text, "poco_rt_frames_received_total") == 48
    assert scraped_metric(text, "poco_rt_frames_accepted_total", {"session": "sim00"}) == 48
    assert scraped_metric(text, "poco_rt_forecasts_total", {"session": "sim00"}) == 1
    assert scraped_metric(text, "poco_rt_stage_latency_seconds_count", {"stage": "infer"}) == 1
    assert scraped_metric(text, "poco_rt_stage_latency_seconds_count", {"stage": "decode"}) == 48
    assert scraped_metric(text, "poco_rt_sessions", {"state": "streaming"}) == 1
    assert scraped_metric(text, "poco_rt_recorder_queue_depth") is not None
