"""Frames in over ZeroMQ, forecasts out on ZeroMQ, REST and WebSocket, against the bundle called directly.

A real server each time: uvicorn in a thread on an OS-picked port, ZeroMQ on OS-picked ports, a
real onnxruntime session, recordings in a temp dir. The reference is `Engine(bundle).forecast`
on the same raw frames, which normalises and de-normalises on its own.
"""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from poco_rt.bundle import load_bundle
from poco_rt.server.engine import Engine
from poco_rt.server.recording_files import read_recorded_frames, session_recordings
from poco_rt.wire import decode_forecast, unpack_parts
from tests.helpers import C, scraped_metric, wait_until

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def traces(tiny_recording) -> np.ndarray:
    return tiny_recording.session("sim00").traces[:120]  # (T, N = 14) raw


@pytest.fixture(scope="module")
def reference(served_bundle):
    engine = Engine(load_bundle(served_bundle))
    return lambda context: engine.forecast("sim00", context)  # (C, N) raw -> (N, P) raw


def receive_ws(websocket, frame_index: int, *, binary: bool):
    """WebSocket forecasts until the one for `frame_index` (a subscriber may skip older ones)."""
    while True:
        message = websocket.recv(timeout=10)
        if binary:
            forecast = decode_forecast(unpack_parts(message))
            index, version, values = forecast.header.frame_index, forecast.header.model_version, forecast.values
        else:
            body = json.loads(message)
            index, version, values = body["frame_index"], body["model_version"], np.array(body["values"])
        if index >= frame_index:
            assert index == frame_index
            return version, values


def test_every_channel_forecasts_what_the_bundle_forecasts(
    start_server, stream_client, traces, reference, served_bundle
):
    server = start_server(open_sessions={"sim00": "sim00"})
    version = load_bundle(served_bundle).version
    client = stream_client(server)
    ws_path = f"{server.ws_url}/v1/sessions/sim00/forecasts/ws"
    with (
        connect(ws_path, open_timeout=10) as ws_binary,
        connect(f"{ws_path}?format=json", open_timeout=10) as ws_json,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        for index in range(C - 1):  # warming up: no forecast until C frames
            client.send(traces[index], frame_index=index)
        for index in range(C - 1, C + 5):
            client.send(traces[index], frame_index=index)
            expected = reference(traces[index - C + 1 : index + 1])
            forecast = client.receive()
            assert forecast.header.frame_index == index
            assert forecast.header.model_version == version
            np.testing.assert_allclose(forecast.values, expected, **TOLERANCE)
            latest = http.get("/v1/sessions/sim00/forecast").raise_for_status().json()
            assert (latest["frame_index"], latest["model_version"]) == (index, version)
            np.testing.assert_allclose(np.array(latest["values"]), expected, **TOLERANCE)
            npy = http.get("/v1/sessions/sim00/forecast", headers={"accept": "application/x-npy"}).raise_for_status()
            assert npy.headers["x-poco-frame-index"] == str(index)
            np.testing.assert_array_equal(np.load(io.BytesIO(npy.content)), forecast.values)
            for websocket, binary in ((ws_binary, True), (ws_json, False)):
                ws_version, ws_values = receive_ws(websocket, index, binary=binary)
                assert ws_version == version
                np.testing.assert_allclose(ws_values, expected, **TOLERANCE)
        session = http.get("/v1/sessions/sim00").raise_for_status().json()
    assert session["state"] == "streaming"
    assert (session["frames_accepted"], session["forecasts"], session["last_frame_index"]) == (C + 5, 6, C + 4)


def test_every_accepted_frame_is_recorded(start_server, stream_client, traces, tmp_path):
    server = start_server(open_sessions={"sim00": "sim00"}, recorder_chunk_frames=16)
    client = stream_client(server)
    sent = [index for index in range(60) if index != 30]  # frame 30 never arrives: a gap the policy fills
    for index in sent:
        client.send(traces[index], frame_index=index)
    client.send(traces[5], frame_index=5, acquisition_time_ns=1)  # late (acquired long ago): dropped, not recorded
    with httpx.Client(base_url=server.url, timeout=10) as http:
        wait_until(
            lambda: http.get("/v1/sessions/sim00").json()["frames_dropped"] == 1, "the late frame dropped", timeout_s=10
        )
        http.delete("/v1/sessions/sim00").raise_for_status()  # completes the last chunk
    (directory,) = session_recordings(tmp_path / "data" / "recordings", "sim00")
    complete_chunks = [f"chunk-{i:06d}.frames" for i in range(4)]  # 59 frames, 16 a chunk, the last one closed
    wait_until(
        lambda: sorted(p.name for p in directory.glob("chunk-*")) == complete_chunks, "the chunks", timeout_s=10
    )  # the writer is async
    recorded = read_recorded_frames(directory, include_partial=False)
    np.testing.assert_array_equal(recorded.frame_index, sent)
    np.testing.assert_array_equal(recorded.values, traces[sent])
    assert recorded.meta["calibration"] == "sim00" and recorded.meta["num_units"] == traces.shape[1]
    assert np.all(recorded.received_ns >= recorded.acquisition_time_ns)


def test_gaps_are_held_or_reset_and_old_frames_dropped(start_server, stream_client, traces, reference):
    server = start_server(open_sessions={"sim00": "sim00"}, max_gap_fill_frames=3)
    client = stream_client(server)
    for index in range(C):
        client.send(traces[index], frame_index=index)
    assert client.receive().header.frame_index == C - 1
    client.send(traces[C + 2], frame_index=C + 2)  # frames C and C + 1 missing: held at frame C - 1's values
    held = np.concatenate([traces[3:C], traces[[C - 1, C - 1, C + 2]]])  # the C frames the model sees
    forecast = client.receive()
    assert forecast.header.frame_index == C + 2
    np.testing.assert_allclose(forecast.values, reference(held), **TOLERANCE)
    client.send(traces[C + 2], frame_index=C + 2)  # duplicate
    client.send(traces[C], frame_index=C)  # out of order
    assert client.nothing_within(0.3)
    client.send(traces[C + 7], frame_index=C + 7)  # 4 missing > 3: back to warming up
    assert client.nothing_within(0.3)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        session = http.get("/v1/sessions/sim00").raise_for_status().json()
        metrics = http.get("/metrics").text
    assert session["state"] == "warming_up"
    assert session["frames_in_context"] == 1
    assert (session["frames_gap_filled"], session["resets"], session["frames_dropped"]) == (2, 1, 2)
    assert scraped_metric(metrics, "poco_rt_frames_dropped_total", {"reason": "duplicate"}) == 1
    assert scraped_metric(metrics, "poco_rt_frames_dropped_total", {"reason": "out_of_order"}) == 1
    assert scraped_metric(metrics, "poco_rt_gap_frames_filled_total", {"session": "sim00"}) == 2
    assert scraped_metric(metrics, "poco_rt_session_resets_total", {"session": "sim00"}) == 1


def test_one_frame_far_ahead_stamped_int64_max_silences_a_session_only_until_it_resyncs(
    start_server, stream_client, traces
):
    server = start_server(open_sessions={"sim00": "sim00"}, resync_after_frames=4)
    client = stream_client(server)
    for index in range(C):
        client.send(traces[index], frame_index=index)
    assert client.receive().header.frame_index == C - 1
    client.send(traces[C], frame_index=C + 10**6, acquisition_time_ns=2**63 - 1)  # a corrupt or hostile header
    for index in range(C, 2 * C + 3):
        client.send(traces[index], frame_index=index)
    assert client.receive().header.frame_index == 2 * C + 2  # 3 dropped, the 4th resynced, then C frames
    with httpx.Client(base_url=server.url, timeout=10) as http:
        session = http.get("/v1/sessions/sim00").raise_for_status().json()
    assert (session["state"], session["resets"], session["frames_dropped"]) == ("streaming", 2, 3)


def test_a_backlog_is_taken_whole_and_forecast_once(start_server, stream_client, traces, reference):
    server = start_server(open_sessions={"sim00": "sim00"})
    client = stream_client(server)
    server.runtime.between_frames(lambda: time.sleep(0.5))  # the ingest thread is busy for 0.5 s
    for index in range(C + 20):
        client.send(traces[index], frame_index=index)
    forecast = client.receive()
    while forecast.header.frame_index < C + 19:
        forecast = client.receive()
    np.testing.assert_allclose(forecast.values, reference(traces[20 : C + 20]), **TOLERANCE)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        session = http.get("/v1/sessions/sim00").raise_for_status().json()
    assert session["frames_accepted"] == C + 20
    assert session["forecasts"] < 21  # frames that arrived together got one forecast, from the newest


def test_frames_can_arrive_on_a_sub_socket(start_server, traces):
    import zmq

    from poco_rt.wire import encode_frame, forecast_topic

    server = start_server(open_sessions={"sim00": "sim00"}, frame_socket="sub")
    context = zmq.Context()
    try:
        publisher, subscriber = context.socket(zmq.PUB), context.socket(zmq.SUB)
        publisher.connect(server.frame_endpoint)  # the rig's PUB connects to the server's bound SUB
        subscriber.setsockopt(zmq.SUBSCRIBE, forecast_topic("sim00"))
        subscriber.connect(server.forecast_endpoint)
        time.sleep(0.3)  # both subscriptions reach their publishers asynchronously
        for index in range(C):
            message = encode_frame(traces[index], session="sim00", frame_index=index, acquisition_time_ns=index)
            publisher.send_multipart(message.parts)
        assert subscriber.poll(10_000)
        assert decode_forecast(subscriber.recv_multipart()).header.frame_index == C - 1
    finally:
        context.destroy(linger=0)


def test_a_session_without_frames_stalls_and_recovers(start_server, stream_client, traces):
    server = start_server(open_sessions={"sim00": "sim00"}, stall_after_s=1.0)
    client = stream_client(server)
    for index in range(C):
        client.send(traces[index], frame_index=index)
    client.receive()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        wait_until(lambda: http.get("/v1/sessions/sim00").json()["state"] == "stalled", "the stall", timeout_s=10)
        assert scraped_metric(http, "poco_rt_sessions", {"state": "stalled"}) == 1
        client.send(traces[C], frame_index=C)
        assert client.receive().header.frame_index == C
        assert http.get("/v1/sessions/sim00").json()["state"] == "streaming"
