"""The clients against a real server: frames out through FramePublisher, forecasts back over ZeroMQ and WebSocket.

The server is the demo's BackgroundServer with the embedded bundle (uvicorn in a thread, ZeroMQ
and HTTP on OS-picked ports); the reference is `Engine(bundle).forecast` on the same raw frames.
Frames go out in lock step once the context is full (send one, wait for its forecast), so the
server never has a backlog to coalesce and every frame from the C-th on gets its own forecast.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from poco_rt.bundle import load_bundle
from poco_rt.clients import (
    AsyncWebSocketForecastSubscriber,
    AsyncZmqForecastSubscriber,
    FramePublisher,
    SubscriptionClosed,
    WebSocketForecastSubscriber,
    ZmqForecastSubscriber,
)
from poco_rt.models.recording import load_recording
from poco_rt.resources import default_bundle_path, demo_recording_path
from poco_rt.server.engine import Engine

SESSION = "sim00"
FRAMES = 80  # N frames published
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # the server keeps its context normalised; the reference normalises anew


@pytest.fixture(scope="module")
def traces() -> np.ndarray:
    return load_recording(demo_recording_path()).session(SESSION).traces[:FRAMES]  # (T, N) raw


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_bundle(default_bundle_path()))


def test_n_published_frames_come_back_as_n_minus_c_plus_1_forecasts_in_order_over_zmq_and_websocket(
    start_default_server, traces, engine
):
    server = start_default_server(open_sessions={SESSION: SESSION})
    context_frames = engine.bundle.context_frames
    endpoints = server.runtime.endpoints
    with (
        ZmqForecastSubscriber(endpoints.forecasts, session=SESSION, timeout_s=10) as zmq_forecasts,
        WebSocketForecastSubscriber(server.url, session=SESSION, timeout_s=10) as ws_forecasts,
        FramePublisher(endpoints.frames, session=SESSION, linger_s=0) as publisher,
    ):
        time.sleep(0.3)  # ZeroMQ's slow joiner: the SUB's subscription reaches the PUB asynchronously
        received = {"zmq": [], "websocket": []}
        for index, frame in enumerate(traces):
            assert publisher.send(frame)  # index 0, 1, ... by default
            if index < context_frames - 1:
                continue
            expected = engine.forecast(SESSION, traces[index - context_frames + 1 : index + 1])
            for channel, subscriber in (("zmq", zmq_forecasts), ("websocket", ws_forecasts)):
                frame_index, forecast, timing = subscriber.receive()
                np.testing.assert_allclose(forecast, expected, **TOLERANCE)
                assert forecast.dtype == np.float32
                assert timing.received_ns <= timing.inferred_ns <= timing.sent_ns <= timing.delivered_ns
                assert timing.acquisition_time_ns <= timing.received_ns  # one machine, one clock
                received[channel].append(frame_index)
        for subscriber in (zmq_forecasts, ws_forecasts):
            with pytest.raises(TimeoutError):
                subscriber.receive(timeout_s=0.3)  # nothing more than one forecast per frame
        assert publisher.stats.sent == FRAMES and publisher.stats.dropped == 0
        assert zmq_forecasts.model_version == ws_forecasts.model_version == engine.bundle.version
    every_frame_from_the_c_th = list(range(context_frames - 1, FRAMES))  # N - C + 1 of them
    assert received == {"zmq": every_frame_from_the_c_th, "websocket": every_frame_from_the_c_th}


def test_the_async_subscribers_yield_the_same_forecasts_as_async_iterators(start_default_server, traces, engine):
    server = start_default_server(open_sessions={SESSION: SESSION})
    context_frames = engine.bundle.context_frames
    endpoints = server.runtime.endpoints

    async def stream() -> dict[str, list[int]]:
        received = {"zmq": [], "websocket": []}
        async with (
            AsyncZmqForecastSubscriber(endpoints.forecasts, session=SESSION, timeout_s=10) as zmq_forecasts,
            AsyncWebSocketForecastSubscriber(server.url, session=SESSION, timeout_s=10) as ws_forecasts,
        ):
            await asyncio.sleep(0.3)  # the slow joiner, as above
            iterators = {"zmq": aiter(zmq_forecasts), "websocket": aiter(ws_forecasts)}
            with FramePublisher(endpoints.frames, session=SESSION, linger_s=0) as publisher:
                for index, frame in enumerate(traces[: context_frames + 5]):
                    publisher.send(frame, index)
                    if index < context_frames - 1:
                        continue
                    expected = engine.forecast(SESSION, traces[index - context_frames + 1 : index + 1])
                    for channel, iterator in iterators.items():
                        frame_index, forecast, _ = await anext(iterator)
                        np.testing.assert_allclose(forecast, expected, **TOLERANCE)
                        received[channel].append(frame_index)
        return received

    expected_indices = list(range(context_frames - 1, context_frames + 5))
    assert asyncio.run(stream()) == {"zmq": expected_indices, "websocket": expected_indices}


def test_a_websocket_subscription_to_a_session_that_is_not_open_raises_the_servers_reason(start_default_server):
    server = start_default_server()
    with (
        WebSocketForecastSubscriber(server.url, session="rig9", timeout_s=10) as forecasts,
        pytest.raises(SubscriptionClosed, match="code 4404: session 'rig9' is not open") as closed,
    ):
        next(iter(forecasts))
    assert closed.value.code == 4404


def test_websocket_iteration_ends_when_the_server_stops(start_default_server):
    server = start_default_server(open_sessions={SESSION: SESSION})
    with WebSocketForecastSubscriber(server.url, session=SESSION, timeout_s=10) as forecasts:
        server.stop()
        assert list(forecasts) == []  # close code 1001 (going away): the end of the stream, not an error
