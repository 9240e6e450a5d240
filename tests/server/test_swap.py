"""Hot swaps while frames stream: no frame dropped, and every forecast made whole by one model, tagged with it.

A publisher thread streams two sessions at 200 Hz while the test loads and activates another
bundle (a new network) or gives one session new embeddings and normalisation. Every forecast
that comes out must equal, to float precision, the reference forecast of exactly the model its
tag (or its place in the sequence) names, and the switch must happen once, between two frames.
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
import zmq

from poco_rt.bundle import load_bundle
from poco_rt.server.engine import Engine
from poco_rt.wire import encode_frame
from tests.helpers import C, rewritten_bundle

FRAMES = 360  # per session: 1.8 s at 200 Hz
FRAME_RATE_HZ = 200.0
SESSIONS = ("sim00", "sim01")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}  # re-normalising the context at a calibration swap rounds once


@pytest.fixture(scope="module")
def traces(tiny_recording) -> dict[str, np.ndarray]:
    return {name: tiny_recording.session(name).traces[:FRAMES] for name in SESSIONS}


class Streamer(threading.Thread):
    """The acquisition PC: both sessions' frames, paced at FRAME_RATE_HZ, on its own PUSH socket."""

    def __init__(self, context: zmq.Context, endpoint: str, traces: dict[str, np.ndarray]) -> None:
        super().__init__(name="test-streamer", daemon=True)
        self._socket = context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        self._traces = traces
        self.sent_index = -1
        self.swapped = threading.Event()  # the last third waits for it, so some frames surely follow the swap

    def run(self) -> None:
        started = time.perf_counter()
        try:
            for index in range(FRAMES):
                if index == 2 * FRAMES // 3 and not self.swapped.is_set():
                    self.swapped.wait(30)
                    started = time.perf_counter() - index / FRAME_RATE_HZ
                time.sleep(max(0.0, started + index / FRAME_RATE_HZ - time.perf_counter()))
                for name, traces in self._traces.items():
                    message = encode_frame(traces[index], session=name, frame_index=index, acquisition_time_ns=index)
                    self._socket.send_multipart(message.parts, copy=message.copy)
                self.sent_index = index
        finally:
            self._socket.close(linger=0)


def stream_while(server, stream_client, traces, swap) -> dict[str, list]:
    """Stream every frame, call `swap()` a third of the way in, return each session's forecasts in order."""
    client = stream_client(server, sessions=SESSIONS)
    streamer = Streamer(client.push.context, server.frame_endpoint, traces)
    streamer.start()
    while streamer.sent_index < FRAMES // 3:
        time.sleep(0.01)
    swap()  # while frames stream: up to a third of them go by before the streamer waits for the swap
    streamer.swapped.set()
    forecasts: dict[str, list] = {name: [] for name in SESSIONS}
    while any(not f or f[-1].header.frame_index < FRAMES - 1 for f in forecasts.values()):
        forecast = client.receive(timeout_s=15)
        forecasts[forecast.header.session].append(forecast)
    streamer.join(10)
    return forecasts


def assert_no_frame_lost(server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for name in SESSIONS:
            info = http.get(f"/v1/sessions/{name}").raise_for_status().json()
            assert (info["frames_accepted"], info["frames_dropped"], info["frames_rejected"]) == (FRAMES, 0, 0)
            assert (info["frames_gap_filled"], info["resets"], info["last_frame_index"]) == (0, 0, FRAMES - 1)


def matches(forecast, engine: Engine, traces: np.ndarray) -> bool:
    index = forecast.header.frame_index
    expected = engine.forecast(forecast.header.session, traces[index - C + 1 : index + 1])
    return np.allclose(forecast.values, expected, **TOLERANCE)


def test_a_new_bundle_takes_over_between_two_frames(start_server, stream_client, served_bundle, traces, tmp_path):
    new_path = rewritten_bundle(served_bundle, tmp_path / "new", scale_weights=1.5)
    old, new = Engine(load_bundle(served_bundle)), Engine(load_bundle(new_path))
    assert old.bundle.version != new.bundle.version
    assert not np.allclose(old.forecast("sim00", traces["sim00"][:C]), new.forecast("sim00", traces["sim00"][:C]))
    server = start_server(open_sessions={name: name for name in SESSIONS})

    def swap() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            loaded = http.post("/v1/bundles", json={"path": str(new_path)}).raise_for_status().json()
            assert loaded["version"] == new.bundle.version and not loaded["active"]
            assert http.post(f"/v1/bundles/{loaded['id']}/activate").raise_for_status().json()["active"]

    forecasts = stream_while(server, stream_client, traces, swap)
    assert_no_frame_lost(server)
    engines = {old.bundle.version: old, new.bundle.version: new}
    for name in SESSIONS:
        versions = [f.header.model_version for f in forecasts[name]]
        switch = versions.index(new.bundle.version)
        assert switch > 0 and versions == [old.bundle.version] * switch + [new.bundle.version] * (
            len(versions) - switch
        )
        indices = [f.header.frame_index for f in forecasts[name]]
        # In order, up to the last frame; frames that arrive together may share one forecast (coalesced).
        assert indices == sorted(set(indices)) and indices[0] >= C - 1 and indices[-1] == FRAMES - 1
        for forecast in forecasts[name]:
            assert matches(forecast, engines[forecast.header.model_version], traces[name])


def test_new_embeddings_for_one_session_take_over_between_two_frames(
    start_server, stream_client, served_bundle, traces, tmp_path
):
    tuned_path = rewritten_bundle(served_bundle, tmp_path / "tuned", shift_sim00=0.2)
    old, tuned = Engine(load_bundle(served_bundle)), Engine(load_bundle(tuned_path))
    assert old.bundle.version == tuned.bundle.version  # same network: only sim00's calibration differs
    server = start_server(open_sessions={name: name for name in SESSIONS})

    def swap() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            loaded = http.post("/v1/bundles", json={"path": str(tuned_path)}).raise_for_status().json()
            info = http.put("/v1/sessions/sim00/model", json={"bundle": loaded["id"]}).raise_for_status().json()
            assert info["bundle"] == loaded["id"] and info["calibration"] == "sim00"

    forecasts = stream_while(server, stream_client, traces, swap)
    assert_no_frame_lost(server)
    made_by_old = [matches(f, old, traces["sim00"]) for f in forecasts["sim00"]]
    made_by_tuned = [matches(f, tuned, traces["sim00"]) for f in forecasts["sim00"]]
    switch = made_by_old.index(False)
    assert switch > 0
    assert made_by_old == [True] * switch + [False] * (len(made_by_old) - switch)
    assert made_by_tuned == [False] * switch + [True] * (len(made_by_tuned) - switch)
    assert all(matches(f, old, traces["sim01"]) for f in forecasts["sim01"])  # the other session is untouched
