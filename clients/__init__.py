"""poco_rt.clients: both sides of a rig's link to a poco-rt server (pyzmq, httpx, websockets; no torch).

publisher.py       FramePublisher: frames out of the acquisition loop, never blocking it (pyzmq + numpy only)
zmq_subscriber.py  (Async)ZmqForecastSubscriber: a session's forecasts off the server's PUB socket
ws_subscriber.py   (Async)WebSocketForecastSubscriber: the same over WebSocket, with the bearer token
updates.py         what both subscribers yield: ForecastUpdate(frame_index, forecast, timing)
rest.py            ForecastClient / AsyncForecastClient: sessions, forecasts, bundles, jobs over REST
rest_calls.py      the REST clients' one core: each route's request and reply parser
curve.py           optional ZeroMQ CURVE keys for the publisher and the ZeroMQ subscriber
replay.py          Replay: recorded frames on a real-time schedule, forecasts scored live
server_replay.py   a Replay wired to a server's session (`poco-rt replay`, `poco-rt demo`)
examples/          a microscope loop and a stimulation controller, runnable against `poco-rt serve`

The names below are the public surface (tests/clients/test_surface.py pins them). They load on
first use (PEP 562), so `from poco_rt.clients import FramePublisher` imports pyzmq and numpy
only, never httpx or websockets, on an acquisition PC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poco_rt.clients.publisher import FramePublisher, PublisherStats
    from poco_rt.clients.replay import Replay, ReplayStatus
    from poco_rt.clients.rest import AsyncForecastClient, ForecastClient
    from poco_rt.clients.rest_calls import LatestForecast, StreamEndpoints
    from poco_rt.clients.server_replay import ForecastChannel, connect_replay, read_session
    from poco_rt.clients.updates import ForecastTiming, ForecastUpdate
    from poco_rt.clients.ws_subscriber import AsyncWebSocketForecastSubscriber, WebSocketForecastSubscriber
    from poco_rt.clients.zmq_subscriber import AsyncZmqForecastSubscriber, ZmqForecastSubscriber
    from poco_rt.errors import ClientError, RequestRefused, SubscriptionClosed

_HOMES = {
    "FramePublisher": "poco_rt.clients.publisher",
    "PublisherStats": "poco_rt.clients.publisher",
    "Replay": "poco_rt.clients.replay",
    "ReplayStatus": "poco_rt.clients.replay",
    "AsyncForecastClient": "poco_rt.clients.rest",
    "ForecastClient": "poco_rt.clients.rest",
    "LatestForecast": "poco_rt.clients.rest_calls",
    "StreamEndpoints": "poco_rt.clients.rest_calls",
    "ForecastChannel": "poco_rt.clients.server_replay",
    "connect_replay": "poco_rt.clients.server_replay",
    "read_session": "poco_rt.clients.server_replay",
    "ForecastTiming": "poco_rt.clients.updates",
    "ForecastUpdate": "poco_rt.clients.updates",
    "AsyncWebSocketForecastSubscriber": "poco_rt.clients.ws_subscriber",
    "WebSocketForecastSubscriber": "poco_rt.clients.ws_subscriber",
    "AsyncZmqForecastSubscriber": "poco_rt.clients.zmq_subscriber",
    "ZmqForecastSubscriber": "poco_rt.clients.zmq_subscriber",
    "ClientError": "poco_rt.errors",
    "RequestRefused": "poco_rt.errors",
    "SubscriptionClosed": "poco_rt.errors",
}
__all__ = [
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


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'poco_rt.clients' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
