"""The wire's floor: a process that answers each frame with a forecast-sized message and does nothing else.

bench/latency.py's end to end is the publisher's send to the subscriber's receive: two ZeroMQ hops
(publisher -> server, server -> subscriber), each through a libzmq I/O thread on both sides and the
kernel's loopback, plus the server. To tell the server's own cost from the transport's, this echo
stands where the server stands, set up as the server's ingest thread is: a PULL socket for frames and
a PUB socket for forecasts on loopback TCP, its loop kept to the server's real-time cores and
libzmq's I/O thread to the others (ServerSettings.realtime_cores, io_cores). For each frame it reads
the header (decode_frame_header) and publishes a forecast of zeros of the same shape as the server's,
stamped as the server stamps it (encode_forecast). No network, no ring, no recording, no scoring:
what it costs is the floor any ZeroMQ server of this wire pays on this machine.

`WireEcho` starts it in its own process and exposes `info` as bench/live_server.Server does, so
latency.measure() streams to either.

Usage (the child; bench/latency.py --wire-floor starts it): python bench/wire_echo.py --horizon P --context-frames C
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from poco_rt.server.settings import ServerSettings
from poco_rt.wire import decode_frame_header, encode_forecast

POLL_MS = 100  # how often the loop looks at the stop flag


class WireEcho:
    """The echo in its own process; `info` has the keys latency.measure() reads from a server's /v1/server."""

    def __init__(self, *, horizon: int, context_frames: int) -> None:
        command = [sys.executable, str(Path(__file__)), "--horizon", str(horizon),
                   "--context-frames", str(context_frames)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the wire echo exited before it bound its sockets")
        self.info = json.loads(line)

    def reopen_session(self) -> None:
        """Nothing to reopen: the echo keeps no state between frames."""

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def serve(*, horizon: int, context_frames: int) -> None:
    settings = ServerSettings()
    context = zmq.Context()
    for core in settings.io_cores():
        context.set(zmq.THREAD_AFFINITY_CPU_ADD, core)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, settings.realtime_cores())
    frames, forecasts = context.socket(zmq.PULL), context.socket(zmq.PUB)
    for socket in (frames, forecasts):
        socket.setsockopt(zmq.LINGER, 0)
    frames.bind(f"tcp://{settings.host}:*")
    forecasts.bind(f"tcp://{settings.host}:*")
    info = {
        "frame_endpoint": frames.getsockopt_string(zmq.LAST_ENDPOINT),
        "forecast_endpoint": forecasts.getsockopt_string(zmq.LAST_ENDPOINT),
        "context_frames": context_frames,
    }
    print(json.dumps(info), flush=True)
    values: np.ndarray | None = None
    while not stopping.is_set():
        if not frames.poll(POLL_MS):
            continue
        parts = frames.recv_multipart(copy=False)
        received_ns = time.time_ns()
        header = decode_frame_header(parts)
        if values is None or values.shape[0] != header.unit_count:
            values = np.zeros((header.unit_count, horizon), dtype=np.float32)
        message = encode_forecast(
            values,
            session=header.session,
            frame_index=header.frame_index,
            acquisition_time_ns=header.acquisition_time_ns,
            model_version="wire-echo",
            received_ns=received_ns,
            inferred_ns=received_ns,
            sent_ns=time.time_ns(),
        )
        forecasts.send_multipart(message.parts, copy=message.copy)
    context.destroy(linger=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizon", type=int, required=True, help="P, the forecast's steps")
    parser.add_argument("--context-frames", type=int, required=True, help="C, reported as a server reports it")
    args = parser.parse_args()
    serve(horizon=args.horizon, context_frames=args.context_frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
