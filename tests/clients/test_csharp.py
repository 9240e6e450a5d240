"""The C# wrapper (clients/csharp) over the C publisher through P/Invoke, run under Mono: its example streams to a
real server that accepts and forecasts every frame, and a refused argument surfaces as a PublisherException that
names the reason.

Mono (mono-mcs, mono-runtime) and libzmq's headers come from .ci/run; where one is missing these tests skip and
say which.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients import c_publisher

CLIENTS_CSHARP = Path(__file__).resolve().parents[2] / "clients" / "csharp"


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C library and StreamFrames.exe (the wrapper and the example) side by side, warnings as errors."""
    for tool, package in (("mcs", "mono-mcs"), ("mono", "mono-runtime")):
        if shutil.which(tool) is None:
            pytest.skip(f"no `{tool}` on PATH: install Debian's {package} to run the C# example")
    build = c_publisher.build_c_publisher(tmp_path_factory.mktemp("csharp"))
    sources = [str(CLIENTS_CSHARP / name) for name in ("PocoRtPublisher.cs", "StreamFrames.cs")]
    mcs = subprocess.run(
        ["mcs", "-warnaserror", f"-out:{build / 'StreamFrames.exe'}", *sources], capture_output=True, text=True
    )
    if mcs.returncode != 0:
        pytest.fail(f"the C# example did not build:\n{mcs.stdout}\n{mcs.stderr}")
    return build


def stream_frames(build_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """StreamFrames.exe under Mono, finding libpoco_rt_publisher.so in build_dir as P/Invoke does on Linux."""
    return subprocess.run(
        ["mono", str(build_dir / "StreamFrames.exe"), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "LD_LIBRARY_PATH": str(build_dir)},
    )  # fmt: skip


def test_the_csharp_example_streams_to_a_real_server_that_accepts_and_forecasts_every_frame(
    start_default_server, build_dir
):
    def run_example(frame_endpoint: str) -> str:
        units, frames = str(c_publisher.EXAMPLE_UNITS), str(c_publisher.EXAMPLE_FRAMES)
        example = stream_frames(build_dir, frame_endpoint, "rig1", units, frames, "200")
        assert (example.returncode, example.stderr) == (0, "")
        return example.stdout

    c_publisher.check_example_streams_to_a_server(start_default_server, run_example)


def test_a_refused_session_name_is_a_publisher_exception_naming_the_reason(build_dir):
    refused = stream_frames(build_dir, "tcp://127.0.0.1:1", "rig 1", "3", "1", "100")
    assert refused.returncode != 0
    assert "PocoRt.PublisherException: bad_session_name: use 1-128 letters" in refused.stderr
