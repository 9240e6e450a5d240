"""The network split by units (server/split_network.py, model.encode.onnx + model.decode.onnx) equals model.onnx."""

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from poco_rt.bundle import DECODE_MODEL_FILE, ENCODE_MODEL_FILE, load_bundle, rewrite_manifest
from poco_rt.models.config import ModelConfig
from poco_rt.models.folded import DecoderMaps, FoldedForecast, UnitForecast
from poco_rt.server.engine import Engine
from poco_rt.server.split_network import CHUNK_UNITS, MIN_SPLIT_UNITS
from tests.helpers import FOLD_TOLERANCE, opened_model


def random_inputs(units: int, *, seed: int, frames: int = 48, dim: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A normalised context (units, frames) and embeddings (units, dim)."""
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(units, frames)).astype(np.float32)
    return context, (0.3 * rng.normal(size=(units, dim))).astype(np.float32)


def bundle_inputs(bundle_path: Path, units: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    bundle = load_bundle(bundle_path)
    return random_inputs(units, seed=seed, frames=bundle.context_frames, dim=bundle.embedding_dim)


def test_decoding_any_chunks_of_units_with_the_frames_maps_equals_the_whole_forecast():
    model = opened_model(ModelConfig())
    whole, maps, units = FoldedForecast(model).eval(), DecoderMaps(model).eval(), UnitForecast(model).eval()
    context, embeddings = map(torch.from_numpy, random_inputs(300, seed=0))
    with torch.no_grad():
        query_maps, latent_values = maps(context, embeddings)
        chunks = [units(context[rows], embeddings[rows], query_maps, latent_values) for rows in
                  (slice(0, 1), slice(1, 120), slice(120, 300))]  # fmt: skip
        assert (torch.cat(chunks) - whole(context, embeddings)).abs().max().item() <= FOLD_TOLERANCE


@pytest.mark.parametrize("units", [1, MIN_SPLIT_UNITS - 1, MIN_SPLIT_UNITS, 2 * CHUNK_UNITS + 77])
@pytest.mark.parametrize("threads", [2, 3])
def test_an_engine_on_several_threads_forecasts_what_one_thread_does(served_bundle, units, threads):
    bundle = load_bundle(served_bundle)
    assert bundle.split
    one, several = Engine(bundle), Engine(bundle, threads=threads)
    assert one.split_network is None and several.split_network is not None
    context, embeddings = bundle_inputs(served_bundle, units, seed=units)
    expected = one.forecast_normalised(context, embeddings)
    forecast = several.forecast_normalised(context, embeddings)
    assert forecast.shape == expected.shape == (units, bundle.horizon) and forecast.dtype == np.float32
    assert np.abs(forecast - expected).max() <= FOLD_TOLERANCE
    np.testing.assert_array_equal(several.forecast_aside(context, embeddings), expected)  # the whole, one thread


def test_concurrent_forecasts_on_a_split_engine_each_get_their_own_result(served_bundle):
    engine = Engine(load_bundle(served_bundle), threads=2)
    inputs = [bundle_inputs(served_bundle, MIN_SPLIT_UNITS + 100 * index, seed=index) for index in range(4)]
    expected = [Engine(load_bundle(served_bundle)).forecast_normalised(*pair) for pair in inputs]
    results: dict[int, np.ndarray] = {}

    def forecast(index: int) -> None:
        for _ in range(5):
            results[index] = engine.forecast_normalised(*inputs[index])

    threads = [threading.Thread(target=forecast, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, reference in enumerate(expected):
        assert np.abs(results[index] - reference).max() <= FOLD_TOLERANCE


def allowed_cores(threads: list[threading.Thread]) -> list[set[int]]:
    """Each thread's allowed cores, from /proc."""
    affinities = []
    for thread in threads:
        if thread.native_id is not None:
            status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
            allowed = next(
                line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("Cpus_allowed_list")
            )
            cores: set[int] = set()
            for span in allowed.split(","):
                first, _, last = span.partition("-")
                cores.update(range(int(first), int(last or first) + 1))
            affinities.append(cores)
    return affinities


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread affinity is read from Linux's /proc")
def test_the_helper_threads_keep_to_the_cores_they_are_given(served_bundle):
    core = sorted(os.sched_getaffinity(0))[-1]
    engine = Engine(load_bundle(served_bundle), threads=2, helper_cores=[core])
    before = set(threading.enumerate())
    engine.forecast_normalised(
        *bundle_inputs(served_bundle, MIN_SPLIT_UNITS, seed=1)
    )  # the helper starts with its first chunk
    helpers = [thread for thread in threading.enumerate() if thread not in before]
    assert [thread.name.startswith("poco-rt-decode") for thread in helpers] == [True]
    assert allowed_cores(helpers) == [{core}]
    engine.split_network.close()


def without_split_graphs(bundle_path: Path, target: Path) -> Path:
    """A copy of the bundle as exported before model.encode.onnx and model.decode.onnx existed."""
    copy = Path(shutil.copytree(bundle_path, target))
    for name in (ENCODE_MODEL_FILE, DECODE_MODEL_FILE):
        (copy / name).unlink()
    rewrite_manifest(copy, load_bundle(bundle_path).manifest)
    return copy


def test_without_the_split_graphs_several_threads_are_onnxruntimes_own(served_bundle, tmp_path):
    old = load_bundle(without_split_graphs(served_bundle, tmp_path / "old"))
    assert not old.split and old.version == load_bundle(served_bundle).version
    engine = Engine(old, threads=2)
    assert engine.split_network is None
    assert engine.session.get_session_options().intra_op_num_threads == 2
