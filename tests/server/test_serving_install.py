"""The serving install, as the Dockerfile does it (no Docker engine here): a fresh virtual environment, poco-rt's
wheel installed by deploy/install-serving.sh, no torch; `poco-rt serve` from it answers /readyz and forecasts.

The source is copied first, leaving out what .dockerignore leaves out of the image's build context,
so the wheel is built from what the image's builder stage sees. Needs the package index (or a
wheel cache); skipped, saying why, only when pip finds neither.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from poco_rt.bundle import load_bundle
from poco_rt.clients import ForecastClient, FramePublisher
from poco_rt.models.recording import load_recording
from poco_rt.resources import default_bundle_path, demo_recording_path
from poco_rt.server.engine import Engine
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "deploy/install-serving.sh"
NO_INDEX = (
    "No matching distribution found",
    "Could not find a version",
    "NewConnectionError",
    "Network is unreachable",
)


def run_install_step(step: str, target: Path, *, python: Path, cwd: Path) -> None:
    result = subprocess.run(
        ["sh", INSTALL, step, str(target)],
        cwd=cwd,
        env={**os.environ, "PYTHON": str(python)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if any(sign in output for sign in NO_INDEX):
            pytest.skip(f"no package index or wheel cache reachable for the serving install: {output[-500:]}")
        pytest.fail(f"{INSTALL} {step} failed:\n{output[-3000:]}")


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.removeprefix("**/") for line in lines if line and not line.startswith("#")]


def dockerfile_stages() -> dict[str, str]:
    """The Dockerfile's stages by name, comments left out; the last one is the default target."""
    code = re.sub(r"#.*", "", (ROOT / "Dockerfile").read_text())
    stages = re.split(r"^FROM ", code, flags=re.MULTILINE)[1:]
    return {re.match(r"\S+ AS (\S+)", stage).group(1): stage for stage in stages}


def test_the_dockerfile_installs_with_the_one_script():
    stages = dockerfile_stages()
    assert list(stages) == ["builder", "base", "train", "serving"]  # serving, the last, is the default target
    assert f"RUN sh {INSTALL} wheel /wheels" in stages["builder"]
    assert "RUN sh /tmp/install-serving.sh install /wheels" in stages["serving"]
    assert all("torch" not in stages[name] for name in ("builder", "base", "serving"))


def test_the_dockerfiles_train_target_pins_the_train_extras_torch():
    import tomllib

    train_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    (torch,) = [requirement for requirement in train_extra if requirement.startswith("torch")]
    train = dockerfile_stages()["train"]
    # CPU wheels by default (no CUDA libraries); a build argument may name a mirror of them instead
    assert 'ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"' in train
    assert f"${{TORCH_PIP_ARGS}} {torch} " in train
    assert '"${wheel}[train]"' in train and "USER poco-rt" in train


def test_the_deploy_files_agree_with_the_server_settings():
    from poco_rt.server.settings import ServerSettings

    example = ServerSettings(config_file=ROOT / "deploy" / "server.example.toml")  # unknown keys would fail here
    assert example.open_sessions == {"rig1": "sim00"}
    defaults = ServerSettings()
    ports = (defaults.http_port, defaults.frame_port, defaults.forecast_port)
    assert f"EXPOSE {' '.join(map(str, ports))}" in (ROOT / "Dockerfile").read_text()
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    assert f'"{defaults.http_port}:{defaults.http_port}"' in compose  # the token guards HTTP
    assert all(f'"127.0.0.1:{port}:{port}"' in compose for port in ports[1:])  # ZeroMQ: CURVE before opening it
    unit = (ROOT / "deploy" / "poco-rt.service").read_text()
    assert "ExecStart=/opt/poco-rt/bin/poco-rt serve --config-file /etc/poco-rt/server.toml" in unit


def test_the_serving_install_has_no_torch_and_serves_forecasts(tmp_path: Path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*dockerignore_patterns()))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    run_install_step("wheel", tmp_path / "wheels", python=python, cwd=source)
    run_install_step("install", tmp_path / "wheels", python=python, cwd=source)
    found = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('poco_rt').origin)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    torch_spec, origin = found.stdout.split()
    assert torch_spec == "None" and origin.startswith(str(venv))  # the installed wheel, not this checkout

    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [str(venv / "bin" / "poco-rt"), "serve", "--http-port", "0", "--frame-port", "0", "--forecast-port", "0",
             "--data-dir", str(tmp_path / "data"), "--session", "sim00"],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = wait_for_log(log_path, r"HTTP on (http://127\.0\.0\.1:\d+)", server)
        traces = load_recording(demo_recording_path()).session("sim00").traces
        engine = Engine(load_bundle(default_bundle_path()))
        context = traces[: engine.bundle.context_frames]
        with ForecastClient(url, timeout_s=10) as client:
            wait_until(client.ready, "/readyz", timeout_s=30)
            stateless = client.forecast("sim00", context)
            with FramePublisher(client.endpoints().frames, session="sim00", linger_s=1) as publisher:
                for frame in context:
                    publisher.send(frame)
            wait_until(lambda: client.session("sim00")["forecasts"] == 1, "the streamed forecast", timeout_s=30)
            latest = client.latest_forecast("sim00")
        page, uplot = (httpx.get(f"{url}{path}", timeout=10) for path in ("/", "/static/vendor/uPlot.iife.min.js"))
        assert (page.status_code, uplot.status_code) == (200, 200) and "poco-rt dashboard" in page.text  # package data
        expected = engine.forecast("sim00", context)
        np.testing.assert_allclose(stateless, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(latest.forecast, expected, rtol=1e-5, atol=1e-5)
        assert latest.frame_index == engine.bundle.context_frames - 1
    finally:
        server.send_signal(signal.SIGINT)  # what Ctrl-C (and the systemd unit's KillSignal) does
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0, log_path.read_text()[-3000:]


def wait_for_log(path: Path, pattern: str, process: subprocess.Popen, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text())
        if found:
            return found[1]
        if process.poll() is not None:
            pytest.fail(f"poco-rt serve exited with {process.returncode}:\n{path.read_text()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"poco-rt serve logged no {pattern!r} within {timeout_s} s:\n{path.read_text()[-3000:]}")
