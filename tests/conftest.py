"""Shared fixtures: tiny simulated recordings and a tiny trained run, made once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poco_rt.bundle import load_bundle
from poco_rt.cli.local_server import BackgroundServer
from poco_rt.models.recording import Recording
from poco_rt.models.simulator import SimulatorConfig, simulate_recording
from poco_rt.server.engine import Engine
from tests.helpers import C, train_tiny


@pytest.fixture(scope="session")
def tiny_recording() -> Recording:
    return simulate_recording(sessions=2, frames=1100, seed=1, config=SimulatorConfig(network_units=40))


@pytest.fixture(scope="session")
def tiny_recording_path(tiny_recording: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    tiny_recording.save_npz(path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tiny_recording: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train_tiny(tiny_recording, run)
    return run


# --- the real-time server (tests/test_server_*.py) --------------------------------------------------


@pytest.fixture(scope="session")
def served_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported as a model bundle: sessions sim00 (14 units) and sim01 (13 units)."""
    from poco_rt.models.export import export_bundle

    return export_bundle(tiny_run, tmp_path_factory.mktemp("served") / "bundle").path


@pytest.fixture(scope="session")
def int8_bundle(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported with its int8 network as well (an export takes about 20 s: one for the suite)."""
    from poco_rt.models.export import export_bundle

    return export_bundle(tiny_run, tmp_path_factory.mktemp("int8") / "bundle", int8=True).path


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


# --- `poco-rt serve` in a process of its own (tests/server/test_faults.py): what signals can kill -----------


class ServeProcess:
    """`poco-rt serve` as a child process, its log in a file, found by the address it logs."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        import subprocess
        import sys

        self.log_path = log_path
        with log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "poco_rt.cli.main", "serve", *args], stdout=log, stderr=subprocess.STDOUT
            )
        self.url = self._wait_for_url()
        self._wait_ready()

    def _wait_for_url(self, timeout_s: float = 60.0) -> str:
        import re
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.findall(r"HTTP on (http://127\.0\.0\.1:\d+)", self.log_path.read_text())
            if found:
                return found[-1]  # the log file is shared by a server and its restarts
            if self.process.poll() is not None:
                pytest.fail(f"poco-rt serve exited with {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        pytest.fail(f"poco-rt serve logged no HTTP address within {timeout_s} s:\n{self.log_tail()}")

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"poco-rt serve was not ready within {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text()[-3000:]

    def signal(self, signum: int, timeout_s: float = 30.0) -> int:
        """Send `signum` and wait for the exit; the return code."""
        import subprocess

        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"poco-rt serve did not exit within {timeout_s} s of signal {signum}:\n{self.log_tail()}")


@pytest.fixture
def serve_process(tmp_path: Path):
    """A factory: `serve_process(*args)` runs `poco-rt serve ARGS` (log: tmp_path/serve.log), killed after the test."""
    processes: list[ServeProcess] = []

    def start(*args: str) -> ServeProcess:
        processes.append(ServeProcess(list(args), tmp_path / "serve.log"))
        return processes[-1]

    yield start
    for server in processes:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


# --- the Open Inference Protocol (tests/server/test_oip.py, tests/server/test_grpc.py) ---------------


@pytest.fixture
def oip_reference(served_bundle):
    """(context, unit_embeddings, expected forecast) for 5 units of session sim00."""
    bundle = load_bundle(served_bundle)
    embeddings = bundle.session("sim00").unit_embeddings[:5]
    context = np.random.default_rng(0).normal(size=(5, C)).astype(np.float32)
    return context, embeddings, Engine(bundle).forecast_normalised(context, embeddings)
