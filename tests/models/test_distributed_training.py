"""`poco-rt train` under torchrun: 2 gloo ranks on CPU train as one process does, and only rank 0 writes.

Each rank trains on its share of the step that every rank draws from the shared seed, and DDP
averages the gradients, so the two runs differ only in the order of float summation: the
validation losses agree to RELATIVE_TOLERANCE (measured: 1e-7). The MLP baseline is used because
it has no dropout; POCO's dropout masks come from per-rank streams, equal only in distribution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poco_rt.cli.main import main
from poco_rt.models.data import share_of
from poco_rt.models.distributed import ProcessGroup
from poco_rt.models.run_directory import RunDirectory
from poco_rt.models.training import train_loop
from tests.helpers import TINY_MODEL, TINY_TRAIN

RELATIVE_TOLERANCE = 1e-5
TRAIN = ["train", "--model", "mlp", "--batch-windows", "16", "--eval-every", "10", "--threads", "1", "--quiet"]
RUN_FILES = ["calibration.npz", "checkpoint_best.pt", "checkpoint_last.pt", "log.jsonl", "run.json"]


def torchrun_train(data: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`poco-rt train` on 2 ranks of one machine, gloo over loopback, one torch thread each."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "poco_rt.cli.main", *TRAIN, "--data", str(data), "--out", str(out), *options]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def validation_losses(run: Path) -> list[tuple[int, float]]:
    return [(record["step"], record["validation_loss"]) for record in RunDirectory(run).log()]


def test_two_ranks_resumed_midway_match_one_process_and_only_rank_0_writes_the_run(
    tiny_recording_path: Path, tmp_path: Path
):
    single, distributed = tmp_path / "single", tmp_path / "distributed"
    assert main([*TRAIN, "--data", str(tiny_recording_path), "--out", str(single), "--steps", "30"]) == 0
    torchrun_train(tiny_recording_path, distributed, "--steps", "20")
    resumed = torchrun_train(tiny_recording_path, distributed, "--steps", "30")  # from rank 0's step-20 checkpoint

    steps, expected = zip(*validation_losses(single), strict=True)
    distributed_steps, losses = zip(*validation_losses(distributed), strict=True)
    assert distributed_steps == steps == (10, 20, 30)
    np.testing.assert_allclose(losses, expected, rtol=RELATIVE_TOLERANCE, atol=0)
    assert sorted(path.name for path in distributed.iterdir()) == RUN_FILES  # nothing per rank, no leftovers
    manifest = RunDirectory(distributed).manifest()
    assert manifest["ranks"] == 2
    assert manifest["best_step"] == RunDirectory(single).manifest()["best_step"]
    assert resumed.stderr.count("resuming") == 1  # rank 0 alone logs
    assert resumed.stderr.count("best validation loss") == 1


def test_patience_stops_both_ranks_where_one_process_stops(tiny_recording_path: Path, tmp_path: Path):
    impatient = ["--steps", "200", "--eval-every", "2", "--patience", "2", "--learning-rate", "0.3"]
    assert main([*TRAIN, "--data", str(tiny_recording_path), "--out", str(tmp_path / "single"), *impatient]) == 0
    torchrun_train(tiny_recording_path, tmp_path / "distributed", *impatient)  # rank 1 would hang if it went on
    steps = [step for step, _ in validation_losses(tmp_path / "single")]
    assert steps[-1] < 200
    assert [step for step, _ in validation_losses(tmp_path / "distributed")] == steps


def test_the_ranks_shares_of_a_step_are_disjoint_near_equal_and_together_the_whole_step(tiny_recording):
    from poco_rt.models.data import TrainingSet, layout_of

    layout = layout_of([tiny_recording])
    data = TrainingSet.build([tiny_recording], layout, TINY_MODEL)
    draw = data.draw(np.random.default_rng(0), 61, layout, streamed_share=0.5)
    shares = [share_of(draw, rank, 4) for rank in range(4)]
    sizes = [sum(len(group.starts) for group in share) for share in shares]
    assert sizes == [16, 15, 15, 15]  # 61 windows: the first rank takes the remainder

    def windows(groups) -> list[tuple[int, int, bool]]:
        return [
            (g.session_index, int(start), bool(streamed))
            for g in groups
            for start, streamed in zip(g.starts, g.streamed, strict=True)
        ]

    assert [window for share in shares for window in windows(share)] == windows(draw)  # each with its own flag
    assert 0 < sum(streamed for *_, streamed in windows(draw)) < 61
    assert sum(data.forecast_values(share) for share in shares) == data.forecast_values(draw)


def test_more_ranks_than_windows_per_step_are_refused_before_any_training(tiny_recording, tmp_path: Path):
    from poco_rt.models.baselines import build_model
    from poco_rt.models.data import TrainingSet, layout_of

    layout = layout_of([tiny_recording])
    data = TrainingSet.build([tiny_recording], layout, TINY_MODEL)
    crowd = ProcessGroup(rank=0, world_size=TINY_TRAIN.batch_windows + 1)
    with pytest.raises(ValueError, match=r"17 ranks cannot share a step of batch_windows=16 .* at most 16 ranks"):
        train_loop(RunDirectory(tmp_path), build_model(TINY_MODEL, layout), data, TINY_TRAIN, group=crowd)
    assert not any(tmp_path.iterdir())


def test_training_alone_records_one_rank(tiny_run: Path):
    assert json.loads((tiny_run / "run.json").read_text())["ranks"] == 1
