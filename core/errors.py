"""The one error tree of poco-rt.

    PocoRtError
    ├── RecordingError          a recording file that cannot be read as (T, N) float traces
    ├── BundleError             a model bundle that is missing, inconsistent or fails its hashes
    ├── UnknownSession          a session name the bundle (or the server) does not know
    ├── MissingExtra            an optional dependency (an install extra) that this install lacks
    ├── ServerError             a control request (REST) the server refuses as asked
    │   ├── SessionExists           opening a session whose stream name is already open
    │   ├── SessionLimitReached     opening more sessions than `max_sessions`
    │   ├── SubscriptionLimitReached  a forecast WebSocket beyond `max_websocket_subscribers`
    │   ├── UnknownBundle           naming a bundle the server has not loaded
    │   ├── IncompatibleSwap        a swap that would change a session's unit count, context or horizon
    │   ├── InvalidSessionOptions   options for opening a stream that contradict each other or the limits
    │   ├── NotEnoughFrames         fine-tuning a stream before it has recorded enough frames
    │   ├── AdaptationBusy          fine-tuning a stream while a fine-tune of it is still queued or running
    │   ├── NotRunning              a command for the ingest thread while it is not running
    │   ├── UnknownModel            an Open Inference Protocol model name or version the server does not serve
    │   ├── InferenceRequestError   an Open Inference Protocol request the model cannot carry out (its tensors)
    │   └── DataDirUnusable         a data directory the server cannot write (read-only, full, not a folder)
    ├── ClientError             what a client (poco_rt.clients) was refused by the server it talks to
    │   ├── RequestRefused          an HTTP error status; `.status_code` and the server's `.detail`
    │   └── SubscriptionClosed      a WebSocket subscription the server ended; `.code` and `.reason`
    ├── JobError                an offline job request the server refuses as asked
    │   ├── UnknownJob              a job id the job table does not hold
    │   ├── JobQueueFull            submitting beyond `max_queued_jobs` waiting jobs
    │   ├── JobStateConflict        an action the job's state does not allow (the result of an unfinished job)
    │   └── JobStoreUnavailable     a job table that cannot be read or written (corrupt, locked, on a full disk)
    └── FrameError              a wire message that is refused; `.reason` (a RejectReason) says why
        ├── WrongPartCount          not the message's number of ZeroMQ parts
        ├── BadHeader               header too short or too long, wrong magic, or the wrong message kind
        ├── UnsupportedVersion      a protocol version this side does not read
        ├── BadDtype                a payload dtype code other than float32, float64 or uint16
        ├── BadSessionName          a session name that is empty, too long, or outside [A-Za-z0-9._-]
        ├── BadModelVersion         a forecast's model version that is empty, too long or not visible ASCII
        ├── BadShape                a frame with zero units, a forecast with zero horizon, a payload of the wrong rank
        ├── Oversized               more units, horizon or payload bytes than the receiver's limits allow
        ├── PayloadSizeMismatch     payload bytes that differ from what the header declares
        ├── TopicMismatch           a forecast whose topic part does not name its header's session
        ├── UnitCountMismatch       a frame whose unit count differs from its session's buffer
        └── NonFiniteValues         NaN or inf in a frame (raised by the server's policy, never by decoding)

Callers catch the narrowest class they can act on; everything else is a bug and should surface.
Parameter mistakes made by a programmer (a negative step count, say) are plain `ValueError`s.
Each `FrameError` subclass stands for exactly one `RejectReason`, so that the server can count
rejected messages by reason (`except FrameError as error: rejects[error.reason] += 1`) without
parsing messages, and a test can check that every reason has its class.
"""

import enum
from typing import ClassVar


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


class MissingExtra(PocoRtError, ImportError):
    """A feature whose optional dependencies are not installed; the message names the extra that brings them."""


class RejectReason(enum.StrEnum):
    """Why a wire message was refused; the value is the label it is counted under (a metric label)."""

    WRONG_PART_COUNT = "wrong_part_count"
    BAD_HEADER = "bad_header"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_DTYPE = "bad_dtype"
    BAD_SESSION_NAME = "bad_session_name"
    BAD_MODEL_VERSION = "bad_model_version"
    BAD_SHAPE = "bad_shape"
    OVERSIZED = "oversized"
    PAYLOAD_SIZE_MISMATCH = "payload_size_mismatch"
    TOPIC_MISMATCH = "topic_mismatch"
    UNIT_COUNT_MISMATCH = "unit_count_mismatch"
    NON_FINITE = "non_finite"


class FrameError(PocoRtError, ValueError):
    """A wire message (a frame, or a forecast on a subscriber's side) that cannot be accepted.

    Ingest catches this class only, counts `reason` and goes on with the next message: one bad
    message from one rig must never stop the others. It is a `ValueError` so that an encoder's
    refusal of bad arguments reads like any other bad argument.
    """

    reason: ClassVar[RejectReason]


class WrongPartCount(FrameError):
    """A message with another number of ZeroMQ parts than its kind has (2 for a frame, 3 for a forecast)."""

    reason = RejectReason.WRONG_PART_COUNT


class BadHeader(FrameError):
    """A header that is not a poco-rt header of the expected kind, or whose length disagrees with itself."""

    reason = RejectReason.BAD_HEADER


class UnsupportedVersion(FrameError):
    """A poco-rt header of a protocol version this side cannot read (the sender is newer or older)."""

    reason = RejectReason.UNSUPPORTED_VERSION


class BadDtype(FrameError):
    """A payload dtype the protocol does not carry."""

    reason = RejectReason.BAD_DTYPE


class BadSessionName(FrameError):
    """A session name that could not name a bundle session (empty, too long, or unsafe characters)."""

    reason = RejectReason.BAD_SESSION_NAME


class BadModelVersion(FrameError):
    """A forecast's model version that is empty, too long, or not visible ASCII."""

    reason = RejectReason.BAD_MODEL_VERSION


class BadShape(FrameError):
    """A payload with no values (zero units or zero horizon), or an array of the wrong rank to encode."""

    reason = RejectReason.BAD_SHAPE


class Oversized(FrameError):
    """A message over the receiver's limits: too many units, too long a horizon, or too many bytes."""

    reason = RejectReason.OVERSIZED


class PayloadSizeMismatch(FrameError):
    """A payload whose byte count is not what the header's shape and dtype make it."""

    reason = RejectReason.PAYLOAD_SIZE_MISMATCH


class TopicMismatch(FrameError):
    """A forecast whose topic part is not its header's session name followed by NUL."""

    reason = RejectReason.TOPIC_MISMATCH


class UnitCountMismatch(FrameError):
    """A frame whose unit count is not the unit count of the buffer it is decoded into."""

    reason = RejectReason.UNIT_COUNT_MISMATCH


class NonFiniteValues(FrameError):
    """A frame holding NaN or inf; the server's policy decides whether to raise it."""

    reason = RejectReason.NON_FINITE


class ServerError(PocoRtError):
    """A control request the server refuses as asked; the message says what to do instead."""


class SessionExists(ServerError):
    """A session with that stream name is already open."""


class SessionLimitReached(ServerError):
    """Opening the session would exceed `max_sessions`."""


class SubscriptionLimitReached(ServerError):
    """Subscribing would exceed `max_websocket_subscribers` open forecast WebSockets."""


class UnknownBundle(ServerError, KeyError):
    """A bundle version that is not loaded."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown bundle"


class IncompatibleSwap(ServerError):
    """A swap that cannot keep the session's context: another unit count, context length or horizon."""


class InvalidSessionOptions(ServerError, ValueError):
    """Options for opening a stream that contradict each other or the server's limits."""


class NotEnoughFrames(ServerError):
    """A fine-tune asked for before the stream recorded enough frames; the message says how many are needed."""


class AdaptationBusy(ServerError):
    """A fine-tune of the stream is already queued or running; one round at a time per stream."""


class NotRunning(ServerError):
    """The ingest thread is not running (starting, stopping or stopped), so it cannot take the command."""


class UnknownModel(ServerError, KeyError):
    """A model name other than the served one, or a network version that is not loaded (Open Inference Protocol)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


class InferenceRequestError(ServerError, ValueError):
    """An Open Inference Protocol request (REST or gRPC) the served model cannot carry out: inputs or outputs
    it cannot take, or an unload of the model it serves."""


class DataDirUnusable(ServerError):
    """The data directory (recordings, the job table, job results) cannot be created or written."""


class JobError(PocoRtError):
    """An offline job request the server refuses as asked; the message says what to do instead."""


class UnknownJob(JobError, KeyError):
    """A job id that is not in the job table."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown job"


class JobQueueFull(JobError):
    """Submitting the job would exceed `max_queued_jobs` jobs waiting for a worker."""


class JobStateConflict(JobError):
    """An action the job's current state does not allow: its result while it runs, a retry while it waits."""


class JobStoreUnavailable(JobError):
    """The job table's file cannot be used: not a SQLite database, locked by another process past the
    busy timeout, or on a disk that is full or read-only. The message names the file and the cause."""


class ClientError(PocoRtError):
    """Something a client asked of a server that the server refused or ended (transport errors stay httpx's/zmq's)."""


class RequestRefused(ClientError):
    """An HTTP error status from the server, with its own explanation (`{"detail": ...}` in the body)."""

    def __init__(self, *, method: str, path: str, status_code: int, detail: str) -> None:
        super().__init__(f"{method} {path} -> {status_code}: {detail}")
        self.method = method
        self.path = path
        self.status_code = status_code
        self.detail = detail


class SubscriptionClosed(ClientError):
    """The server closed a WebSocket subscription for a reason other than stopping (4404: session not open)."""

    def __init__(self, *, code: int, reason: str) -> None:
        super().__init__(f"the server closed the forecast subscription (code {code}: {reason or 'no reason given'})")
        self.code = code
        self.reason = reason
