"""Shared fixtures: tiny simulated recordings and a tiny trained run, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from poco_rt.cli.local_server import BackgroundServer
from poco_rt.models.config import ModelConfig, TrainConfig
from poco_rt.models.recording import Recording
from poco_rt.models.simulator import SimulatorConfig, simulate_recording

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FLAVELL = SHARED_DATA / "flavell_dag2023"

TINY_MODEL = ModelConfig(dim=32, head_dim=16, self_attention_heads=2, ffn_hidden=32, mlp_hidden=64, rotary_dims=8)
TINY_TRAIN = TrainConfig(steps=30, batch_windows=16, eval_every=10, seed=0, threads=1)


@pytest.fixture(scope="session")
def tiny_recording() -> Recording:
    return simulate_recording(sessions=2, frames=1100, seed=1, config=SimulatorConfig(network_units=40))


@pytest.fixture(scope="session")
def tiny_recording_path(tiny_recording: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    tiny_recording.save_npz(path)
    return path


def train_tiny(
    recording: Recording, run: Path, *, model_config: ModelConfig = TINY_MODEL, train_config: TrainConfig = TINY_TRAIN
) -> None:
    from poco_rt.models.training import train

    train(
        [recording],
        str(run),
        model_config=model_config,
        train_config=train_config,
        sources=["tiny"],
        show_progress=False,
    )


@pytest.fixture(scope="session")
def tiny_run(tiny_recording: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train_tiny(tiny_recording, run)
    return run


def needs_flavell() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not FLAVELL.exists(), reason=f"real recordings not present at {FLAVELL}")


# --- the real-time server (tests/test_server_*.py) --------------------------------------------------


@pytest.fixture(scope="session")
def served_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported as a model bundle: sessions sim00 (14 units) and sim01 (13 units)."""
    from poco_rt.models.export import export_bundle

    return export_bundle(tiny_run, tmp_path_factory.mktemp("served") / "bundle").path


class RunningServer(BackgroundServer):
    """The demo's BackgroundServer (uvicorn in a thread, OS-picked ports), with the addresses tests connect to."""

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    @property
    def frame_endpoint(self) -> str:
        return self.runtime.endpoints.frames

    @property
    def forecast_endpoint(self) -> str:
        return self.runtime.endpoints.forecasts


@pytest.fixture
def start_server(tmp_path: Path, served_bundle: Path):
    """A factory: `start_server(**settings)` runs a server for this test (ports 0, data in tmp_path)."""
    from poco_rt.server.settings import ServerSettings

    servers: list[RunningServer] = []

    def start(**overrides) -> RunningServer:
        fields = {
            "bundle": served_bundle,
            "data_dir": tmp_path / "data",
            "http_port": 0,
            "frame_port": 0,
            "forecast_port": 0,
            "stall_after_s": 30.0,
            **overrides,
        }
        server = RunningServer(ServerSettings(**fields)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    import threading

    leftovers = [thread.name for thread in threading.enumerate() if thread.name.startswith("poco-rt-")]
    assert not leftovers, f"threads left running after the server stopped: {leftovers}"


class StreamClient:
    """The acquisition side (PUSH frames) and a controller (SUB forecasts) of one server; every receive times out."""

    def __init__(self, context, server: RunningServer, *, sessions: tuple[str, ...] = ("sim00",)) -> None:
        import time

        import zmq

        from poco_rt.wire import forecast_topic

        self.push = context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.connect(server.frame_endpoint)
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        for session in sessions:
            self.sub.setsockopt(zmq.SUBSCRIBE, forecast_topic(session))
        self.sub.connect(server.forecast_endpoint)
        time.sleep(0.3)  # PUB/SUB's slow joiner: the subscription reaches the server's PUB socket asynchronously

    def send(self, values, *, frame_index: int, session: str = "sim00", acquisition_time_ns: int | None = None):
        import time

        from poco_rt.wire import encode_frame

        message = encode_frame(
            values,
            session=session,
            frame_index=frame_index,
            acquisition_time_ns=time.time_ns() if acquisition_time_ns is None else acquisition_time_ns,
        )
        self.push.send_multipart(message.parts, copy=message.copy)

    def send_parts(self, parts) -> None:
        self.push.send_multipart(list(parts))

    def receive(self, timeout_s: float = 10.0):
        """The next forecast off the SUB socket (decoded), or a failed test after timeout_s."""
        from poco_rt.wire import decode_forecast

        if not self.sub.poll(int(timeout_s * 1000)):
            pytest.fail(f"no forecast within {timeout_s} s")
        return decode_forecast(self.sub.recv_multipart())

    def nothing_within(self, timeout_s: float) -> bool:
        return not self.sub.poll(int(timeout_s * 1000))

    def close(self) -> None:
        self.push.close(linger=0)
        self.sub.close(linger=0)


@pytest.fixture
def stream_client():
    """A factory: `stream_client(server, sessions=("sim00",))` connects a StreamClient, closed after the test."""
    import zmq

    context = zmq.Context()
    clients: list[StreamClient] = []

    def connect(server: RunningServer, *, sessions: tuple[str, ...] = ("sim00",)) -> StreamClient:
        clients.append(StreamClient(context, server, sessions=sessions))
        return clients[-1]

    yield connect
    for client in clients:
        client.close()
    context.destroy(linger=0)


# --- the clients, replay and demo (tests/test_clients_*.py, test_replay.py, test_demo.py) ---------------------


@pytest.fixture
def start_default_server(tmp_path: Path):
    """A factory: a RunningServer with the embedded bundle (ports 0, data in tmp_path), stopped after."""
    from poco_rt.server.settings import ServerSettings

    servers: list[RunningServer] = []

    def start(**overrides) -> RunningServer:
        fields = {
            "data_dir": tmp_path / f"data{len(servers)}",
            "http_port": 0,
            "frame_port": 0,
            "forecast_port": 0,
            "stall_after_s": 30.0,
            **overrides,
        }
        servers.append(RunningServer(ServerSettings(**fields)).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
    import threading

    leftovers = [thread.name for thread in threading.enumerate() if thread.name.startswith("poco-rt-")]
    assert not leftovers, f"threads left running after the server stopped: {leftovers}"
