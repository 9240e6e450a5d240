"""Calibrated intervals and live accuracy through a real server: the simulator streamed frame by frame.

One stream of sim00 (14 units, P = 16) is sent in lockstep (a frame, then its forecast), so the
server makes one forecast per frame and the run is deterministic. Coverage is counted here from
the bounds the subscriber received against the frames that followed, independently of the
server's own count, which must agree.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from poco_rt.clients import ForecastClient, WebSocketForecastSubscriber
from poco_rt.wire import PROTOCOL_VERSION, Forecast
from tests.helpers import C, P, rewritten_bundle

FRAMES = 1100  # all of sim00
WARM_UP = 50
LEVELS = (0.8, 0.95)


@pytest.fixture(scope="module")
def traces(tiny_recording) -> np.ndarray:
    return tiny_recording.session("sim00").traces[:FRAMES]  # (T, N = 14) raw


def stream_in_lockstep(client, traces: np.ndarray) -> list[Forecast]:
    forecasts = []
    for index, frame in enumerate(traces):
        client.send(frame, frame_index=index)
        if index >= C - 1:
            forecasts.append(client.receive())
    return forecasts


def measured_coverage(forecasts: list[Forecast], traces: np.ndarray) -> dict[float, float]:
    """Share of later frames inside each level's bounds, over every unit and step of every bounded forecast."""
    inside = {level: [] for level in LEVELS}
    for forecast in forecasts:
        start = forecast.header.frame_index + 1
        if forecast.intervals is None or not forecast.intervals.levels or start + P > len(traces):
            continue
        targets = traces[start : start + P].T  # (P, N) -> (N, P)
        for level in LEVELS:
            lower, upper = forecast.intervals.bounds(level)
            inside[level].append((lower <= targets) & (targets <= upper))
    return {level: float(np.mean(inside[level])) for level in LEVELS}


def test_intervals_cover_their_levels_on_the_simulator_stream(start_server, stream_client, traces):
    server = start_server(
        open_sessions={"sim00": "sim00"}, wire_intervals=True, interval_warm_up_forecasts=WARM_UP, record_frames=False
    )
    forecasts = stream_in_lockstep(stream_client(server), traces)

    assert all(forecast.intervals is not None for forecast in forecasts)  # version 2 on the wire, from the start
    unbounded = [forecast for forecast in forecasts if not forecast.intervals.levels]
    # Until step P has WARM_UP residuals (its first comes P frames late), and each frame is scored after its forecast.
    assert len(unbounded) == WARM_UP + P
    coverage = measured_coverage(forecasts, traces)
    for level in LEVELS:
        assert coverage[level] == pytest.approx(level, abs=0.02)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        accuracy = http.get("/v1/sessions/sim00/accuracy").raise_for_status().json()
    assert accuracy["calibrated"] is True
    assert accuracy["scored_frames"] == FRAMES - C
    for served in accuracy["levels"]:
        assert served["coverage"] == pytest.approx(served["level"], abs=0.02)
        assert served["coverage"] == pytest.approx(coverage[served["level"]], abs=0.01)
        assert len(served["unit_coverage"]) == len(served["unit_width"]) == traces.shape[1]
    assert all(score is not None and score < 1 for score in accuracy["unit_score"])


def test_forecasts_stay_version_1_for_old_subscribers_unless_asked(start_server, stream_client, traces):
    server = start_server(open_sessions={"sim00": "sim00"}, interval_warm_up_forecasts=5, record_frames=False)
    client = stream_client(server)
    for index in range(C + P + 10):
        client.send(traces[index], frame_index=index)
        if index >= C - 1:
            client.sub.poll(10_000)
            parts = client.sub.recv_multipart()
    assert parts[1][4] == PROTOCOL_VERSION  # the header's version byte: what every subscriber reads
    with ForecastClient(server.url) as rest:
        latest = rest.latest_forecast("sim00", intervals=LEVELS)
        plain = rest.latest_forecast("sim00")
    assert latest.intervals is not None and latest.intervals.levels == LEVELS
    np.testing.assert_array_equal(latest.forecast, plain.forecast)
    lower, upper = latest.interval(0.95)
    inner_lower, inner_upper = latest.interval(0.8)
    assert np.all(lower <= inner_lower) and np.all(inner_lower <= latest.forecast)
    assert np.all(latest.forecast <= inner_upper) and np.all(inner_upper <= upper)
    with WebSocketForecastSubscriber(server.url, session="sim00", intervals=(0.95,)) as subscriber:
        update = subscriber.receive()
    assert update.frame_index == latest.frame_index and update.levels == (0.95,)
    np.testing.assert_array_equal(update.interval(0.95)[1], upper)
    with pytest.raises(ValueError, match=r"^no 0.8 interval: this forecast carries levels \[0.95\]$"):
        update.interval(0.8)


def test_a_level_the_server_does_not_track_is_refused_with_the_ones_it_does(start_server, stream_client, traces):
    server = start_server(open_sessions={"sim00": "sim00"}, record_frames=False)
    client = stream_client(server)
    for index in range(C):
        client.send(traces[index], frame_index=index)
    client.receive()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        refused = http.get("/v1/sessions/sim00/forecast", params={"intervals": "0.8,0.9"})
        warming = http.get("/v1/sessions/sim00/forecast", params={"intervals": "0.8"}).raise_for_status().json()
        early = http.get("/v1/sessions/sim00/crossing", params={"unit": 0, "value": 1.0})
    assert refused.status_code == 422
    assert refused.json() == {"detail": "no 0.9 interval: the server tracks [0.8, 0.95] (setting interval_levels)"}
    assert warming["intervals"] == []  # no forecast scored yet: no bounds are served
    assert early.status_code == 409
    url = f"{server.ws_url}/v1/sessions/sim00/forecasts/ws?intervals=0.5"
    with connect(url, open_timeout=10) as websocket, pytest.raises(ConnectionClosed) as closed:
        websocket.recv(timeout=10)
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "no 0.5 interval: the server tracks [0.8, 0.95] (setting interval_levels)"


def test_crossing_probability_is_certain_for_values_every_path_reaches(start_server, stream_client, traces):
    server = start_server(open_sessions={"sim00": "sim00"}, record_frames=False)
    client = stream_client(server)
    for index in range(C + 2 * P):
        client.send(traces[index], frame_index=index)
        if index >= C - 1:
            client.receive()
    with ForecastClient(server.url) as rest:
        forecast = rest.latest_forecast("sim00").forecast
        always = rest.crossing_probability("sim00", unit=3, value=float(forecast[3].min()) - 1e6)
        never = rest.crossing_probability("sim00", unit=3, value=float(forecast[3].max()) + 1e6)
        below = rest.crossing_probability("sim00", unit=3, value=float(forecast[3].max()) + 1e6, direction="below")
        middle = rest.crossing_probability("sim00", unit=3, value=float(forecast[3].mean()))
        accuracy = rest.accuracy("sim00")
    assert (always, never, below) == (1.0, 0.0, 1.0)
    # the last frame is scored just after its forecast went out, maybe after this read
    assert accuracy["scored_frames"] in (2 * P - 1, 2 * P) and len(accuracy["unit_score"]) == traces.shape[1]
    assert 0.0 <= middle <= 1.0


def test_a_model_swap_starts_the_live_accuracy_again(start_server, stream_client, traces, served_bundle, tmp_path):
    other_network = rewritten_bundle(served_bundle, tmp_path / "other", scale_weights=1.1)
    server = start_server(open_sessions={"sim00": "sim00"}, interval_warm_up_forecasts=5, record_frames=False)
    client = stream_client(server)
    for index in range(C + P + 10):
        client.send(traces[index], frame_index=index)
        if index >= C - 1:
            client.receive()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        before = http.get("/v1/sessions/sim00/accuracy").raise_for_status().json()
        http.put("/v1/sessions/sim00/model", json={"calibration": "sim00"}).raise_for_status()  # the same model
        same = http.get("/v1/sessions/sim00/accuracy").raise_for_status().json()
        loaded = http.post("/v1/bundles", json={"path": str(other_network)}).raise_for_status().json()
        http.put("/v1/sessions/sim00/model", json={"bundle": loaded["id"]}).raise_for_status()
        after = http.get("/v1/sessions/sim00/accuracy").raise_for_status().json()
    assert (before["calibrated"], before["scored_frames"]) == (True, P + 10)
    assert (same["calibrated"], same["scored_frames"]) == (True, P + 10)  # the same network and embeddings
    assert (after["calibrated"], after["scored_frames"]) == (False, 0)
    assert after["unit_score"] == [None] * traces.shape[1]


def test_live_accuracy_can_be_turned_off(start_server, stream_client, traces):
    server = start_server(open_sessions={"sim00": "sim00"}, live_accuracy=False, record_frames=False)
    client = stream_client(server)
    for index in range(C + P + 2):
        client.send(traces[index], frame_index=index)
        if index >= C - 1:
            client.receive()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        accuracy = http.get("/v1/sessions/sim00/accuracy")
        crossing = http.get("/v1/sessions/sim00/crossing", params={"unit": 0, "value": 1.0})
        refused = http.get("/v1/sessions/sim00/forecast", params={"intervals": "0.8"})
    off = "live accuracy is turned off on this server (setting live_accuracy)"
    assert (accuracy.status_code, accuracy.json()) == (409, {"detail": off})
    assert (crossing.status_code, crossing.json()) == (409, {"detail": off})
    assert refused.status_code == 422


def test_a_new_animals_normalisation_refreshes_keep_its_live_accuracy(start_server, stream_client, traces):
    """Zero-shot, the normalisation is re-estimated at C and 2C frames: the same forecaster, so nothing resets."""
    server = start_server(interval_warm_up_forecasts=5, record_frames=False)
    httpx.post(f"{server.url}/v1/sessions", json={"name": "fish7", "units": traces.shape[1]}).raise_for_status()
    client = stream_client(server, sessions=("fish7",))
    frames = 2 * C + 10
    for index in range(frames):
        client.send(traces[index], frame_index=index, session="fish7")
        if index >= C - 1:
            client.receive()
    accuracy = httpx.get(f"{server.url}/v1/sessions/fish7/accuracy", timeout=10).raise_for_status().json()
    assert accuracy["calibrated"] is True
    assert accuracy["scored_frames"] in (frames - C - 1, frames - C)  # the last frame is scored after its forecast
