"""What large request bodies cost a running `poco-rt serve`: event-loop stalls and memory held.

Two measurements against one server (no token, as on loopback by default, so that bodies are read):

1. /healthz latency, idle, then while one client posts a ~17 MiB JSON context to POST /v1/forecast
   back to back (parsed off the event loop above 256 kB): median, p99 and the p99 ratio to idle.
2. The server's RSS at rest and with --stalled connections each sending 31 MiB of a 32 MiB body
   and then stalling, against `max_buffered_body_bytes` (the bytes held across connections).

Usage: python bench/hostile_http.py [--seconds 20] [--stalled 20]
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from live_server import Server
from soak import ProcessMemory

from poco_rt.resources import default_bundle_path

STALLED_SENT_BYTES = 31 * 2**20
STALLED_ANNOUNCED_BYTES = 32 * 2**20
POLL_INTERVAL_S = 0.01
ANSWER_WAIT_S = 0.2  # a body refused on its headers is answered well within this


def healthz_ms(url: str, seconds: float) -> np.ndarray:
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as http:
        http.get("/healthz")
        end_s = time.monotonic() + seconds
        while time.monotonic() < end_s:
            started_s = time.perf_counter()
            http.get("/healthz").raise_for_status()
            latencies.append((time.perf_counter() - started_s) * 1e3)
            time.sleep(POLL_INTERVAL_S)
    return np.array(latencies)


def post_large_contexts(url: str, stop: threading.Event) -> None:
    values = np.random.default_rng(0).standard_normal(1_700_000).round(6).tolist()
    body = json.dumps({"calibration": "sim00", "frames": [values]}).encode()
    with httpx.Client(base_url=url, timeout=60, headers={"content-type": "application/json"}) as http:
        while not stop.is_set():
            http.post("/v1/forecast", content=body)  # a 422 (one frame of 1.7 M units): parsed whole first


def stall_bodies(url: str, count: int) -> list[socket.socket]:
    address = urlsplit(url)
    head = (
        f"POST /v1/forecast HTTP/1.1\r\nhost: {address.netloc}\r\ncontent-type: application/json\r\n"
        f"content-length: {STALLED_ANNOUNCED_BYTES}\r\n\r\n"
    ).encode()
    connections = []
    for _ in range(count):
        connection = socket.create_connection((address.hostname, address.port), timeout=30)
        connection.sendall(head)
        if not select.select([connection], [], [], ANSWER_WAIT_S)[0]:  # no 503 at once: the body is being taken
            connection.sendall(b" " * STALLED_SENT_BYTES)
        connections.append(connection)
    return connections


def summary(latencies: np.ndarray) -> str:
    median_ms, p99_ms = np.median(latencies), np.percentile(latencies, 99)
    return f"median {median_ms:6.1f} ms  p99 {p99_ms:7.1f} ms  ({len(latencies)} requests)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="time per latency phase")
    parser.add_argument("--stalled", type=int, default=20, help="connections that send 31 MiB of a body and stall")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="poco-rt-hostile-http-"))
    server = Server(default_bundle_path(), workdir / "data", engine_flags=[], sessions=["sim00"])
    try:
        idle = healthz_ms(server.url, args.seconds)
        stop = threading.Event()
        poster = threading.Thread(target=post_large_contexts, args=(server.url, stop), daemon=True)
        poster.start()
        loaded = healthz_ms(server.url, args.seconds)
        stop.set()
        poster.join()
        print(f"/healthz idle:                    {summary(idle)}")
        print(f"/healthz beside 17 MiB bodies:    {summary(loaded)}")
        print(f"p99 ratio: {np.percentile(loaded, 99) / np.percentile(idle, 99):.2f}x")

        memory = ProcessMemory(server.process.pid)
        rest_mib = memory.rss_mib()
        connections = stall_bodies(server.url, args.stalled)
        time.sleep(2.0)
        held_mib = memory.rss_mib()
        for connection in connections:
            connection.close()
        print(
            f"RSS at rest {rest_mib:.0f} MiB, with {args.stalled} stalled 31 MiB bodies {held_mib:.0f} MiB "
            f"(+{held_mib - rest_mib:.0f} MiB; max_buffered_body_bytes is 128 MiB)"
        )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
