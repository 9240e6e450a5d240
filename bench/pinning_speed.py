"""PINning speed: seconds per N = 500 network (p = 0.1, 125 runs), the fast trainer against a plain loop.

    python bench/pinning_speed.py --quick    # about 30 s: a few passes of each
    python bench/pinning_speed.py            # about 2 minutes: two whole networks, and their pVar

Everything is timed in this one process, pass by pass (a pass is one 10.6 s trial, 10,577 steps of
1 ms); the first pass of each trainer is its warm-up and is not counted. A network's time is its setup
(J0, h) plus 125 times the median pass. BLAS is held to one thread, so that one worker is one core and
two workers are two: the plain loop (models/pinning/reference.py, float64, per-step numpy) runs on one
core, as the reference implementation's 0.3-0.5 s a pass assumes. Each pass is timed twice: wall clock, and
the CPU time of the thread that ran it (time.thread_time; with one BLAS thread all of a pass's work is
on that thread). On an idle machine the two agree; on a busy one wall time measures the queue for a
core and CPU time is the better guide to what an idle core would take. The load average is printed.
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before numpy loads BLAS

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from poco_rt.models.pinning.config import PinningConfig  # noqa: E402
from poco_rt.models.pinning.reference import train_reference  # noqa: E402
from poco_rt.models.pinning.targets import bump_target  # noqa: E402
from poco_rt.models.pinning.trainer import train_networks  # noqa: E402

UNITS, PLASTIC_FRACTION, RUNS = 500, 0.1, 125


@dataclasses.dataclass(frozen=True)
class Timing:
    passes: np.ndarray  # seconds of each timed pass, all threads
    setup_s: float  # median time from the start to a thread's first pass, less one pass
    networks_in_parallel: int

    @property
    def median(self) -> float:
        return float(np.median(self.passes))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.passes, 99))

    @property
    def per_network_s(self) -> float:
        return (self.setup_s + RUNS * self.median) / self.networks_in_parallel


def timed(train: Callable[[Callable[[], None]], object], networks_in_parallel: int) -> tuple[Timing, Timing, object]:
    """Run `train(on_run)`; the time between two consecutive passes of one thread is one pass.

    Returns the wall-clock timing, the thread-CPU timing, and what `train` returned.
    """
    main_thread = threading.get_ident()
    stamps: dict[int, list[tuple[float, float]]] = defaultdict(list)
    wall_start, cpu_start = time.perf_counter(), time.thread_time()
    result = train(lambda *_report: stamps[threading.get_ident()].append((time.perf_counter(), time.thread_time())))
    timings = []
    for clock in (0, 1):
        passes = np.concatenate([np.diff([stamp[clock] for stamp in s]) for s in stamps.values()])
        starts = {
            thread: wall_start if clock == 0 else cpu_start if thread == main_thread else 0.0 for thread in stamps
        }
        first = np.median([s[0][clock] - starts[thread] for thread, s in stamps.items()])  # setup and one pass
        timings.append(Timing(passes, float(first - np.median(passes)), networks_in_parallel))
    return timings[0], timings[1], result


def report(name: str, wall: Timing, cpu: Timing, baseline: tuple[Timing, Timing] | None) -> None:
    ratios = ""
    if baseline:
        ratios = (
            f"   {baseline[0].per_network_s / wall.per_network_s:4.1f}x wall, "
            f"{baseline[1].per_network_s / cpu.per_network_s:4.1f}x CPU"
        )
    print(
        f"{name:<30} pass median {wall.median:6.3f} s (CPU {cpu.median:6.3f})  p99 {wall.p99:6.3f} s  "
        f"({wall.passes.size:3d} passes)  -> {wall.per_network_s:5.1f} s per network "
        f"(CPU {cpu.per_network_s:5.1f}){ratios}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few passes of each instead of whole networks")
    args = parser.parse_args()

    fast_runs, plain_runs = (16, 5) if args.quick else (RUNS, 8)
    target = bump_target(UNITS)
    fast = PinningConfig(plastic_fraction=PLASTIC_FRACTION, runs=fast_runs, free_runs=1 if args.quick else 5)
    fast = dataclasses.replace(fast, lesion_runs=0)
    plain = dataclasses.replace(fast, runs=plain_runs, free_runs=1)
    print(
        f"PINning N = {UNITS}, p = {PLASTIC_FRACTION}, {RUNS} runs a network; BLAS threads "
        f"{os.environ['OPENBLAS_NUM_THREADS']}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"
    )

    plain_wall, plain_cpu, _ = timed(lambda on_run: train_reference(target, plain, on_run=on_run), 1)
    baseline = (plain_wall, plain_cpu)
    report("plain per-step loop, 1 core", plain_wall, plain_cpu, None)
    wall, cpu, (single,) = timed(lambda on_run: train_networks(target, [fast], on_run=on_run), 1)
    report("fast, 1 worker", wall, cpu, baseline)
    pair = [fast, dataclasses.replace(fast, seed=1)]
    wall, cpu, results = timed(lambda on_run: train_networks(target, pair, workers=2, on_run=on_run), 2)
    report("fast, 2 workers (2 networks)", wall, cpu, baseline)
    if not args.quick:
        pvars = ", ".join(f"{r.pvar:.3f}" for r in [single, *results])
        print(f"pVar of the fast networks (mean of 5 free runs): {pvars}  (the 2016 demo: 0.81-0.85 at p = 0.1)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
