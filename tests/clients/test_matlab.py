"""The MATLAB example (clients/matlab) under GNU Octave, through the C publisher's MEX gateway: it streams to a
real server that accepts and forecasts every frame; the gateway sends each MATLAB class as its own wire dtype,
byte for byte what poco_rt.wire writes, and raises errors whose identifiers name the reason.

Octave, its MEX compiler (octave-dev's mkoctfile) and libzmq's headers come from .ci/run; where one is missing
these tests skip and say which.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zmq

from poco_rt import wire
from tests.clients import c_publisher

CLIENTS_MATLAB = Path(__file__).resolve().parents[2] / "clients" / "matlab"


def missing_octave() -> str | None:
    for tool, package in (("octave-cli", "octave"), ("mkoctfile", "octave-dev")):
        if shutil.which(tool) is None:
            return f"no `{tool}` on PATH: install Debian's {package} to run the MATLAB example"
    return c_publisher.missing_c_toolchain()


@pytest.fixture(scope="module")
def mex_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """poco_rt_mex built by mkoctfile, as clients/matlab's example says, with every warning an error."""
    reason = missing_octave()
    if reason is not None:
        pytest.skip(reason)
    build = tmp_path_factory.mktemp("mex")
    sources = [CLIENTS_MATLAB / "poco_rt_mex.c", c_publisher.CLIENTS_C / "poco_rt_publisher.c"]
    mkoctfile = subprocess.run(
        ["mkoctfile", "--mex", f"-I{c_publisher.CLIENTS_C}", *map(str, sources), "-lzmq", "-o", "poco_rt_mex.mex"],
        cwd=build, capture_output=True, text=True, env={**os.environ, "CFLAGS": "-O2 -Wall -Wextra -Werror"},
    )  # fmt: skip
    if mkoctfile.returncode != 0:
        pytest.fail(f"poco_rt_mex did not build:\n{mkoctfile.stdout}\n{mkoctfile.stderr}")
    return build


def octave(mex_dir: Path, code: str) -> subprocess.CompletedProcess:
    """Runs `code` in octave-cli with the gateway and the example on the path; a failed test if Octave fails."""
    script = f"addpath('{mex_dir}'); addpath('{CLIENTS_MATLAB}'); {code}"
    finished = subprocess.run(
        ["octave-cli", "--no-gui", "--norc", "--quiet", "--eval", script],
        capture_output=True, text=True, timeout=60, cwd=mex_dir,
    )  # fmt: skip
    assert finished.returncode == 0, f"octave failed:\n{finished.stdout}\n{finished.stderr}"
    return finished


def test_the_matlab_example_streams_to_a_real_server_that_accepts_and_forecasts_every_frame(
    start_default_server, mex_dir
):
    def run_example(frame_endpoint: str) -> str:
        units, frames = c_publisher.EXAMPLE_UNITS, c_publisher.EXAMPLE_FRAMES
        return octave(mex_dir, f"poco_rt_stream_example('{frame_endpoint}', 'rig1', {units}, {frames}, 200)").stdout

    c_publisher.check_example_streams_to_a_server(start_default_server, run_example)


def test_the_gateway_sends_each_matlab_class_as_its_wire_dtype_and_names_its_errors(mex_dir):
    with zmq.Context() as context, context.socket(zmq.PULL) as pull:
        pull.setsockopt(zmq.LINGER, 0)
        endpoint = f"tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}"
        run = octave(
            mex_dir,
            f"""
            p = poco_rt_mex('open', '{endpoint}', 'rig1', 10, 5000);
            poco_rt_mex('send', p, single([1.5 -2]), 5, int64(1700000000123456789));
            poco_rt_mex('send', p, [0.1; 1e300; -0], 6, int64(-1));
            poco_rt_mex('send', p, uint16([0 65535 7]), intmax('uint64'), intmin('int64'));
            attempts = {{@() poco_rt_mex('open', '{endpoint}', 'rig 1'), ...
                         @() poco_rt_mex('open', '{endpoint}', 'rig1', 10, 0, 'not-a-40-character-key'), ...
                         @() poco_rt_mex('send', p, int32([1 2]), 7), ...
                         @() poco_rt_mex('send', p, single([1 2]), -1), ...
                         @() poco_rt_mex('send', p, single(ones(2)), 7), ...
                         @() poco_rt_mex('send', p, single(zeros(1, 0)), 7), ...
                         @() poco_rt_mex('bogus')}};
            for k = 1:numel(attempts)
                try, attempts{{k}}(); catch err, disp(err.identifier); end
            end
            [sent, dropped] = poco_rt_mex('stats', p);
            fprintf('sent %d dropped %d\\n', sent, dropped);
            poco_rt_mex('close', p);
            try, poco_rt_mex('close', p); catch err, disp(err.identifier); end
            """,
        )
        received = []
        for _ in range(3):
            assert pull.poll(10_000), f"a frame did not arrive; octave said:\n{run.stdout}\n{run.stderr}"
            received.append(pull.recv_multipart())
    expected = [
        (np.array([1.5, -2], dtype=np.float32), 5, 1_700_000_000_123_456_789),
        (np.array([0.1, 1e300, -0.0], dtype=np.float64), 6, -1),
        (np.array([0, 65_535, 7], dtype=np.uint16), 2**64 - 1, -(2**63)),
    ]
    for parts, (values, frame_index, time_ns) in zip(received, expected, strict=True):
        message = wire.encode_frame(values, session="rig1", frame_index=frame_index, acquisition_time_ns=time_ns)
        assert parts == [bytes(part) for part in message.parts]
    assert run.stdout.splitlines() == [
        "poco_rt:bad_session_name",
        "poco_rt:bad_curve_key",
        "poco_rt:bad_dtype",
        "poco_rt:invalid_argument",  # a negative frame index
        "poco_rt:invalid_argument",  # a matrix, not a vector
        "poco_rt:bad_shape",
        "poco_rt:invalid_argument",  # an unknown command
        "sent 3 dropped 0",
        "poco_rt:invalid_argument",  # a closed handle
    ]
