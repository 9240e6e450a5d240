from pathlib import Path

import pytest
import torch

from poco_rt.models.config import ModelKind
from poco_rt.models.run_directory import BEST_CHECKPOINT, LAST_CHECKPOINT, RunDirectory, load_checkpoint
from poco_rt.models.training import train

from .conftest import TINY_MODEL, TINY_TRAIN


def weights(run: Path, checkpoint: str = LAST_CHECKPOINT) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / checkpoint)["model"]


def test_same_seed_gives_the_same_run(tiny_recording, tiny_run: Path, tmp_path: Path):
    train(
        [tiny_recording],
        str(tmp_path / "again"),
        model_config=TINY_MODEL,
        train_config=TINY_TRAIN,
        sources=["tiny"],
        show_progress=False,
    )

    def losses(run: Path) -> list[tuple[int, float, float]]:
        return [(r["step"], r["train_loss"], r["validation_loss"]) for r in RunDirectory(run).log()]

    assert losses(tmp_path / "again") == losses(tiny_run)
    for name, tensor in weights(tiny_run).items():
        torch.testing.assert_close(weights(tmp_path / "again")[name], tensor, rtol=0, atol=0)


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_recording, tiny_run: Path, tmp_path: Path):
    import dataclasses

    run = tmp_path / "resumed"
    first_part = dataclasses.replace(TINY_TRAIN, steps=20)
    train(
        [tiny_recording],
        str(run),
        model_config=TINY_MODEL,
        train_config=first_part,
        sources=["tiny"],
        show_progress=False,
    )
    train(
        [tiny_recording],
        str(run),
        model_config=TINY_MODEL,
        train_config=TINY_TRAIN,
        sources=["tiny"],
        show_progress=False,
    )
    assert [r["step"] for r in RunDirectory(run).log()] == [10, 20, 30]
    for name, tensor in weights(tiny_run).items():
        torch.testing.assert_close(weights(run)[name], tensor, rtol=0, atol=0)


def test_the_best_checkpoint_is_the_lowest_validation_loss(tiny_run: Path):
    log = RunDirectory(tiny_run).log()
    best = min(log, key=lambda r: r["validation_loss"])
    assert load_checkpoint(tiny_run / BEST_CHECKPOINT)["step"] == best["step"]


def test_a_run_directory_refuses_a_different_model(tiny_recording, tiny_run: Path):
    import dataclasses

    with pytest.raises(ValueError, match="another model or data"):
        train(
            [tiny_recording],
            str(tiny_run),
            model_config=dataclasses.replace(TINY_MODEL, kind=ModelKind.MLP),
            train_config=TINY_TRAIN,
            sources=["tiny"],
            show_progress=False,
        )


def test_copy_last_has_nothing_to_train(tiny_recording, tmp_path: Path):
    import dataclasses

    with pytest.raises(ValueError, match="nothing to train"):
        train(
            [tiny_recording],
            str(tmp_path / "c"),
            model_config=dataclasses.replace(TINY_MODEL, kind="copy_last"),
            train_config=TINY_TRAIN,
            sources=["tiny"],
            show_progress=False,
        )
