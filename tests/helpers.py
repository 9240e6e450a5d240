"""Helpers the test modules share: constants, the tiny model, waiting, ports. Fixtures are in conftest.py."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from poco_rt.models.config import ModelConfig, TrainConfig
from poco_rt.models.recording import Recording

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FLAVELL = SHARED_DATA / "flavell_dag2023"

C, P = ModelConfig().context_frames, ModelConfig().horizon  # every bundle the tests serve: the embedded one, the tiny
TINY_MODEL = ModelConfig(dim=32, head_dim=16, self_attention_heads=2, ffn_hidden=32, mlp_hidden=64, rotary_dims=8)
TINY_TRAIN = TrainConfig(steps=30, batch_windows=16, eval_every=10, seed=0, threads=1)


def train_tiny(
    recording: Recording, run: Path, *, model_config: ModelConfig = TINY_MODEL, train_config: TrainConfig = TINY_TRAIN
) -> None:
    from poco_rt.models.training import train

    train(
        [recording],
        str(run),
        model_config=model_config,
        train_config=train_config,
        sources=["tiny"],
        show_progress=False,
    )


def needs_flavell() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not FLAVELL.exists(), reason=f"real recordings not present at {FLAVELL}")


def wait_until(condition, what: str, timeout_s: float = 20.0) -> None:
    """Poll `condition` until it holds; a failed test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)


def free_port() -> int:
    """A port no one listens on now, for a server that must come back on the same address after a restart."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
