"""The C publisher's send (clients/c) against the Python FramePublisher's, per call, at the same frames and pace.

For each unit count N, float32 frames are sent at a fixed rate to one ZeroMQ PULL socket that a separate process
drains, first by a C program timing each `poco_rt_publisher_send_f32` with the monotonic clock, then by this process
timing each `FramePublisher.send` with `time.perf_counter_ns`: encode, copy into ZeroMQ's queue, return, with the
acquisition stamp taken inside the call in both. The first `--warm-up` sends of each are left out. Usage:

    python bench/c_publisher.py [--units 117 10000 131072] [--frames 1500] [--rate-hz 300]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from poco_rt.clients import FramePublisher

CLIENTS_C = Path(__file__).resolve().parents[1] / "clients" / "c"

TIMING_PROGRAM = r"""
#define _POSIX_C_SOURCE 200112L
#include "poco_rt_publisher.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int64_t monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int main(int argc, char **argv) {
    uint32_t units, unit;
    uint64_t frames, index;
    double rate_hz;
    float *values;
    int32_t status;
    poco_rt_publisher *publisher;
    int64_t start_ns, due_ns, sent_ns;
    if (argc != 5) {
        return 1;
    }
    units = (uint32_t)strtoul(argv[2], NULL, 10);
    frames = strtoull(argv[3], NULL, 10);
    rate_hz = strtod(argv[4], NULL);
    values = malloc(units * sizeof *values);
    publisher = poco_rt_publisher_open(argv[1], "bench", 1000, 2000, &status);
    if (values == NULL || publisher == NULL) {
        return 1;
    }
    for (unit = 0; unit < units; ++unit) {
        values[unit] = (float)unit;
    }
    start_ns = monotonic_ns();
    for (index = 0; index < frames; ++index) {
        due_ns = start_ns + (int64_t)((double)index * 1e9 / rate_hz);
        while (monotonic_ns() < due_ns) {
            struct timespec pause = {0, 50000};
            nanosleep(&pause, NULL);
        }
        sent_ns = monotonic_ns();
        status = poco_rt_publisher_send_f32(publisher, values, units, index, poco_rt_now_ns());
        printf("%lld\n", (long long)(monotonic_ns() - sent_ns));
        if (status < 0) {
            return 1;
        }
    }
    fprintf(stderr, "%llu\n", (unsigned long long)poco_rt_publisher_dropped(publisher));
    poco_rt_publisher_close(publisher);
    free(values);
    return 0;
}
"""

DRAIN = """
import zmq
pull = zmq.Context().socket(zmq.PULL)
print(pull.bind_to_random_port("tcp://127.0.0.1"), flush=True)
while True:
    pull.recv_multipart(copy=False)
"""


def build_timing_program(build_dir: Path) -> Path:
    subprocess.run(["make", "-C", str(CLIENTS_C), f"BUILD_DIR={build_dir}"], check=True, capture_output=True)
    source = build_dir / "time_sends.c"
    source.write_text(TIMING_PROGRAM)
    program = build_dir / "time_sends"
    subprocess.run(
        ["cc", "-std=c99", "-O2", f"-I{CLIENTS_C}", str(source), str(build_dir / "libpoco_rt_publisher.a"),
         "-lzmq", "-o", str(program)],
        check=True,
    )  # fmt: skip
    return program


def c_sends_ns(program: Path, endpoint: str, units: int, frames: int, rate_hz: float) -> tuple[list[int], int]:
    """Each send's duration in ns, and the frames dropped."""
    run = subprocess.run(
        [str(program), endpoint, str(units), str(frames), str(rate_hz)], capture_output=True, text=True, check=True
    )
    return [int(line) for line in run.stdout.split()], int(run.stderr)


def python_sends_ns(endpoint: str, units: int, frames: int, rate_hz: float) -> tuple[list[int], int]:
    values = np.arange(units, dtype=np.float32)
    durations_ns = []
    with FramePublisher(endpoint, session="bench", linger_s=2.0) as publisher:
        start = time.perf_counter()
        for index in range(frames):
            time.sleep(max(0.0, start + index / rate_hz - time.perf_counter()))
            sent_ns = time.perf_counter_ns()
            publisher.send(values, index=index)
            durations_ns.append(time.perf_counter_ns() - sent_ns)
        dropped = publisher.stats.dropped
    return durations_ns, dropped


def summary_us(durations_ns: list[int]) -> tuple[float, float]:
    """Median and p99 in µs."""
    ordered = sorted(durations_ns)
    return statistics.median(ordered) / 1e3, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[117, 10_000, 131_072], help="N (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=1500, help="frames per publisher and N (default: %(default)s)")
    parser.add_argument("--rate-hz", type=float, default=300.0, help="send rate (default: %(default)s)")
    parser.add_argument("--warm-up", type=int, default=100, help="first sends left out (default: %(default)s)")
    args = parser.parse_args()
    drain = subprocess.Popen([sys.executable, "-c", DRAIN], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = f"tcp://127.0.0.1:{drain.stdout.readline().strip()}"
        with tempfile.TemporaryDirectory() as build:
            program = build_timing_program(Path(build))
            print(
                "| N | C median µs | C p99 µs | Python median µs | Python p99 µs | C / Python (median) "
                "| dropped (C, Python) |"
            )
            print("|---|---|---|---|---|---|---|")
            for units in args.units:
                c_ns, c_dropped = c_sends_ns(program, endpoint, units, args.frames, args.rate_hz)
                py_ns, py_dropped = python_sends_ns(endpoint, units, args.frames, args.rate_hz)
                c_median, c_p99 = summary_us(c_ns[args.warm_up :])
                py_median, py_p99 = summary_us(py_ns[args.warm_up :])
                print(
                    f"| {units} | {c_median:.1f} | {c_p99:.1f} | {py_median:.1f} | {py_p99:.1f} | "
                    f"{c_median / py_median:.2f}x | {c_dropped}, {py_dropped} |"
                )
    finally:
        drain.kill()
        drain.wait()


if __name__ == "__main__":
    main()
