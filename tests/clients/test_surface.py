"""The clients' public surface and import boundaries: what `poco_rt.clients` exports, and what importing it costs."""

from __future__ import annotations

import poco_rt.clients
from tests.torchless import BLOCK_TORCH, run_child

PUBLIC_NAMES = [
    "AsyncForecastClient",
    "AsyncWebSocketForecastSubscriber",
    "AsyncZmqForecastSubscriber",
    "ClientError",
    "ForecastChannel",
    "ForecastClient",
    "ForecastTiming",
    "ForecastUpdate",
    "FramePublisher",
    "LatestForecast",
    "PublisherStats",
    "Replay",
    "ReplayStatus",
    "RequestRefused",
    "StreamEndpoints",
    "SubscriptionClosed",
    "WebSocketForecastSubscriber",
    "ZmqForecastSubscriber",
    "connect_replay",
    "read_session",
]

IMPORTS = (
    BLOCK_TORCH
    + """
import json
watched = ("fastapi", "uvicorn", "starlette", "torch", "httpx", "websockets", "onnxruntime", "pydantic")
def loaded():
    return sorted({name.split(".")[0] for name in sys.modules} & set(watched))
from poco_rt.clients import FramePublisher
publisher = loaded()
import poco_rt.clients
everything = [getattr(poco_rt.clients, name) for name in poco_rt.clients.__all__]
print(json.dumps({"publisher": publisher, "all": loaded()}))
"""
)


def test_the_public_surface_is_exactly_these_names_and_each_resolves():
    assert poco_rt.clients.__all__ == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert getattr(poco_rt.clients, name).__name__ == name
    assert set(dir(poco_rt.clients)) >= set(PUBLIC_NAMES)


def test_the_publisher_imports_only_pyzmq_and_numpy_and_no_client_imports_the_server_stack():
    reply = run_child(IMPORTS)
    assert reply["publisher"] == []  # an acquisition PC pays for pyzmq and numpy only
    assert reply["all"] == ["httpx", "websockets"]  # REST and WebSocket clients; never fastapi, uvicorn or torch
