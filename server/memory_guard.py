"""A last-resort bound on the server's memory against a ZeroMQ message that never ends.

libzmq (4.3.5, measured) bounds each part of a message (`ZMQ_MAXMSGSIZE`) and counts whole messages
against the receive high-water mark, but keeps every part of a multipart message in its pipe, out of
the application's sight, until the last part arrives. A peer that sends part after part and never
the last one grows the process 1:1 with what it sends, and no socket option stops it; the only way
to free those parts is to end the connection that holds them, and libzmq does not say which one it is.

So the ingest thread asks this guard, at most ten times a second, whether the process's resident memory
is past `max_memory_mb`. If it is, the thread closes the frame socket and binds a new one on the
same address: every frame connection ends, with whatever half-sent message it held, and publishers
reconnect by themselves (their own queues keep what they had not sent). Frames in flight on TCP at
that moment are lost, and the sessions see the hole as a gap. If memory is still past the bound
a second afterwards, the frame socket was not the cause: the guard says so once and does not reset again
until memory has come back under the bound, so that memory held elsewhere cannot keep every
publisher from being heard.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.1  # reading /proc/self/statm takes microseconds; loopback TCP brings ~100 MiB in this time
VERIFY_AFTER_S = 1.0  # libzmq frees a dropped connection's parts on its I/O thread, soon after the reset
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float | None:
    """This process's resident memory in MiB (Linux /proc), or None where the OS does not say."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES / 2**20
    except (OSError, IndexError, ValueError):
        return None


class MemoryGuard:
    """Says when the frame socket should be reset: memory past `max_memory_mb` (0: never)."""

    def __init__(self, *, max_memory_mb: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_memory_mb = max_memory_mb
        self._clock = clock
        self._next_check = 0.0
        self._verify_at: float | None = None  # after a reset: when to see whether it helped
        self._held_elsewhere = False  # a reset did not help: none again until memory is under the bound

    def frame_socket_should_reset(self) -> bool:
        if self._max_memory_mb == 0 or (now := self._clock()) < self._next_check:
            return False
        self._next_check = now + CHECK_INTERVAL_S
        resident = resident_mb()
        if resident is None or resident <= self._max_memory_mb:
            self._verify_at, self._held_elsewhere = None, False
            return False
        if self._held_elsewhere or (self._verify_at is not None and now < self._verify_at):
            return False
        if self._verify_at is not None:
            self._verify_at, self._held_elsewhere = None, True
            logger.error(
                "the server still holds %.0f MiB a second after dropping the frame connections: the memory is "
                "held elsewhere; the frame socket is left alone until it falls under max_memory_mb=%d",
                resident, self._max_memory_mb,
            )  # fmt: skip
            return False
        self._verify_at = now + VERIFY_AFTER_S
        logger.error(
            "the server holds %.0f MiB, past max_memory_mb=%d: dropping every frame connection (a peer may be "
            "sending a message that never ends); publishers reconnect",
            resident, self._max_memory_mb,
        )  # fmt: skip
        return True
