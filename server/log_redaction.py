"""Tokens kept out of uvicorn's log lines.

A browser cannot set headers on a WebSocket, so the forecast WebSocket also takes its token as
`?token=`; uvicorn writes each request's path with its query string (the access log, and
"WebSocket ... [accepted]" / "403" lines), which put the token, right or wrong, in the log in
clear. `redact_tokens_in_uvicorn_logs` replaces every `token=` value in those lines with `***`.
"""

from __future__ import annotations

import logging
import re

UVICORN_LOGGERS = ("uvicorn.access", "uvicorn.error")  # the names uvicorn's protocols log through
_TOKEN_VALUE = re.compile(r"((?:^|[?&;])token=)[^&;\s\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the value of every `token=` query parameter replaced by `***`."""
    return _TOKEN_VALUE.sub(r"\1***", text)


class TokenRedactingFilter(logging.Filter):
    """Rewrites a record's message and string arguments; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def redact_tokens_in_uvicorn_logs() -> None:
    """Add the filter to uvicorn's loggers, once per process (servers in one process share the loggers)."""
    for name in UVICORN_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(existing, TokenRedactingFilter) for existing in log.filters):
            log.addFilter(TokenRedactingFilter())
