import dataclasses
from pathlib import Path

import pytest
import torch

from poco_rt.models.config import ModelKind
from poco_rt.models.run_directory import BEST_CHECKPOINT, LAST_CHECKPOINT, RunDirectory, load_checkpoint
from tests.helpers import TINY_MODEL, TINY_TRAIN, train_tiny


def weights(run: Path, checkpoint: str = LAST_CHECKPOINT) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / checkpoint)["model"]


def losses(run: Path) -> list[tuple[int, float, float]]:
    return [(r["step"], r["train_loss"], r["validation_loss"]) for r in RunDirectory(run).log()]


def test_same_seed_gives_the_same_run(tiny_recording, tiny_run: Path, tmp_path: Path):
    train_tiny(tiny_recording, tmp_path / "again")
    assert losses(tmp_path / "again") == losses(tiny_run)
    for name, tensor in weights(tiny_run).items():
        torch.testing.assert_close(weights(tmp_path / "again")[name], tensor, rtol=0, atol=0)


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_recording, tiny_run: Path, tmp_path: Path):
    run = tmp_path / "resumed"
    train_tiny(tiny_recording, run, train_config=dataclasses.replace(TINY_TRAIN, steps=20))
    train_tiny(tiny_recording, run)
    assert [r["step"] for r in RunDirectory(run).log()] == [10, 20, 30]
    assert losses(run) == losses(tiny_run)
    for name, tensor in weights(tiny_run).items():
        torch.testing.assert_close(weights(run)[name], tensor, rtol=0, atol=0)


def test_the_best_checkpoint_is_the_lowest_validation_loss(tiny_run: Path):
    log = RunDirectory(tiny_run).log()
    best = min(log, key=lambda r: r["validation_loss"])
    assert load_checkpoint(tiny_run / BEST_CHECKPOINT)["step"] == best["step"]


def test_patience_stops_a_run_that_no_longer_improves(tiny_recording, tmp_path: Path):
    config = dataclasses.replace(TINY_TRAIN, steps=200, eval_every=2, patience=2, learning_rate=0.3)
    train_tiny(tiny_recording, tmp_path / "impatient", train_config=config)
    manifest = RunDirectory(tmp_path / "impatient").manifest()
    steps = [r["step"] for r in RunDirectory(tmp_path / "impatient").log()]
    assert steps[-1] < 200
    assert steps[-1] == manifest["best_step"] + 2 * config.eval_every


def test_a_run_directory_refuses_a_different_model(tiny_recording, tiny_run: Path):
    with pytest.raises(ValueError, match="another model or data"):
        train_tiny(tiny_recording, tiny_run, model_config=dataclasses.replace(TINY_MODEL, kind=ModelKind.MLP))


def test_copy_last_has_nothing_to_train(tiny_recording, tmp_path: Path):
    with pytest.raises(ValueError, match="nothing to train"):
        train_tiny(tiny_recording, tmp_path / "c", model_config=dataclasses.replace(TINY_MODEL, kind="copy_last"))
