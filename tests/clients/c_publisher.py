"""Building the C publisher (clients/c) for a test, and calling its shared library through ctypes.

The build needs a C compiler, make and libzmq's headers (Debian: libzmq3-dev, which .ci/run installs);
where one is missing the tests that need it skip and say which. A build that starts and then fails
is a failed test, not a skip: the warnings are errors.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

CLIENTS_C = Path(__file__).resolve().parents[2] / "clients" / "c"
STRICT_CFLAGS = "-std=c99 -O2 -Wall -Wextra -Wpedantic -Wconversion -Werror"

# poco_rt_publisher.h's codes
OK, DROPPED = 0, 1
ERR_INVALID_ARGUMENT, ERR_BAD_SESSION_NAME, ERR_BAD_DTYPE, ERR_BAD_SHAPE, ERR_OVERSIZED = -1, -2, -3, -4, -5
ERR_BUFFER_TOO_SMALL, ERR_BAD_CURVE_KEY, ERR_NO_CURVE, ERR_ZMQ = -6, -7, -8, -9
FLOAT32, FLOAT64, UINT16 = 1, 2, 3
SLOW_JOINER_S = 0.3  # a subscription reaches the server's PUB socket asynchronously


def missing_c_toolchain() -> str | None:
    """Why the C publisher cannot be built here, or None when it can."""
    for tool in ("cc", "make"):
        if shutil.which(tool) is None:
            return f"no `{tool}` on PATH: install build-essential to build clients/c"
    probe = subprocess.run(["cc", "-E", "-x", "c", "-"], input="#include <zmq.h>\n", capture_output=True, text=True)
    if probe.returncode != 0:
        return "libzmq's headers are missing (zmq.h): install libzmq3-dev to build clients/c"
    return None


def build_c_publisher(build_dir: Path) -> Path:
    """`make` in clients/c with every warning an error, its outputs in build_dir; returns build_dir."""
    reason = missing_c_toolchain()
    if reason is not None:
        pytest.skip(reason)
    build_dir.mkdir(parents=True, exist_ok=True)
    make = subprocess.run(
        ["make", "-C", str(CLIENTS_C), f"BUILD_DIR={build_dir}", f"CFLAGS={STRICT_CFLAGS}"],
        capture_output=True,
        text=True,
    )
    if make.returncode != 0:
        pytest.fail(f"clients/c did not build:\n{make.stdout}\n{make.stderr}")
    return build_dir


def load_library(build_dir: Path) -> ctypes.CDLL:
    """libpoco_rt_publisher.so with every function's argument and result types declared as in the header."""
    library = ctypes.CDLL(str(build_dir / "libpoco_rt_publisher.so"))
    u8_p, u32_p, i32_p = ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_int32)
    i32, u32, u64, i64 = ctypes.c_int32, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64
    signatures = {
        "poco_rt_status_message": (ctypes.c_char_p, [i32]),
        "poco_rt_now_ns": (i64, []),
        "poco_rt_dtype_bytes": (u32, [i32]),
        "poco_rt_encode_frame_header": (i32, [u8_p, u32, u32_p, ctypes.c_char_p, i32, u32, u64, i64]),
        "poco_rt_encode_frame_payload": (i32, [u8_p, u32, u32_p, ctypes.c_void_p, i32, u32]),
        "poco_rt_publisher_open": (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p, u32, i32, i32_p]),
        "poco_rt_publisher_open_curve": (
            ctypes.c_void_p,
            [ctypes.c_char_p, ctypes.c_char_p, u32, i32, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, i32_p],
        ),
        "poco_rt_publisher_send": (i32, [ctypes.c_void_p, ctypes.c_void_p, i32, u32, u64, i64]),
        "poco_rt_publisher_sent": (u64, [ctypes.c_void_p]),
        "poco_rt_publisher_dropped": (u64, [ctypes.c_void_p]),
        "poco_rt_publisher_close": (None, [ctypes.c_void_p]),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(library, name)
        function.restype, function.argtypes = result, arguments
    return library


EXAMPLE_UNITS = 117  # session rig1 is served with the embedded bundle's sim00 calibration
EXAMPLE_FRAMES = 60  # the first forecast comes after the bundle's 48 context frames


def check_example_streams_to_a_server(start_default_server, run_example: Callable[[str], str]) -> None:
    """`run_example(frame_endpoint)` runs an example that sends EXAMPLE_FRAMES frames of EXAMPLE_UNITS values to
    session rig1 and returns what it printed; a real server must accept every frame and forecast after the last."""
    from poco_rt.clients import ZmqForecastSubscriber

    server = start_default_server(open_sessions={"rig1": "sim00"})
    with ZmqForecastSubscriber(server.runtime.endpoints.forecasts, session="rig1") as forecasts:
        time.sleep(SLOW_JOINER_S)
        assert run_example(server.runtime.endpoints.frames) == f"sent {EXAMPLE_FRAMES} dropped 0\n"
        while (update := forecasts.receive(timeout_s=20)).frame_index < EXAMPLE_FRAMES - 1:
            pass
    assert (update.frame_index, update.forecast.shape) == (EXAMPLE_FRAMES - 1, (EXAMPLE_UNITS, 16))
    assert server.runtime.session_status("rig1").frames_accepted == EXAMPLE_FRAMES
