"""Where the ingest thread's time goes: py-spy samples a real `poco-rt serve` while frames stream at the frame rate.

The server is started as bench/latency.py starts it (a copy of the bundle with a synthetic session of
N units, recording on, one engine thread) and streamed with the same paced publisher and subscriber.
py-spy (`pip install py-spy`: a sampling profiler that reads the process from outside, so the
server runs unmodified) records every thread's stack `--rate` times a second, idle ones included.
The report is the ingest thread's: its wall time split into waiting for a frame, the network, and
everything else the frame path does, per forecast; the functions that take the most of that
"everything else"; and how much of the time the thread held the GIL (which is when no other Python
thread of the server can run). Sampling slows the server a little, so compare shares, not absolute
times, with bench/latency.py's.

Usage: python bench/profile_frame_path.py [--units 1000] [--seconds 20] [--rate 250] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from latency import WARM_UP_S, measure, percentile
from live_server import Server, bench_bundle

from poco_rt.resources import default_bundle_path

INGEST_THREAD = "poco-rt-ingest"
WAITING = "Poller.poll"  # the ingest loop's wait for a frame or a command
NETWORK = "Session.run"  # onnxruntime's run, the network itself


def record(pid: int, out: Path, *, seconds: float, rate: int, gil_only: bool) -> subprocess.Popen:
    """py-spy recording `pid` in raw (collapsed-stack) form, every thread, idle included (or GIL holders only)."""
    command = ["py-spy", "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--threads",
               "--nonblocking", "--duration", str(int(seconds)), "-o", str(out)]  # fmt: skip
    command += ["--gil"] if gil_only else ["--idle"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ingest_stacks(path: Path) -> list[tuple[list[str], int]]:
    """(frames, samples) of the ingest thread's stacks, outermost frame first, function names only."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if INGEST_THREAD in frames[0] and len(frames) > 1:
            stacks.append(([frame.split(" (")[0] for frame in frames[1:]], int(count)))
    return stacks


def report(wall: Path, gil: Path, *, forecasts: int, rate: int) -> None:
    stacks = ingest_stacks(wall)
    total = sum(count for _, count in stacks)
    waiting = sum(count for frames, count in stacks if frames[-1] == WAITING)
    network = sum(count for frames, count in stacks if NETWORK in frames)
    around = Counter()
    for frames, count in stacks:
        if frames[-1] != WAITING and NETWORK not in frames:
            for name in set(frames[4:]):  # below the thread's bootstrap and run
                around[name] += count
    per_forecast_ms = 1000.0 / rate / forecasts
    held = sum(count for _, count in ingest_stacks(gil))
    print(f"ingest thread, {total / rate:.1f} s sampled, {forecasts} forecasts:")
    print(f"  waiting for frames {100 * waiting / total:5.1f} %")
    print(f"  network            {100 * network / total:5.1f} %   {network * per_forecast_ms:.2f} ms a forecast")
    rest = total - waiting - network
    print(f"  the rest           {100 * rest / total:5.1f} %   {rest * per_forecast_ms:.2f} ms a forecast")
    print(f"  GIL held           {100 * held / total:5.1f} % of the time")
    print("the rest, by function (inclusive), ms a forecast:")
    for name, count in around.most_common(15):
        print(f"  {count * per_forecast_ms:6.3f}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=1000, help="unit count N")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured streaming time")
    parser.add_argument("--frame-rate-hz", type=float, default=30.0, help="publishing rate")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=None, help="keep py-spy's raw stacks here")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        parser.error("py-spy is not on PATH: pip install py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="poco-rt-profile-"))
    out = args.out or workdir
    out.mkdir(parents=True, exist_ok=True)
    try:
        bundle = bench_bundle(default_bundle_path(), workdir / "bundle", args.units)
        server = Server(bundle, workdir / "data", engine_flags=["--engine-threads", "1"])
        try:
            pid, span = server.process.pid, args.seconds + 3  # the run's warm-up and tail
            spies = [record(pid, out / "wall.txt", seconds=span, rate=args.rate, gil_only=False),
                     record(pid, out / "gil.txt", seconds=span, rate=args.rate, gil_only=True)]  # fmt: skip
            timings = measure(server, args.units, seconds=args.seconds, frame_rate_hz=args.frame_rate_hz)
            for spy in spies:
                spy.wait(60)
        finally:
            server.stop()
        e2e = timings["end_to_end_ms"]
        print(f"N = {args.units}, {args.frame_rate_hz:g} Hz, sampled at {args.rate} Hz: end to end p50 "
              f"{percentile(e2e, 50):.2f} ms, p99 {percentile(e2e, 99):.2f} ms")  # fmt: skip
        forecasts = int((WARM_UP_S + args.seconds) * args.frame_rate_hz)  # all of them were sampled
        report(out / "wall.txt", out / "gil.txt", forecasts=forecasts, rate=args.rate)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
