"""Log lines that a flood of bad frames cannot turn into a flood of log lines.

A misconfigured publisher sends the same bad frame 30 times a second; one line per reason per
interval, with the count of lines held back, says as much and keeps the disk and the ingest
thread free. The counts in /metrics stay exact either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(
        self, logger: logging.Logger, *, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last_logged: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        self._log(logging.WARNING, key, message, args)

    def error(self, key: str, message: str, *args: object) -> None:
        self._log(logging.ERROR, key, message, args)

    def _log(self, level: int, key: str, message: str, args: tuple[object, ...]) -> None:
        now = self._clock()
        last = self._last_logged.get(key)
        if last is not None and now - last < self._interval_s:
            self._held_back[key] = self._held_back.get(key, 0) + 1
            return
        self._last_logged[key] = now
        held_back = self._held_back.pop(key, 0)
        if held_back:
            message += f" ({held_back} more like it in the last {self._interval_s:g} s not logged)"
        self._logger.log(level, message, *args)
