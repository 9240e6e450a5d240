"""The server's one settings class: flags, POCO_RT_* environment variables and an optional TOML file.

Precedence, highest first: values passed to the constructor (the CLI's flags), the environment
(`POCO_RT_HTTP_PORT=8700`), the TOML file named by `config_file` (or `POCO_RT_CONFIG_FILE`), the
defaults below. Everything is validated when the object is built, so a server with an unsafe or
inconsistent configuration refuses to start instead of failing on the first frame. The object is
passed into `create_app(settings)`; nothing else in poco-rt reads the environment.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from poco_rt.bundle import check_session_name
from poco_rt.server.live_accuracy import MAX_LEVELS, AccuracyConfig
from poco_rt.server.policy import DEFAULT_RESYNC_AFTER_FRAMES
from poco_rt.wire import DEFAULT_LIMITS, WireLimits

WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # binds that listen on every address the machine has


class EngineDevice(enum.StrEnum):
    """Where the network runs. CUDA needs the onnxruntime-gpu package instead of onnxruntime."""

    CPU = "cpu"
    CUDA = "cuda"


class FrameSocketKind(enum.StrEnum):
    """How frames arrive: PULL (publishers PUSH to us; the default) or SUB (publishers PUB to us)."""

    PULL = "pull"
    SUB = "sub"


class _TomlFileSource(PydanticBaseSettingsSource):
    """The TOML file named by `config_file` in the flags or the environment (a table-less TOML of field names)."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._init_settings = init_settings
        self._env_settings = env_settings

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        path = self._init_settings().get("config_file") or self._env_settings().get("config_file")
        if path is None:
            return {}
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config_file={str(path)!r} does not exist; give a TOML file of settings or leave it out")
        return TomlConfigSettingsSource(self.settings_cls, toml_file=path)()


class ServerSettings(BaseSettings):
    """Everything `poco-rt serve` can be told. Ports of 0 let the OS pick (the bound ports are logged)."""

    model_config = SettingsConfigDict(env_prefix="POCO_RT_", extra="forbid", frozen=True)

    config_file: Path | None = Field(default=None, description="TOML file of these settings (lower precedence)")
    bundle: Path | None = Field(default=None, description="model bundle directory")
    data_dir: Path = Field(default=Path("poco-rt-data"), description="recordings of every accepted frame go here")

    host: str = Field(default="127.0.0.1", description="address every socket binds (HTTP and ZeroMQ)")
    http_port: int = Field(default=8700, ge=0, le=65535, description="REST + WebSocket port (0: OS picks)")
    frame_port: int = Field(default=8701, ge=0, le=65535, description="ZeroMQ frame input port (0: OS picks)")
    forecast_port: int = Field(default=8702, ge=0, le=65535, description="ZeroMQ forecast PUB port (0: OS picks)")
    grpc_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Open Inference Protocol gRPC port (0: OS picks; none: no gRPC); needs the grpc extra",
    )
    frame_socket: FrameSocketKind = Field(default=FrameSocketKind.PULL, description="ZeroMQ frame socket type")
    auth_token: SecretStr | None = Field(default=None, description="bearer token REST/WebSocket clients must send")
    allow_unauthenticated_remote: bool = Field(
        default=False, description="allow a non-loopback bind without auth_token (a trusted, isolated network)"
    )

    curve_server_key_file: Path | None = Field(
        default=None,
        description="ZeroMQ CURVE: the server's secret certificate (poco-rt curve-keys); frames and forecasts "
        "then travel encrypted, to clients that know the server's public key",
    )
    curve_clients_dir: Path | None = Field(
        default=None,
        description="ZeroMQ CURVE: a folder of client public certificates; only those clients may connect "
        "(none: any client that knows the server's public key)",
    )

    open_sessions: dict[str, str] = Field(
        default_factory=dict, description="sessions opened at start: stream name -> bundle session (calibration)"
    )
    new_animals: dict[str, int] = Field(
        default_factory=dict,
        description="streams opened at start for animals the bundle has never seen: stream name -> unit count "
        "(zero-shot, then fine-tuned live; a stream adapted before reopens with its last good calibration)",
    )
    auto_adapt: bool = Field(
        default=False, description="fine-tune the new_animals streams by themselves as they record (AutoAdapt defaults)"
    )
    max_sessions: int = Field(default=16, ge=1, description="open sessions at most (each holds C x N floats)")
    max_units: int = Field(default=DEFAULT_LIMITS.max_units, ge=1, description="units per frame at most")
    max_payload_bytes: int = Field(default=DEFAULT_LIMITS.max_payload_bytes, ge=1, description="frame bytes at most")
    max_body_bytes: int = Field(default=32 * 2**20, ge=1024, description="HTTP request body bytes at most")
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="an HTTP request body must arrive within this long (else 408)"
    )
    max_websocket_subscribers: int = Field(
        default=64, ge=1, description="forecast WebSockets open at once at most; more are closed with 1013"
    )
    max_buffered_body_bytes: int = Field(
        default=128 * 2**20,
        ge=1024,
        description="request body bytes held at once across all HTTP connections; a body that would go "
        "beyond is refused with 503 (try again later)",
    )
    max_http_connections: int = Field(
        default=256,
        ge=2,
        description="HTTP and WebSocket connections open at once at most; more are answered 503 and closed",
    )
    request_header_timeout_s: float = Field(
        default=10.0, gt=0, description="a connection must send a request's headers within this long (else closed)"
    )
    allowed_hosts: list[str] | None = Field(
        default=None,
        description="Host header values (names or addresses, no port) requests may carry; '*' for any "
        "(default: the bound host, localhost, 127.0.0.1 and ::1; any for a 0.0.0.0 or :: bind)",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="origins (https://name:port) whose pages may open the forecast WebSocket besides the "
        "server's own (default: none)",
    )

    max_gap_fill_frames: int = Field(
        default=3, ge=0, description="a gap of up to this many missing frames is filled by holding the last frame"
    )
    resync_after_frames: int = Field(
        default=DEFAULT_RESYNC_AFTER_FRAMES,
        ge=2,
        description="this many frames in a row far behind the last taken one, each following the one before, "
        "resync the session to them (a frame far ahead cannot silence it)",
    )
    stall_after_s: float = Field(default=2.0, gt=0, description="a session with no frame for this long is stalled")
    frame_queue_messages: int = Field(
        default=1000, ge=1, description="ZeroMQ receive high-water mark: frames queued before publishers drop"
    )
    forecast_queue_messages: int = Field(
        default=1000, ge=1, description="ZeroMQ PUB high-water mark per subscriber: forecasts queued before drops"
    )
    zmq_handshake_timeout_s: float = Field(
        default=10.0, gt=0, description="a ZeroMQ peer that has not finished its handshake by then is disconnected"
    )
    zmq_heartbeat_interval_s: float = Field(
        default=5.0, gt=0, description="the ZeroMQ sockets send a heartbeat (ZMTP PING) to each peer this often"
    )
    zmq_heartbeat_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=6553,
        description="a ZeroMQ peer that sends nothing (not even a heartbeat's answer) for this long is disconnected",
    )
    max_memory_mb: int = Field(
        default=4096,
        ge=0,
        description="resident memory at most before every ZeroMQ frame connection is dropped (libzmq keeps a "
        "multipart message that never ends whole in memory); publishers reconnect (0: no bound)",
    )
    max_batch_messages: int = Field(
        default=64, ge=1, description="frames taken off the socket per loop turn; a backlog makes one forecast each"
    )
    engine_threads: int = Field(
        default=1,
        ge=1,
        description="threads per forecast: with a bundle that has model.encode.onnx and model.decode.onnx (fp32, "
        "cpu), chunks of units decoded beside the ingest thread on the other cores; else onnxruntime's intra-op "
        "threads (they never spin)",
    )
    engine_device: EngineDevice = Field(
        default=EngineDevice.CPU, description="where the network runs: cpu, or cuda (needs onnxruntime-gpu)"
    )
    engine_int8: bool = Field(
        default=False, description="serve the bundle's model.int8.onnx (poco-rt export --int8) instead of fp32"
    )

    record_frames: bool = Field(default=True, description="record every accepted frame under data_dir/recordings")
    recorder_chunk_frames: int = Field(default=256, ge=1, description="frames per recording chunk file")
    recorder_queue_frames: int = Field(
        default=256, ge=1, description="frames waiting for the disk at most; beyond it frames are counted, not saved"
    )
    job_workers: int = Field(default=1, ge=1, description="offline jobs (PINning) run at once, one process each")
    max_queued_jobs: int = Field(default=16, ge=1, description="jobs waiting for a worker at most; more are refused")
    job_threads: int = Field(default=1, ge=1, description="BLAS / OpenMP threads of each job process")
    job_niceness: int = Field(default=10, ge=0, le=19, description="how much lower than the server a job is scheduled")
    job_idle_priority: bool = Field(
        default=True, description="run jobs under SCHED_IDLE (Linux): only on CPU time nothing else wants"
    )
    job_memory_mb: int = Field(
        default=4096, ge=0, description="address space of each job process; beyond it the job fails (0: no limit)"
    )
    dask_scheduler: str | None = Field(
        default=None,
        pattern=r"^(tcp|tls)://\S+$",
        description="Dask scheduler (tcp://HOST:8786) that pinning-sweep jobs send their networks to; "
        "none: each job's worker process trains them itself",
    )
    job_cpus: list[int] | None = Field(
        default=None,
        description="cores job processes may run on (default: every core but the first when there are several); "
        "the ingest thread keeps to the others",
    )
    shutdown_timeout_s: float = Field(default=5.0, gt=0, description="time each thread gets to stop")
    reject_log_interval_s: float = Field(default=5.0, gt=0, description="one log line per reject reason per interval")
    live_accuracy: bool = Field(
        default=True, description="score every forecast as its frames arrive and serve calibrated intervals"
    )
    interval_levels: list[float] = Field(
        default=[0.8, 0.95], max_length=MAX_LEVELS, description="coverage levels of the forecast intervals"
    )
    interval_learning_rate: float = Field(
        default=0.05, gt=0, le=1, description="step of the intervals' online quantile tracking (scale-free)"
    )
    interval_warm_up_forecasts: int = Field(
        default=50, ge=1, description="scored forecasts per step before intervals are served and coverage counted"
    )
    accuracy_window_frames: int = Field(
        default=1000, ge=1, description="frames the live per-unit error averages over (exponential weights)"
    )
    crossing_paths: int = Field(
        default=64, ge=1, description="recent residual paths kept per session for crossing probabilities"
    )
    wire_intervals: bool = Field(
        default=False,
        description="publish forecasts as protocol version 2, with interval bounds (subscribers must read it)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlFileSource(settings_cls, init_settings, env_settings)

    @model_validator(mode="after")
    def _check_safe_bind(self) -> ServerSettings:
        if not is_loopback(self.host) and self.auth_token is None and not self.allow_unauthenticated_remote:
            raise ValueError(
                f"host={self.host!r} is reachable from other machines but auth_token is not set; set "
                "POCO_RT_AUTH_TOKEN (or --auth-token), bind 127.0.0.1, or set allow_unauthenticated_remote"
            )
        opened = len(self.open_sessions) + len(self.new_animals)
        if opened > self.max_sessions:
            raise ValueError(
                f"open_sessions and new_animals name {opened} sessions but max_sessions={self.max_sessions}; "
                "raise max_sessions or open fewer"
            )
        both = sorted(set(self.open_sessions) & set(self.new_animals))
        if both:
            raise ValueError(f"{both} are in both open_sessions and new_animals; a stream is one or the other")
        for name, units in self.new_animals.items():
            check_session_name(name)
            if not 1 <= units <= self.max_units:
                raise ValueError(f"new_animals[{name!r}] = {units} units; it must be 1..max_units ({self.max_units})")
        if self.curve_clients_dir is not None and self.curve_server_key_file is None:
            raise ValueError("curve_clients_dir needs curve_server_key_file: the allow-list is of CURVE clients")
        if self.curve_server_key_file is not None and not self.curve_server_key_file.is_file():
            raise ValueError(f"curve_server_key_file={str(self.curve_server_key_file)!r} is not a file")
        if self.curve_clients_dir is not None and not self.curve_clients_dir.is_dir():
            raise ValueError(f"curve_clients_dir={str(self.curve_clients_dir)!r} is not a folder")
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_buffered_body_bytes={self.max_buffered_body_bytes} is below max_body_bytes="
                f"{self.max_body_bytes}: no body of the largest size could ever be taken; raise it"
            )
        if self.max_http_connections <= self.max_websocket_subscribers:
            raise ValueError(
                f"max_http_connections={self.max_http_connections} leaves no connection for REST beside "
                f"max_websocket_subscribers={self.max_websocket_subscribers}; raise it above that"
            )
        self.wire_limits()  # WireLimits checks its own ranges
        self.accuracy_config()  # and AccuracyConfig its levels
        return self

    def wire_limits(self) -> WireLimits:
        return WireLimits(max_units=self.max_units, max_payload_bytes=self.max_payload_bytes)

    def accuracy_config(self) -> AccuracyConfig:
        return AccuracyConfig(
            enabled=self.live_accuracy,
            levels=tuple(self.interval_levels),
            learning_rate=self.interval_learning_rate,
            window_frames=self.accuracy_window_frames,
            warm_up_forecasts=self.interval_warm_up_forecasts,
            crossing_paths=self.crossing_paths,
        )

    def http_hosts(self) -> frozenset[str] | None:
        """The Host names requests may carry (lower case, IPv6 without brackets); None: any.

        A page on another site can reach a loopback server through DNS rebinding (its own name
        made to resolve to 127.0.0.1), and the browser then sends that name as the Host; refusing
        names the server does not go by stops it. A wildcard bind has no one name to check
        against, and a non-loopback bind needs `auth_token` already, which such a page lacks.
        """
        if self.allowed_hosts is not None:
            names = frozenset(name.lower().strip("[]") for name in self.allowed_hosts)
            return None if "*" in names else names
        if self.host in WILDCARD_HOSTS:
            return None
        return frozenset({self.host.lower().strip("[]"), "localhost", "127.0.0.1", "::1"})

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    def job_cores(self) -> list[int]:
        """The cores job processes run on: `job_cpus`, or every core but the first (all on a one-core machine)."""
        if self.job_cpus:
            return sorted(self.job_cpus)
        cores = available_cores()
        return cores[1:] if len(cores) > 1 else cores

    def realtime_cores(self) -> list[int]:
        """The cores the ingest thread keeps to: those not given to jobs (every core if jobs have them all)."""
        job_cores = set(self.job_cores())
        return [core for core in available_cores() if core not in job_cores] or available_cores()

    def io_cores(self) -> list[int]:
        """The cores ZeroMQ's I/O threads run on: every core but the ingest thread's (all on a one-core machine).

        libzmq starts its I/O thread when the first socket is made, on the ingest thread, and the thread
        would inherit that thread's one core: each forecast's send and each frame's receipt would then
        wait until the ingest thread yields its core (after its scoring and metrics), not run beside it."""
        realtime = set(self.realtime_cores())
        return [core for core in available_cores() if core not in realtime] or available_cores()

    @property
    def jobs_db(self) -> Path:
        return self.data_dir / "jobs.sqlite"

    @property
    def jobs_dir(self) -> Path:
        """Each job's results and worker log, under its id."""
        return self.data_dir / "jobs"


def available_cores() -> list[int]:
    """The cores this process may run on (its affinity, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the sockets on this machine ("localhost" counts; "0.0.0.0" does not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve to anything
