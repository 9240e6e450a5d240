"""A hostile client for a poco-rt server on this machine: what `soak.py --hostile` runs beside the soak.

Three attackers, each a thread, each in bounded rounds until --seconds are up:

- bodies: BODY_CONNECTIONS connections at a time, each announcing a 31 MiB JSON body without the
  token, sending its first MiB, then waiting for the answer (a server that checks the token on
  the headers answers 401 at once; one that reads first holds the bytes);
- silent: SILENT_CONNECTIONS connections at a time that send nothing, held until the server
  closes them (its header timeout) or SILENT_ROUND_S pass;
- multipart: a ZeroMQ PUSH peer on the frame port sending MULTIPART_PARTS parts of
  MULTIPART_PART_BYTES, each flagged "more", never the last, held MULTIPART_HOLD_S, then closed.

Loopback only: it refuses any other address. It writes what each attacker saw as JSON (--out).
Usage: python bench/hostile.py --url http://127.0.0.1:PORT --frame-endpoint tcp://127.0.0.1:PORT
                               --seconds 60 --out hostile.json
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

BODY_CONNECTIONS = 8
BODY_ANNOUNCED_BYTES = 31 * 2**20
BODY_SENT_BYTES = 2**20
SILENT_CONNECTIONS = 100
SILENT_ROUND_S = 15.0
MULTIPART_PARTS = 16
MULTIPART_PART_BYTES = 2**20
MULTIPART_HOLD_S = 5.0
ANSWER_TIMEOUT_S = 10.0
PAUSE_S = 0.5  # between two rounds of an attacker


ATTACKS = ("bodies", "silent", "multipart")


def require_loopback(host: str) -> None:
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"hostile.py attacks loopback servers only, not {host!r}")


class Attack(threading.Thread):
    """One attacker: `round()` repeated, PAUSE_S apart, until the deadline; `seen` counts outcomes."""

    def __init__(self, name: str, deadline_s: float) -> None:
        super().__init__(name=f"hostile-{name}", daemon=True)
        self.deadline_s = deadline_s
        self.rounds = 0
        self.seen: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        while time.monotonic() < self.deadline_s:
            self.round()
            self.rounds += 1
            time.sleep(PAUSE_S)

    def round(self) -> None:
        raise NotImplementedError


class Bodies(Attack):
    def __init__(self, host: str, port: int, deadline_s: float) -> None:
        super().__init__("bodies", deadline_s)
        self.address = (host, port)
        self.head = (
            f"POST /v1/sessions HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {BODY_ANNOUNCED_BYTES}\r\n\r\n"
        ).encode()
        self.chunk = b"[" + b"1.0," * (BODY_SENT_BYTES // 4)

    def round(self) -> None:
        connections = []
        for _ in range(BODY_CONNECTIONS):
            try:
                connection = socket.create_connection(self.address, timeout=ANSWER_TIMEOUT_S)
            except OSError as error:
                self.seen[f"connect: {type(error).__name__}"] += 1
                continue
            connections.append(connection)
            try:
                connection.sendall(self.head + self.chunk)
            except OSError:  # the server answered and closed before taking the body
                self.seen["body cut off by the server"] += 1
        for connection in connections:
            with connection:
                try:
                    answer = connection.recv(64)
                except OSError as error:
                    self.seen[f"answer: {type(error).__name__}"] += 1
                    continue
                self.seen[f"status {answer[9:12].decode(errors='replace')}" if answer else "closed unanswered"] += 1


class Silent(Attack):
    def __init__(self, host: str, port: int, deadline_s: float) -> None:
        super().__init__("silent", deadline_s)
        self.address = (host, port)

    def round(self) -> None:
        connections = []
        for _ in range(SILENT_CONNECTIONS):
            try:
                connections.append(socket.create_connection(self.address, timeout=SILENT_ROUND_S))
            except OSError as error:
                self.seen[f"connect: {type(error).__name__}"] += 1
        round_end_s = time.monotonic() + SILENT_ROUND_S
        for connection in connections:
            with connection:
                connection.settimeout(max(0.01, round_end_s - time.monotonic()))
                try:
                    answer = connection.recv(64)
                    self.seen["closed by the server" if not answer else f"answered {answer[:12]!r}"] += 1
                except TimeoutError:
                    self.seen["still open at the round's end"] += 1
                except OSError as error:
                    self.seen[f"recv: {type(error).__name__}"] += 1


class Multipart(Attack):
    """Raw ZMTP 3.0 (NULL mechanism, as a PUSH peer): libzmq itself never sends a part before the message's
    last, so the never-ending message is written frame by frame here (https://rfc.zeromq.org/spec/23/)."""

    def __init__(self, endpoint: str, deadline_s: float) -> None:
        super().__init__("multipart", deadline_s)
        address = urlsplit(endpoint)
        self.address = (address.hostname, address.port)
        part_header = bytes([ZMTP_MORE | ZMTP_LONG]) + struct.pack(">Q", MULTIPART_PART_BYTES)
        self.part = part_header + b"\0" * MULTIPART_PART_BYTES

    def round(self) -> None:
        try:
            with socket.create_connection(self.address, timeout=ANSWER_TIMEOUT_S) as connection:
                connection.sendall(ZMTP_GREETING)
                _receive_exactly(connection, len(ZMTP_GREETING))
                connection.sendall(ZMTP_READY_PUSH)
                for _ in range(MULTIPART_PARTS):
                    connection.sendall(self.part)  # MORE set on every part: the message never ends
                    self.seen["parts sent"] += 1
                time.sleep(min(MULTIPART_HOLD_S, max(0.0, self.deadline_s - time.monotonic())))
        except OSError as error:
            self.seen[f"ZMTP: {type(error).__name__}"] += 1


ZMTP_MORE, ZMTP_LONG, ZMTP_COMMAND = 0x01, 0x02, 0x04
ZMTP_GREETING = b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
_READY_BODY = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 4) + b"PUSH"
ZMTP_READY_PUSH = bytes([ZMTP_COMMAND, len(_READY_BODY)]) + _READY_BODY


def _receive_exactly(connection: socket.socket, size: int) -> bytes:
    received = b""
    while len(received) < size:
        chunk = connection.recv(size - len(received))
        if not chunk:
            raise ConnectionResetError("the server closed the ZMTP handshake")
        received += chunk
    return received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server's HTTP address (loopback)")
    parser.add_argument("--frame-endpoint", required=True, help="the server's ZeroMQ frame endpoint (loopback)")
    parser.add_argument("--seconds", type=float, required=True, help="how long to attack")
    parser.add_argument("--out", type=Path, required=True, help="JSON file of what each attacker saw")
    parser.add_argument(
        "--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS), help="which attackers run (to tell them apart)"
    )
    args = parser.parse_args()
    url = urlsplit(args.url)
    require_loopback(url.hostname or "")
    require_loopback(urlsplit(args.frame_endpoint).hostname or "")
    deadline_s = time.monotonic() + args.seconds
    everyone = {
        "bodies": lambda: Bodies(url.hostname, url.port, deadline_s),
        "silent": lambda: Silent(url.hostname, url.port, deadline_s),
        "multipart": lambda: Multipart(args.frame_endpoint, deadline_s),
    }
    attacks = [everyone[name]() for name in args.attacks]
    for attack in attacks:
        attack.start()
    for attack in attacks:
        attack.join()
    seen = {attack.name.removeprefix("hostile-"): {"rounds": attack.rounds, **attack.seen} for attack in attacks}
    args.out.write_text(json.dumps(seen, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
