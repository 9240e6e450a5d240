"""The server's Prometheus metrics, in a registry of its own (several servers share a test process).

Names follow Prometheus conventions (`_total` is added to counters by the client, `_seconds` for
durations). Stage latencies are histograms from the moment a frame's message left the socket:
`decode` (received -> checked and in the context), `infer` (the network run), `publish`
(encoding and handing to ZeroMQ, REST and WebSocket) and `server` (received -> forecast sent).
"""

from __future__ import annotations

import enum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from poco_rt.errors import RejectReason

UNKNOWN_SESSION_REASON = "unknown_session"  # the one reject reason that is not a wire RejectReason
REJECT_REASONS = (*(reason.value for reason in RejectReason), UNKNOWN_SESSION_REASON)

# 50 us to 2.5 s: a 30 Hz rig's budget is 33 ms, and the interesting tail sits between 1 and 100 ms.
LATENCY_BUCKETS_S = (
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2e-2, 3.3e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class Stage(enum.StrEnum):
    DECODE = "decode"
    INFER = "infer"
    PUBLISH = "publish"
    SERVER = "server"


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_received = Counter("poco_rt_frames_received", "Frame messages taken off a socket", registry=r)
        self.frames_accepted = Counter(
            "poco_rt_frames_accepted", "Frames put into a session's context", ["session"], registry=r
        )
        self.frames_rejected = Counter(
            "poco_rt_frames_rejected", "Frame messages refused, by reason", ["reason"], registry=r
        )
        self.frames_dropped = Counter(
            "poco_rt_frames_dropped", "Valid frames dropped by the order policy", ["reason"], registry=r
        )
        self.gap_frames_filled = Counter(
            "poco_rt_gap_frames_filled", "Missing frames filled by holding the last frame", ["session"], registry=r
        )
        self.session_resets = Counter(
            "poco_rt_session_resets", "Sessions reset to warming up by a long gap", ["session"], registry=r
        )
        self.forecasts = Counter("poco_rt_forecasts", "Forecasts published", ["session"], registry=r)
        self.forecasts_coalesced = Counter(
            "poco_rt_forecasts_coalesced",
            "Frames taken in a backlog without a forecast of their own (a newer frame was already queued)",
            registry=r,
        )
        self.stage_latency = Histogram(
            "poco_rt_stage_latency_seconds", "Time spent per stage", ["stage"], buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.frame_age = Histogram(
            "poco_rt_frame_age_seconds",
            "Receive time minus acquisition time (meaningful with synced clocks)",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.ingest_batch = Histogram(
            "poco_rt_ingest_batch_messages",
            "Messages taken per loop turn",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.recorded_frames = Counter("poco_rt_recorded_frames", "Frames written to disk", registry=r)
        self.recorder_dropped_frames = Counter(
            "poco_rt_recorder_dropped_frames", "Accepted frames not recorded: the recorder queue was full", registry=r
        )
        self.recorder_write_errors = Counter("poco_rt_recorder_write_errors", "Failed recording writes", registry=r)
        self.recorder_queue_depth = Gauge("poco_rt_recorder_queue_depth", "Frames waiting for the disk", registry=r)
        self.websocket_subscribers = Gauge(
            "poco_rt_websocket_subscribers", "Open WebSocket forecast subscriptions", registry=r
        )
        self.websocket_sent = Counter("poco_rt_websocket_forecasts_sent", "Forecasts sent over WebSocket", registry=r)
        self.websocket_skipped = Counter(
            "poco_rt_websocket_forecasts_skipped",
            "Forecasts a slow WebSocket subscriber skipped (it got a newer one instead)",
            registry=r,
        )
        self.frame_socket_resets = Counter(
            "poco_rt_frame_socket_resets",
            "Times every frame connection was dropped because the server's memory passed max_memory_mb",
            registry=r,
        )
        self.sessions = Gauge("poco_rt_sessions", "Open sessions by state", ["state"], registry=r)
        for reason in REJECT_REASONS:  # every reason shows from the start, at 0, so alerts and rates see it
            self.frames_rejected.labels(reason)
        for stage in Stage:
            self.stage_latency.labels(stage.value)

    def forget_session(self, session: str) -> None:
        """Remove a closed session's series, so that /metrics stays as long as the open sessions make it.

        A session opened again under the same name starts its counters from 0, which Prometheus reads
        as a counter reset, as after a server restart."""
        for per_session in (self.frames_accepted, self.gap_frames_filled, self.session_resets, self.forecasts):
            per_session.remove(session)

    def render(self) -> bytes:
        return generate_latest(self.registry)
