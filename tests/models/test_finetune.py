import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from poco_rt.bundle import MODEL_FILE, load_bundle
from poco_rt.models.export import add_sessions_to_bundle
from poco_rt.models.finetune import FinetuneMode, finetune
from poco_rt.models.run_directory import BEST_CHECKPOINT, LAST_CHECKPOINT, RunDirectory, load_checkpoint
from poco_rt.models.simulator import SimulatorConfig, simulate_recording
from tests.helpers import TINY_TRAIN

FINETUNE_TRAIN = dataclasses.replace(TINY_TRAIN, steps=10, eval_every=5)


@pytest.fixture(scope="module")
def new_animal():
    """Another simulated preparation: same dataset name, new session names, its own units."""
    recording = simulate_recording(sessions=1, frames=1100, seed=7, config=SimulatorConfig(network_units=40))
    session = dataclasses.replace(recording.sessions[0], name="new00")
    return dataclasses.replace(recording, sessions=(session,))


@pytest.fixture(scope="module")
def embeddings_run(tiny_run, new_animal, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finetune") / "emb"
    finetune(
        str(tiny_run),
        [new_animal],
        str(out),
        mode=FinetuneMode.EMBEDDINGS,
        train_config=FINETUNE_TRAIN,
        show_progress=False,
    )
    return out


def test_embeddings_mode_changes_only_the_new_sessions_rows(tiny_run, embeddings_run):
    before = load_checkpoint(tiny_run / BEST_CHECKPOINT)["model"]
    after = load_checkpoint(embeddings_run / LAST_CHECKPOINT)["model"]
    old_units = before["unit_embedding.weight"].shape[0]
    for name, tensor in before.items():
        if name in ("unit_embedding.weight", "session_embedding.weight"):
            torch.testing.assert_close(after[name][: tensor.shape[0]], tensor, rtol=0, atol=0)
        else:
            torch.testing.assert_close(after[name], tensor, rtol=0, atol=0)
    assert after["unit_embedding.weight"].shape[0] > old_units
    assert not torch.equal(
        after["session_embedding.weight"][-1], torch.zeros_like(after["session_embedding.weight"][-1])
    )


def test_mlp_mode_also_trains_the_forecaster_but_not_the_encoder(tiny_run, new_animal, tmp_path):
    finetune(
        str(tiny_run),
        [new_animal],
        str(tmp_path / "mlp"),
        mode=FinetuneMode.MLP,
        train_config=FINETUNE_TRAIN,
        show_progress=False,
    )
    before = load_checkpoint(tiny_run / BEST_CHECKPOINT)["model"]
    after = load_checkpoint(tmp_path / "mlp" / LAST_CHECKPOINT)["model"]
    assert not torch.equal(after["forecaster.input.weight"], before["forecaster.input.weight"])
    torch.testing.assert_close(after["encoder.tokenize.weight"], before["encoder.tokenize.weight"], rtol=0, atol=0)


def test_fine_tuning_on_a_known_session_is_refused(tiny_run, tiny_recording, tmp_path):
    with pytest.raises(ValueError, match="already trained on"):
        finetune(
            str(tiny_run),
            [tiny_recording],
            str(tmp_path / "x"),
            mode=FinetuneMode.EMBEDDINGS,
            train_config=FINETUNE_TRAIN,
            show_progress=False,
        )


def test_new_sessions_join_the_bundle_without_touching_the_network(served_bundle, embeddings_run, tmp_path):
    bundle = load_bundle(shutil.copytree(served_bundle, tmp_path / "bundle"))
    network_hash = bundle.manifest["hashes"][MODEL_FILE]
    updated = add_sessions_to_bundle(embeddings_run, bundle.path)
    assert sorted(updated.sessions) == ["new00", "sim00", "sim01"]
    assert updated.manifest["hashes"][MODEL_FILE] == network_hash
    for name in ("sim00", "sim01"):
        np.testing.assert_array_equal(updated.session(name).unit_embeddings, bundle.session(name).unit_embeddings)
    assert (
        load_bundle(bundle.path).session("new00").num_units
        == RunDirectory(embeddings_run).layout.sessions[-1].num_units
    )


def test_only_an_embeddings_fine_tune_may_add_sessions(tiny_run, served_bundle, tmp_path):
    bundle = load_bundle(shutil.copytree(served_bundle, tmp_path / "bundle"))
    with pytest.raises(ValueError, match="not an embeddings-only fine-tune"):
        add_sessions_to_bundle(tiny_run, bundle.path)
    shutil.rmtree(bundle.path)
