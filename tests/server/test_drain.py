"""Stopping drains: frames a publisher sent before the stop are forecast, published and recorded.

In process, the ingest thread is held on a command while a burst queues up, so the whole burst is
still in the frame socket when the stop comes and only the drain can take it. As a process,
`poco-rt serve` gets SIGTERM right after a burst. Each time the recording read back from disk holds
every frame sent, in complete chunks; the forecast of the last frame reaches a ZeroMQ subscriber
(and, from `poco-rt serve`, a WebSocket subscriber before its 1001 close); a server restarted on
the same data dir opens the session again. The reference forecast is the bundle's own engine.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from poco_rt.bundle import load_bundle
from poco_rt.clients import FramePublisher, ZmqForecastSubscriber
from poco_rt.server.engine import Engine
from poco_rt.server.hub import ForecastHub
from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.recording_files import read_recorded_frames, session_recordings
from poco_rt.wire import decode_forecast, unpack_parts
from tests.helpers import C, free_port

SESSION = "sim00"
BURST = 300  # frames: more than the recorder's queue below, so a drain that dropped for the disk would show
RECORDER_QUEUE = 16
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
SLOW_JOINER_S = 0.3  # a subscription reaches the server's PUB socket asynchronously


@pytest.fixture(scope="module")
def traces(tiny_recording) -> np.ndarray:
    return tiny_recording.session(SESSION).traces[:BURST]  # (BURST, N = 14) raw


@pytest.fixture(scope="module")
def last_forecast(served_bundle, traces) -> np.ndarray:
    return Engine(load_bundle(served_bundle)).forecast(SESSION, traces[-C:])  # (N, P) after frame BURST - 1


def forecasts_until_quiet(subscriber: ZmqForecastSubscriber) -> list:
    """Every forecast the subscriber holds or gets until none comes for a second."""
    received = [subscriber.receive()]
    while True:
        try:
            received.append(subscriber.receive(timeout_s=1.0))
        except TimeoutError:
            return received


def assert_recorded_whole(recordings_dir: Path, traces: np.ndarray) -> None:
    """The session's one recording: every frame sent, in order, bit-exact, in complete chunks only."""
    (directory,) = session_recordings(recordings_dir, SESSION)
    assert not list(directory.glob("*.part"))  # every chunk was fsynced and renamed
    recorded = read_recorded_frames(directory, include_partial=False)
    np.testing.assert_array_equal(recorded.frame_index, np.arange(len(traces)))
    np.testing.assert_array_equal(recorded.values, traces)


def test_a_closed_subscription_still_sends_the_forecast_it_holds():
    async def scenario() -> tuple[str | None, None]:
        hub = ForecastHub(ServerMetrics())
        subscriber = hub.subscribe("rig1")
        subscriber.offer("the last forecast")
        waiting = asyncio.create_task(hub.close_all_and_wait(timeout_s=5))
        await asyncio.sleep(0)
        held, after = await subscriber.next(), await subscriber.next()
        hub.unsubscribe(subscriber)
        await asyncio.wait_for(waiting, timeout=5)  # returns once the last subscriber has left
        return held, after

    assert asyncio.run(scenario()) == ("the last forecast", None)


def test_an_in_process_stop_forecasts_and_records_the_frames_still_queued(
    start_server, traces, last_forecast, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="poco_rt.server.ingest")
    server = start_server(open_sessions={SESSION: SESSION}, recorder_queue_frames=RECORDER_QUEUE)
    release = threading.Event()
    with (
        ZmqForecastSubscriber(server.forecast_endpoint, session=SESSION, timeout_s=10) as forecasts,
        FramePublisher(server.frame_endpoint, session=SESSION, linger_s=10) as publisher,
    ):
        time.sleep(SLOW_JOINER_S)
        holding = threading.Event()
        held = server.runtime.between_frames(lambda: holding.set() or release.wait(30))
        assert holding.wait(10)  # the ingest thread waits here: every frame below stays in the socket
        for frame in traces:
            assert publisher.send(frame)
        stopping = threading.Thread(target=server.stop)  # what uvicorn's shutdown and the lifespan do
        stopping.start()
        while server.runtime.streaming:  # the stop flag is up: the loop ends after this command
            time.sleep(0.01)
        release.set()
        stopping.join(30)
        received = forecasts_until_quiet(forecasts)
    assert held.result(1) is True and not stopping.is_alive()
    assert f"drained {BURST} queued frames" in caplog.text  # all of them: the loop took none
    assert_recorded_whole(tmp_path / "data" / "recordings", traces)
    assert server.runtime.metric_value("poco_rt_recorder_dropped_frames_total") == 0
    frame_index, forecast, _ = received[-1]
    assert frame_index == BURST - 1
    np.testing.assert_allclose(forecast, last_forecast, **TOLERANCE)

    restarted = start_server(open_sessions={SESSION: SESSION})  # the same data dir
    with httpx.Client(base_url=restarted.url, timeout=10) as http:
        assert http.get(f"/v1/sessions/{SESSION}").raise_for_status().json()["frames_accepted"] == 0
    assert len(session_recordings(tmp_path / "data" / "recordings", SESSION)) == 2  # a new one; the old one kept


def receive_websocket_until_closed(websocket) -> tuple[list[int], int]:
    """Frame indices of every WebSocket forecast until the server closes, and the close code."""
    indices = []
    try:
        while True:
            indices.append(decode_forecast(unpack_parts(websocket.recv(timeout=30))).header.frame_index)
    except ConnectionClosed as closed:
        return indices, closed.rcvd.code


def test_sigterm_drains_poco_rt_serve_and_a_restart_reopens_the_session(
    serve_process, served_bundle, traces, last_forecast, tmp_path
):
    data_dir = tmp_path / "data"
    args = ["--bundle", str(served_bundle), "--data-dir", str(data_dir), "--session", SESSION,
            "--http-port", str(free_port()), "--frame-port", "0", "--forecast-port", "0",
            "--recorder-queue-frames", str(BURST)]  # fmt: skip
    # The same HTTP port for the restart: serve_process finds a server by the address it logs.
    # A queue for the whole burst: frames the loop takes before the signal are under the real-time rule
    # (a full queue drops), which is not what this test is about; the in-process test covers the drain's.
    server = serve_process(*args)
    info = httpx.get(f"{server.url}/v1/server", timeout=10).raise_for_status().json()
    ws_url = server.url.replace("http://", "ws://") + f"/v1/sessions/{SESSION}/forecasts/ws"
    with (
        connect(ws_url, open_timeout=10) as websocket,
        ZmqForecastSubscriber(info["forecast_endpoint"], session=SESSION, timeout_s=10) as forecasts,
        FramePublisher(info["frame_endpoint"], session=SESSION, linger_s=10) as publisher,
    ):
        time.sleep(SLOW_JOINER_S)
        for frame in traces:
            assert publisher.send(frame)
        assert server.signal(signal.SIGTERM) == -signal.SIGTERM  # uvicorn re-raises it once shut down
        received = forecasts_until_quiet(forecasts)
        ws_indices, close_code = receive_websocket_until_closed(websocket)
    log = server.log_tail()
    assert "drained" in log and "stopped" in log, log
    assert_recorded_whole(data_dir / "recordings", traces)
    frame_index, forecast, _ = received[-1]
    assert frame_index == BURST - 1
    np.testing.assert_allclose(forecast, last_forecast, **TOLERANCE)
    assert (ws_indices[-1], close_code) == (BURST - 1, 1001)  # the last forecast, then "going away"

    restarted = serve_process(*args)
    with httpx.Client(base_url=restarted.url, timeout=10) as http:
        assert http.get(f"/v1/sessions/{SESSION}").raise_for_status().json()["state"] == "warming_up"
    assert restarted.signal(signal.SIGTERM) == -signal.SIGTERM
    assert len(session_recordings(data_dir / "recordings", SESSION)) == 2
