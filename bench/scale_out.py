"""Scaling out: training steps/s on 1 and 2 torchrun ranks, PINning networks/min on 1 and 2 Dask workers.

    python bench/scale_out.py --data ../shared/data/flavell_dag2023 --steps 30

Training: the step of `poco-rt train` (models/training.py: every rank draws the whole step of 64
windows per dataset, trains on its share through DDP, clips, steps AdamW), timed on rank 0 after
warm-up steps, for 1 rank with 2 threads, 1 rank with 1 thread and 2 ranks (gloo) with 1 thread each.
Sweeps: `sweep_on_cluster` on a LocalCluster of 1 and 2 worker processes against the in-process
sweep on one thread (networks batched in chunks), each repeated with fresh seeds; the cluster's
start-up is timed apart. Figures are medians; the machine's load average is printed with them,
since other work on the same cores lowers them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WARMUP_STEPS = 5


def rank_step_times(args: argparse.Namespace) -> None:
    """Run under torchrun: time the training step on every rank, rank 0 writes its times to --times."""
    import torch

    from poco_rt.models.baselines import build_model
    from poco_rt.models.config import ModelConfig, TrainConfig
    from poco_rt.models.data import TrainingSet, layout_of, share_of
    from poco_rt.models.distributed import join_process_group
    from poco_rt.models.recording import load_recording
    from poco_rt.models.training import StepError

    torch.set_num_threads(args.threads)
    recording = load_recording(args.data)
    layout = layout_of([recording])
    data = TrainingSet.build([recording], layout, ModelConfig(kind=args.model))
    config = TrainConfig()
    with join_process_group() as group:
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind=args.model), layout)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, amsgrad=True
        )
        step_error = group.wrap(StepError(model, group.device)).train()
        rng = np.random.default_rng(0)
        times = []
        for step in range(WARMUP_STEPS + args.steps):
            started = time.perf_counter()
            draw = data.draw(rng, config.batch_windows, layout)
            total = step_error(data.batches(share_of(draw, group.rank, group.world_size)))
            loss = total * group.world_size / data.forecast_values(draw)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()
            if step >= WARMUP_STEPS:
                times.append(time.perf_counter() - started)
        if group.is_main:
            Path(args.times).write_text(json.dumps(times))


def training_rows(args: argparse.Namespace) -> list[tuple[str, str, float, float, float]]:
    rows = []
    for model in args.models:
        for ranks, threads in ((1, 2), (1, 1), (2, 1)):
            with tempfile.TemporaryDirectory() as tmp:
                times_path = Path(tmp) / "times.json"
                command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
                command += [__file__, "ranks", "--data", str(args.data), "--model", model, "--threads", str(threads)]
                command += ["--steps", str(args.steps), "--times", str(times_path)]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GLOO_SOCKET_IFNAME": "lo"}
                load = os.getloadavg()[0]
                subprocess.run(command, check=True, env=env, capture_output=True, text=True)
                times = np.array(json.loads(times_path.read_text()))
            median = float(np.median(times))
            rows.append((model, f"{ranks} x {threads}", median, float(np.percentile(times, 99)), load))
            print(f"  {model}, {ranks} rank(s) x {threads} thread(s): {1 / median:.2f} steps/s (load {load:.2f})")
    return rows


def sweep_rows(args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    from poco_rt.models.pinning.cluster import connect, sweep_on_cluster
    from poco_rt.models.pinning.config import PinningConfig
    from poco_rt.models.pinning.sweep import sweep
    from poco_rt.models.pinning.targets import bump_target

    target = bump_target(args.units)
    base = PinningConfig(runs=args.runs, free_runs=1, lesion_runs=0)
    fractions = (0.1, 0.3)
    seeds_per_repeat = max(1, args.networks // len(fractions))

    def seeds(repeat: int) -> range:  # fresh seeds every repeat: pure tasks with old keys could be served cached
        return range(repeat * seeds_per_repeat, (repeat + 1) * seeds_per_repeat)

    networks = len(fractions) * seeds_per_repeat
    rows = []
    rates = []
    load = os.getloadavg()[0]
    for repeat in range(args.repeats):
        started = time.perf_counter()
        sweep(target, fractions, seeds(repeat), base=base, workers=1)
        rates.append(networks * 60 / (time.perf_counter() - started))
    rows.append(("in-process, 1 thread", float(np.median(rates)), 0.0, load))
    print(f"  in-process, 1 thread: {rows[-1][1]:.1f} networks/min (load {load:.2f})")
    for workers in (1, 2):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        with connect(workers=workers) as client:
            startup_s = time.perf_counter() - started
            rates = []
            for repeat in range(args.repeats):
                started = time.perf_counter()
                sweep_on_cluster(client, target, fractions, seeds(repeat), base=base)
                rates.append(networks * 60 / (time.perf_counter() - started))
        rows.append((f"Dask LocalCluster, {workers} worker(s)", float(np.median(rates)), startup_s, load))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} networks/min, start-up {startup_s:.1f} s (load {load:.2f})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("all", "ranks"), default="all", help="ranks: one torchrun rank")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flavell_dag2023"))
    parser.add_argument("--models", nargs="+", default=["poco", "mlp"], help="model kinds to time")
    parser.add_argument("--model", default="poco", help="ranks: the model kind")
    parser.add_argument("--threads", type=int, default=1, help="ranks: torch threads per rank")
    parser.add_argument("--times", default="", help="ranks: where rank 0 writes its step times")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps (after warm-up)")
    parser.add_argument("--units", type=int, default=200, help="PINning network size N of the sweep")
    parser.add_argument("--runs", type=int, default=20, help="PINning passes per network")
    parser.add_argument("--networks", type=int, default=8, help="networks per sweep")
    parser.add_argument("--repeats", type=int, default=3, help="sweeps per setting (the median is printed)")
    args = parser.parse_args()
    if args.mode == "ranks":
        rank_step_times(args)
        return
    print(f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}")
    training = training_rows(args)
    sweeps = sweep_rows(args)
    print(f"\n{args.data.name}: {args.steps} timed steps after {WARMUP_STEPS} warm-up, POCO's batch (64 windows)")
    print("| model | ranks x threads | median s/step | p99 s/step | steps/s | × 1 rank, 2 threads | load |")
    print("|---|---|---|---|---|---|---|")
    for model, layout, median, p99, load in training:
        reference = next(row[2] for row in training if row[0] == model)
        speed = f"{1 / median:.2f} | {reference / median:.2f}"
        print(f"| {model} | {layout} | {median:.4f} | {p99:.4f} | {speed} | {load:.2f} |")
    print(f"\nPINning bump N = {args.units}, {args.runs} runs, {args.networks} networks a sweep, {args.repeats} sweeps")
    print("| where | networks/min (median) | × in-process | cluster start-up s | load |")
    print("|---|---|---|---|---|")
    for name, rate, startup_s, load in sweeps:
        print(f"| {name} | {rate:.1f} | {rate / sweeps[0][1]:.2f} | {startup_s:.1f} | {load:.2f} |")


if __name__ == "__main__":
    main()
