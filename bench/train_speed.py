"""Training speed: seconds per optimiser step on a recording, for POCO and its baselines.

    python bench/train_speed.py --data ../shared/data/flavell_dag2023 --steps 40 --threads 2

One step = POCO's batch (64 windows per dataset), forward, backward, clip, AdamW. Warm-up steps
are excluded; the median and p99 step time are printed, with the ratio to the MLP measured in
the same run. Run it on an otherwise idle machine: a second busy process halves the figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from poco_rt.models.baselines import build_model
from poco_rt.models.config import ModelConfig, ModelKind, TrainConfig
from poco_rt.models.data import TrainingSet, layout_of
from poco_rt.models.recording import load_recording
from poco_rt.models.training import squared_error

WARMUP_STEPS = 5


def step_times(kind: ModelKind, data: TrainingSet, layout, steps: int) -> np.ndarray:
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind), layout).train()
    config = TrainConfig()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, amsgrad=True
    )
    rng = np.random.default_rng(0)
    times = []
    for step in range(WARMUP_STEPS + steps):
        started = time.perf_counter()
        total, count = squared_error(model, data.sample(rng, config.batch_windows, layout))
        optimizer.zero_grad(set_to_none=True)
        (total / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
        optimizer.step()
        if step >= WARMUP_STEPS:
            times.append(time.perf_counter() - started)
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flavell_dag2023"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recording = load_recording(args.data)
    layout = layout_of([recording])
    data = TrainingSet.build([recording], layout, ModelConfig())
    results = {
        kind: step_times(kind, data, layout, args.steps) for kind in (ModelKind.MLP, ModelKind.NLINEAR, ModelKind.POCO)
    }
    baseline = np.median(results[ModelKind.MLP])
    print(f"{recording.name}: {len(recording.sessions)} sessions, {args.threads} threads, {args.steps} timed steps")
    print("| model | median s/step | p99 s/step | steps/s | × MLP |")
    print("|---|---|---|---|---|")
    for kind, times in results.items():
        median, p99 = np.median(times), np.percentile(times, 99)
        print(f"| {kind.value} | {median:.4f} | {p99:.4f} | {1 / median:.1f} | {median / baseline:.1f} |")


if __name__ == "__main__":
    main()
