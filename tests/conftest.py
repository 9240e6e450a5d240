"""Shared fixtures: tiny simulated recordings and a tiny trained run, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from poco_rt.models.config import ModelConfig, TrainConfig
from poco_rt.models.recording import Recording
from poco_rt.models.simulator import SimulatorConfig, simulate_recording

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FLAVELL = SHARED_DATA / "flavell_dag2023"

TINY_MODEL = ModelConfig(dim=32, head_dim=16, self_attention_heads=2, ffn_hidden=32, mlp_hidden=64, rotary_dims=8)
TINY_TRAIN = TrainConfig(steps=30, batch_windows=16, eval_every=10, seed=0, threads=1)


@pytest.fixture(scope="session")
def tiny_recording() -> Recording:
    return simulate_recording(sessions=2, frames=1100, seed=1, config=SimulatorConfig(network_units=40))


@pytest.fixture(scope="session")
def tiny_recording_path(tiny_recording: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    tiny_recording.save_npz(path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tiny_recording: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from poco_rt.models.training import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(
        [tiny_recording],
        str(run),
        model_config=TINY_MODEL,
        train_config=TINY_TRAIN,
        sources=["tiny"],
        show_progress=False,
    )
    return run


def needs_flavell() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not FLAVELL.exists(), reason=f"real recordings not present at {FLAVELL}")
