"""`poco-rt replay`'s library side: a recording file, a server's session, and a Replay wired to both.

The server is asked over REST where its ZeroMQ sockets are, and opens the stream if it is not
open yet. A stream that has frames already is continued past its last frame index with a gap
larger than the server's gap fill, so the server resets it: old frames never mix into the
replay's context, and the replay's first C frames warm it up again.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from poco_rt.clients.publisher import FramePublisher
from poco_rt.clients.replay import Replay
from poco_rt.clients.rest import ForecastClient
from poco_rt.clients.ws_subscriber import WebSocketForecastSubscriber
from poco_rt.clients.zmq_subscriber import ZmqForecastSubscriber
from poco_rt.errors import RecordingError, RequestRefused
from poco_rt.models.recording import Session, load_recording  # numpy-only; HDF5 and NWB readers import lazily

SLOW_JOINER_S = 0.3  # a ZeroMQ subscription reaches the server's PUB socket this long after connecting, at most
READER_PACKAGES = {"h5py": "HDF5", "pynwb": "NWB", "hdmf": "NWB"}


class ForecastChannel(enum.StrEnum):
    ZMQ = "zmq"
    WEBSOCKET = "websocket"


def read_session(path: Path, session: str | None = None) -> Session:
    """One session of a recording (.npz, HDF5, NWB): `session`, or the file's first."""
    try:
        recording = load_recording(path)
    except ModuleNotFoundError as missing:
        if missing.name not in READER_PACKAGES:
            raise
        raise RecordingError(
            f"{path}: reading {READER_PACKAGES[missing.name]} recordings needs {missing.name}, which the serving "
            "install leaves out; install the train extra (pip install 'poco-rt[train]') or convert the file to .npz"
        ) from missing
    return recording.session(session) if session else recording.sessions[0]


@contextlib.contextmanager
def connect_replay(
    traces: np.ndarray,
    *,
    session: str,
    calibration: str | None = None,
    server_url: str,
    token: str | None = None,
    rate_hz: float,
    loop: bool = False,
    max_frames: int | None = None,
    channel: ForecastChannel = ForecastChannel.ZMQ,
    timeout_s: float = 10.0,
) -> Iterator[Replay]:
    """A Replay of traces (T, N) into stream `session` of the server at `server_url`, connected, not yet run."""
    with ForecastClient(server_url, token=token, timeout_s=timeout_s) as client:
        info, endpoints = client.server_info(), client.endpoints()
        last_index = _ready_session(client, session, calibration, unit_count=traces.shape[1])
    first_index = 0 if last_index is None else last_index + info["max_gap_fill_frames"] + 2
    with contextlib.ExitStack() as stack:
        if channel is ForecastChannel.ZMQ:
            subscriber = stack.enter_context(
                ZmqForecastSubscriber(endpoints.forecasts, session=session, timeout_s=timeout_s)
            )
            time.sleep(SLOW_JOINER_S)
        else:
            subscriber = stack.enter_context(
                WebSocketForecastSubscriber(server_url, session=session, token=token, timeout_s=timeout_s)
            )
        publisher = stack.enter_context(FramePublisher(endpoints.frames, session=session))
        yield Replay(
            traces,
            session=session,
            publisher=publisher,
            subscriber=subscriber,
            context_frames=info["context_frames"],
            horizon=info["horizon"],
            rate_hz=rate_hz,
            first_index=first_index,
            loop=loop,
            max_frames=max_frames,
        )


def _ready_session(client: ForecastClient, name: str, calibration: str | None, *, unit_count: int) -> int | None:
    """Open stream `name` unless it is open; its last frame index (None: no frame yet).

    A stream this call opened and then found unfit for the recording is closed again before the
    error is raised, so that a failed replay leaves the server as it found it.
    """
    try:
        info, opened_here = client.session(name), False
    except RequestRefused as refused:
        if refused.status_code != 404:
            raise
        info, opened_here = client.open_session(name, calibration), True
    problem = None
    if calibration is not None and info["calibration"] != calibration:
        problem = (
            f"stream {name!r} is open with calibration {info['calibration']!r}, not {calibration!r}; "
            "close it first or replay under another --stream name"
        )
    elif info["unit_count"] != unit_count:
        problem = (
            f"the recording has {unit_count} units but stream {name!r} (calibration {info['calibration']!r}) "
            f"has {info['unit_count']}; pick the matching --calibration"
        )
    if problem is not None:
        if opened_here:
            client.close_session(name)
        raise ValueError(problem)
    return info["last_frame_index"]
