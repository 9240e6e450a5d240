"""FramePublisher: the acquisition side. Sends frames to a poco-rt server and never holds the loop up.

Only pyzmq, numpy and the wire module are imported, so acquisition software can use it without
the server's dependencies:

    with FramePublisher("tcp://127.0.0.1:8701", session="rig1") as publisher:
        for frame in camera:              # (N,) float32, float64 or uint16 per frame
            publisher.send(frame)         # index counts up from 0; timestamp is time.time_ns()

The bound: `send` never waits for the network or the server. It encodes the frame, copies it into
ZeroMQ's queue and returns (tens of microseconds for thousands of units: the cost of one copy);
when `queue_frames` frames are already waiting (the server is gone, slow, or not up yet) the
frame is dropped and counted instead (`stats.dropped`), and the server sees a gap. The socket is
PUSH with SNDHWM = `queue_frames`, sent with NOBLOCK.

Reconnecting is ZeroMQ's own: a connecting PUSH socket re-dials a server that went away (every
100 ms), and frames sent meanwhile wait in the queue, up to the bound, and go out once the
server is back. Frames are always copied, so a camera may reuse its buffer as soon as `send`
returns. One publisher belongs to one thread (ZeroMQ sockets are not thread-safe).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import zmq

from poco_rt.clients.curve import CurveKeys
from poco_rt.wire import DEFAULT_LIMITS, WireLimits, encode_frame, forecast_topic

logger = logging.getLogger(__name__)

DEFAULT_FRAME_ENDPOINT = "tcp://127.0.0.1:8701"


@dataclasses.dataclass(frozen=True, slots=True)
class PublisherStats:
    sent: int  # frames handed to ZeroMQ (queued or on the wire; the server's counters say what arrived)
    dropped: int  # frames refused because queue_frames were already waiting
    last_index: int | None  # the last frame index sent or dropped


class FramePublisher:
    def __init__(
        self,
        endpoint: str = DEFAULT_FRAME_ENDPOINT,
        *,
        session: str,
        queue_frames: int = 1000,
        linger_s: float = 0.5,
        server_public_key: bytes | str | None = None,
        public_key: bytes | str | None = None,
        secret_key: bytes | str | None = None,
        limits: WireLimits = DEFAULT_LIMITS,
    ) -> None:
        """`endpoint` is the server's frame socket (`GET /v1/server` shows it); `session` the stream name.

        `linger_s`: how long `close` lets queued frames go out before discarding them. The CURVE
        keys are optional (poco_rt.clients.curve); without `server_public_key` the stream is plain.
        """
        if queue_frames < 1:
            raise ValueError(f"queue_frames={queue_frames}; it must be at least 1 (the frames ZeroMQ may hold)")
        if linger_s < 0:
            raise ValueError(f"linger_s={linger_s}; give 0 to drop queued frames at close, or more")
        forecast_topic(session, limits=limits)  # a session name the server would refuse fails here, not per frame
        curve = CurveKeys.of(server_public_key=server_public_key, public_key=public_key, secret_key=secret_key)
        self.endpoint = endpoint
        self.session = session
        self.limits = limits
        self._linger_ms = int(linger_s * 1000)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, queue_frames)
        self._socket.setsockopt(zmq.LINGER, self._linger_ms)
        if curve is not None:
            curve.apply(self._socket)
        self._socket.connect(endpoint)
        self._sent = 0
        self._dropped = 0
        self._last_index: int | None = None
        logger.debug("publishing session %r to %s (at most %d frames queued)", session, endpoint, queue_frames)

    def send(self, frame: np.ndarray, index: int | None = None, timestamp_ns: int | None = None) -> bool:
        """Queue one (N,) frame; True if queued, False if dropped because the queue is full.

        `index` defaults to the last index + 1 (0 first); `timestamp_ns` to `time.time_ns()`, the
        acquisition time the forecast echoes back. A frame the server would refuse (bad dtype,
        shape, session name, too many units) raises its `FrameError` here instead.
        """
        index = (0 if self._last_index is None else self._last_index + 1) if index is None else index
        message = encode_frame(
            frame,
            session=self.session,
            frame_index=index,
            acquisition_time_ns=time.time_ns() if timestamp_ns is None else timestamp_ns,
            limits=self.limits,
        )
        self._last_index = index
        try:
            # copy=True even for large frames: the caller may overwrite its buffer the moment we return.
            self._socket.send_multipart(message.parts, flags=zmq.NOBLOCK, copy=True)
        except zmq.Again:
            self._dropped += 1
            return False
        self._sent += 1
        return True

    @property
    def stats(self) -> PublisherStats:
        return PublisherStats(sent=self._sent, dropped=self._dropped, last_index=self._last_index)

    def close(self) -> None:
        """Let queued frames out for up to linger_s, then release the socket."""
        if not self._socket.closed:
            self._socket.close(linger=self._linger_ms)
            self._context.term()

    def __enter__(self) -> FramePublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
