"""What a fine-tune round running beside serving costs the forecasts: the network timed with and without one.

A live new animal is fine-tuned in a job worker kept to the cores off the ingest thread, at
SCHED_IDLE, so it gets no CPU time the serving thread wants. What it can still take is shared
hardware: the last-level cache and memory bandwidth. A training step's working set grows with the
windows it takes (B windows x N units of activations, forward and backward), so this bench times
the serving network while the real adaptation code (`poco_rt.models.adapt.adapt_embeddings`) trains
with each `--batch-windows`, in the job worker's own limits (`apply_limits`), against no job, in
interleaved phases so that a machine whose load changes affects every variant alike.

    python bench/finetune_interference.py --bundle DIR [--units 140] [--batch-windows 64 16] [--rounds 3] [--seconds 20]

The bundle must be trainable (exported with network.pt). Serving: the bundle's network in this
process on one onnxruntime thread kept to the ingest thread's cores, one call per frame interval
on a context of N units, as the server runs it. Printed per variant: medians over rounds of the
network's p50 and p99 (ms), p99 against no job in the same round, and the job's CPU seconds and
steps per phase (how much training it did meanwhile).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from poco_rt.bundle import load_bundle
from poco_rt.server.engine import Engine
from poco_rt.server.jobs.worker import apply_limits
from poco_rt.server.settings import ServerSettings
from poco_rt.server.split_network import keep_to_cores

TRAINING_FRAMES = 400  # random frames: a step's cost depends on the shapes, not on the values
JOB_WARM_UP_S = 4.0  # torch's import and the first steps, before a phase's timing starts


def train_until_killed(bundle_path: Path, units: int, batch_windows: int, per_call: int, steps_file: Path) -> None:
    """The job side: adapt_embeddings with no stopping rule, in the job worker's limits, until killed."""
    from adapt_round_cost import zero_shot  # torch, in the job's process only

    from poco_rt.models.adapt import AdaptConfig, adapt_embeddings

    apply_limits(niceness=0, idle_priority=True, cpus=ServerSettings().job_cores(), memory_mb=0)
    bundle = load_bundle(bundle_path)
    frames = np.random.default_rng(0).standard_normal((TRAINING_FRAMES, units), dtype=np.float32)
    baseline = zero_shot(bundle, units)
    config = AdaptConfig(
        max_steps=1_000_000, patience=1_000_000, batch_windows=batch_windows, unit_windows_per_call=per_call
    )

    def count(step: int, score: float, best_step: int) -> None:
        steps_file.write_text(str(step))

    adapt_embeddings(bundle, frames, baseline=baseline, name="worm.adapted", config=config, on_validation=count)


def time_network(
    engine: Engine, context: np.ndarray, embeddings: np.ndarray, *, seconds: float, rate_hz: float
) -> np.ndarray:
    """Milliseconds of one forecast each frame interval for `seconds`."""
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        time.sleep(1.0 / rate_hz)
        started = time.perf_counter()
        engine.forecast_normalised(context, embeddings)
        times.append((time.perf_counter() - started) * 1e3)
    return np.asarray(times)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(
    args: argparse.Namespace, engine: Engine, context: np.ndarray, embeddings: np.ndarray, batch: int | None
) -> dict:
    """One measurement: no job (batch None), or a training job with `batch` windows per step beside it."""
    if batch is None:
        times = time_network(engine, context, embeddings, seconds=args.seconds, rate_hz=args.rate_hz)
        return {"times_ms": times.tolist()}
    steps_file = Path(f"/tmp/poco-rt-interference-{os.getpid()}.steps")
    steps_file.write_text("0")
    job = subprocess.Popen(
        [sys.executable, __file__, "--bundle", str(args.bundle), "--units", str(args.units), "--job", str(batch),
         "--unit-windows-per-call", str(args.unit_windows_per_call),
         "--steps-file", str(steps_file)]
    )  # fmt: skip
    try:
        time.sleep(JOB_WARM_UP_S)
        steps_before, cpu_before = int(steps_file.read_text() or 0), cpu_seconds(job.pid)
        times = time_network(engine, context, embeddings, seconds=args.seconds, rate_hz=args.rate_hz)
        steps, cpu = int(steps_file.read_text() or 0) - steps_before, cpu_seconds(job.pid) - cpu_before
    finally:
        job.kill()
        job.wait()
        steps_file.unlink(missing_ok=True)
    return {"times_ms": times.tolist(), "job_cpu_s": cpu, "job_steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a trainable bundle (with network.pt)")
    parser.add_argument("--units", type=int, default=140, help="N: a whole-brain worm recording has 100-200")
    parser.add_argument("--batch-windows", type=int, nargs="+", default=[64, 16], help="the job's windows per step")
    parser.add_argument(
        "--unit-windows-per-call", type=int, default=65_536, help="the job's cap on windows x units in one forward"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="timing per phase")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="forecasts per second while timing")
    parser.add_argument("--json", type=Path, default=None, help="also write every phase's timings here")
    parser.add_argument("--job", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps-file", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job is not None:
        train_until_killed(args.bundle, args.units, args.job, args.unit_windows_per_call, args.steps_file)
        return 0

    bundle = load_bundle(args.bundle)
    engine = Engine(bundle)
    keep_to_cores(ServerSettings().realtime_cores())
    rng = np.random.default_rng(0)
    context = rng.standard_normal((args.units, bundle.context_frames), dtype=np.float32)
    embeddings = np.tile(bundle.unseen_unit_embedding(), (args.units, 1))
    engine.warm_up(embeddings)
    variants: dict[str, int | None] = {"no job": None} | {f"job, {b} windows": b for b in args.batch_windows}
    rounds: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, batch in variants.items():
            rounds[name].append(phase(args, engine, context, embeddings, batch))
    idle_p99 = [np.percentile(r["times_ms"], 99) for r in rounds["no job"]]
    print(f"N = {args.units}, {args.rate_hz:g} Hz, {args.rounds} rounds of {args.seconds:g} s; medians over rounds")
    print(f"{'variant':<20} {'p50 ms':>8} {'p99 ms':>8} {'p99/idle':>9} {'job CPU s':>10} {'job steps':>10}")
    for name, phases in rounds.items():
        p50 = np.median([np.median(r["times_ms"]) for r in phases])
        p99s = [np.percentile(r["times_ms"], 99) for r in phases]
        ratio = np.median([p99 / idle for p99, idle in zip(p99s, idle_p99, strict=True)])
        cpu = np.median([r.get("job_cpu_s", 0.0) for r in phases])
        steps = np.median([r.get("job_steps", 0) for r in phases])
        print(f"{name:<20} {p50:8.2f} {np.median(p99s):8.2f} {ratio:8.2f}x {cpu:10.1f} {steps:10.0f}")
    if args.json:
        args.json.write_text(json.dumps({"units": args.units, "rate_hz": args.rate_hz, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
