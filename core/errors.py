"""The one error tree of poco-rt.

    PocoRtError
    ├── RecordingError      a recording file that cannot be read as (T, N) float traces
    ├── BundleError         a model bundle that is missing, inconsistent or fails its hashes
    └── UnknownSession      a session name the bundle (or the server) does not know

Callers catch the narrowest class they can act on; everything else is a bug and should surface.
Parameter mistakes made by a programmer (a negative step count, say) are plain `ValueError`s.
"""


class PocoRtError(Exception):
    """Base class of every error poco-rt raises on purpose."""


class RecordingError(PocoRtError, ValueError):
    """A recording that cannot be used: unknown format, wrong shape, NaNs, empty."""


class BundleError(PocoRtError):
    """A model bundle that cannot be loaded as written."""


class UnknownSession(PocoRtError, KeyError):
    """A session name that is not in the bundle."""

    def __str__(self) -> str:
        # KeyError quotes its argument; this message is read by people.
        return str(self.args[0]) if self.args else "unknown session"
