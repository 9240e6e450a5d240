"""Several sessions in one call (models/batched.py, model.batched.onnx) equal each session run alone."""

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from poco_rt.bundle import BATCHED_MODEL_FILE, load_bundle, rewrite_manifest
from poco_rt.models.batched import BatchedForecast
from poco_rt.models.config import FilmGate, ModelConfig, SessionLayout, SessionSpec
from poco_rt.models.export import batched_onnx_bytes, onnx_bytes
from poco_rt.models.folded import FoldedForecast
from poco_rt.models.poco import Poco
from poco_rt.server.engine import BATCH_MAX_UNITS, BatchCache, Engine, InferenceBatch, StreamInput
from tests.helpers import FOLD_TOLERANCE, ONNX_TOLERANCE, opened_model, wait_until

SESSION_SIZES = [[1], [1, 1], [3, 257], [1, 500, 2], [5, 1, 40, 1, 9, 1, 2, 77]]  # alone, 1-unit, unequal, S = 8


def sessions_of(sizes: list[int], *, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random normalised contexts (N_s, 48) and embeddings (N_s, 128), one pair per session."""
    rng = np.random.default_rng(seed)
    contexts = [rng.normal(size=(units, 48)).astype(np.float32) for units in sizes]
    embeddings = [(0.3 * rng.normal(size=(units, 128))).astype(np.float32) for units in sizes]
    return contexts, embeddings


def batch_of(contexts: list[np.ndarray], embeddings: list[np.ndarray]) -> InferenceBatch:
    batch = InferenceBatch.of(embeddings, context_frames=48)
    np.concatenate(contexts, out=batch.context)
    return batch


def test_a_batchs_mask_puts_each_unit_in_its_own_session():
    batch = InferenceBatch.of([np.zeros((2, 4)), np.zeros((1, 4)), np.zeros((3, 4))], context_frames=5)
    expected = [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]]
    np.testing.assert_array_equal(batch.session_mask, np.array(expected, dtype=np.float32))
    assert (batch.bounds, batch.rows(1), batch.context.shape) == ((0, 2, 3, 6), slice(2, 3), (6, 5))


@pytest.mark.parametrize("gate", list(FilmGate))
@pytest.mark.parametrize("sizes", SESSION_SIZES)
def test_each_sessions_rows_of_a_batch_equal_that_session_alone(gate, sizes):
    model = opened_model(ModelConfig(film_gate=gate))
    folded, batched = FoldedForecast(model).eval(), BatchedForecast(model).eval()
    contexts, embeddings = sessions_of(sizes, seed=len(sizes))
    batch = batch_of(contexts, embeddings)
    with torch.no_grad():
        together = batched(*map(torch.from_numpy, (batch.context, batch.unit_embeddings, batch.session_mask)))
        for index, (context, rows) in enumerate(zip(contexts, embeddings, strict=True)):
            alone = folded(torch.from_numpy(context), torch.from_numpy(rows))
            reference = model.forecast(torch.from_numpy(context)[None], torch.from_numpy(rows))[0]
            assert (together[batch.rows(index)] - alone).abs().max().item() <= FOLD_TOLERANCE
            assert (together[batch.rows(index)] - reference).abs().max().item() <= FOLD_TOLERANCE


@pytest.fixture(scope="module")
def paper_sessions(tmp_path_factory) -> tuple[Poco, ort.InferenceSession, ort.InferenceSession]:
    """POCO's paper sizes with the FiLM gate opened: model.onnx and model.batched.onnx in onnxruntime."""
    torch.manual_seed(0)
    model = Poco(ModelConfig(), SessionLayout((SessionSpec("d", "s", 4),))).eval()
    for parameter in model.forecaster.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    folder = tmp_path_factory.mktemp("batched")
    (folder / "model.onnx").write_bytes(onnx_bytes(model))
    (folder / "model.batched.onnx").write_bytes(batched_onnx_bytes(model))
    sessions = [ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"]) for name in
                ("model.onnx", "model.batched.onnx")]  # fmt: skip
    return model, *sessions


@pytest.mark.parametrize("sizes", [*SESSION_SIZES, [2000, 1]])
def test_the_batched_onnx_graph_equals_per_session_calls_and_torch(paper_sessions, sizes):
    model, single, batched = paper_sessions
    contexts, embeddings = sessions_of(sizes, seed=sum(sizes))
    batch = batch_of(contexts, embeddings)
    feed = {"context": batch.context, "unit_embeddings": batch.unit_embeddings, "session_mask": batch.session_mask}
    together = batched.run(None, feed)[0]
    assert together.shape == (sum(sizes), 16)
    for index, (context, rows) in enumerate(zip(contexts, embeddings, strict=True)):
        alone = single.run(None, {"context": context, "unit_embeddings": rows})[0]
        with torch.no_grad():
            reference = model.forecast(torch.from_numpy(context)[None], torch.from_numpy(rows))[0].numpy()
        assert np.abs(together[batch.rows(index)] - alone).max() <= FOLD_TOLERANCE
        assert np.abs(together[batch.rows(index)] - reference).max() <= ONNX_TOLERANCE


def test_an_engine_batches_a_bundles_sessions_as_their_own_calls(served_bundle):
    bundle = load_bundle(served_bundle)
    engine = Engine(bundle)
    assert bundle.batched_version is not None and bundle.batched_version != bundle.version
    calibrations = [bundle.session(name) for name in ("sim00", "sim01", "sim00")]
    rng = np.random.default_rng(0)
    contexts = [rng.normal(size=(c.num_units, 48)).astype(np.float32) for c in calibrations]
    batch = batch_of(contexts, [c.unit_embeddings for c in calibrations])
    assert engine.worth_batching(sessions=3, total_units=sum(c.num_units for c in calibrations))
    together = engine.forecast_batch(batch)
    for index, (context, calibration) in enumerate(zip(contexts, calibrations, strict=True)):
        alone = engine.forecast_normalised(context, calibration.unit_embeddings)
        assert np.abs(together[batch.rows(index)] - alone).max() <= FOLD_TOLERANCE


def test_batching_is_only_worth_it_for_several_sessions_of_few_units_together(served_bundle):
    engine = Engine(load_bundle(served_bundle))
    assert not engine.worth_batching(sessions=1, total_units=100)
    assert engine.worth_batching(sessions=2, total_units=BATCH_MAX_UNITS)
    assert not engine.worth_batching(sessions=2, total_units=BATCH_MAX_UNITS + 1)


def without_batched_graph(bundle_path: Path, target: Path) -> Path:
    """A copy of the bundle as exported before model.batched.onnx existed."""
    copy = Path(shutil.copytree(bundle_path, target))
    (copy / BATCHED_MODEL_FILE).unlink()
    rewrite_manifest(copy, load_bundle(bundle_path).manifest)
    return copy


def test_a_bundle_without_the_batched_graph_serves_per_session(served_bundle, tmp_path):
    old = load_bundle(without_batched_graph(served_bundle, tmp_path / "old"))
    assert old.batched_version is None and old.version == load_bundle(served_bundle).version
    engine = Engine(old)
    assert engine.batched_session is None and not engine.worth_batching(sessions=2, total_units=20)
    calibration = old.session("sim00")
    with pytest.raises(ValueError, match=r"has no model\.batched\.onnx, or the engine serves int8"):
        engine.forecast_batch(InferenceBatch.of([calibration.unit_embeddings] * 2, context_frames=48))


def streams_of(contexts: list[np.ndarray], embeddings: list[np.ndarray], events: list[str]) -> list[StreamInput]:
    """One stream per context, keyed by its position, noting in `events` when it writes its context."""

    def writer(index: int) -> Callable[[np.ndarray], None]:
        def context_into(out: np.ndarray) -> None:
            events.append(f"context {index}")
            np.copyto(out, contexts[index])

        return context_into

    return [
        StreamInput(key=index, unit_embeddings=rows, context_into=writer(index))
        for index, rows in enumerate(embeddings)
    ]


@pytest.fixture
def engines(served_bundle, tmp_path) -> tuple[Engine, Engine]:
    """An engine that batches the tiny bundle's sessions, and one of the bundle without the batched graph."""
    old = without_batched_graph(served_bundle, tmp_path / "old")
    return Engine(load_bundle(served_bundle)), Engine(load_bundle(old))


def test_the_batched_and_per_session_routes_give_each_stream_its_own_forecast(engines):
    batching, per_session = engines
    calibrations = [batching.bundle.session(name) for name in ("sim00", "sim01", "sim00")]
    # the third stream's units in another order, so that a stream given another's rows would show
    embeddings = [c.unit_embeddings for c in calibrations[:2]] + [calibrations[2].unit_embeddings[::-1].copy()]
    contexts = [np.random.default_rng(3).normal(size=(c.num_units, 48)).astype(np.float32) for c in calibrations]
    together = list(batching.forecast_streams(streams_of(contexts, embeddings, [])))
    alone = list(per_session.forecast_streams(streams_of(contexts, embeddings, [])))
    assert [result.index for result in together] == [result.index for result in alone] == [0, 1, 2]
    assert len({(result.infer_s, result.inferred_ns) for result in together}) == 1  # each waited for the one call
    for result, single, context, rows in zip(together, alone, contexts, embeddings, strict=True):
        reference = per_session.forecast_normalised(context, rows)
        np.testing.assert_array_equal(single.values, reference)
        assert np.abs(result.values - reference).max() <= FOLD_TOLERANCE
    reordered = list(batching.forecast_streams(streams_of(contexts, embeddings, [])[::-1]))  # the cached batch
    for result in reordered:
        np.testing.assert_array_equal(result.values, together[2 - result.index].values)


def test_the_per_session_route_yields_each_forecast_before_the_next_stream_writes_its_context(engines):
    embeddings = [engines[0].bundle.session("sim00").unit_embeddings] * 2
    contexts = [np.zeros((len(rows), 48), dtype=np.float32) for rows in embeddings]
    order: dict[str, list[str]] = {}
    for engine, route in zip(engines, ("batching", "per session"), strict=True):
        events: list[str] = []
        for result in engine.forecast_streams(streams_of(contexts, embeddings, events)):
            events.append(f"out {result.index}")
        order[route] = events
    assert order == {
        "batching": ["context 0", "context 1", "out 0", "out 1"],
        "per session": ["context 0", "out 0", "context 1", "out 1"],
    }


def test_the_batch_cache_finds_a_composition_in_any_order_and_keeps_only_the_newest():
    embeddings = {key: np.full((units, 4), units, dtype=np.float32) for key, units in (("a", 2), ("b", 1), ("c", 3))}

    def streams(*keys: str) -> list[StreamInput]:
        return [StreamInput(key=key, unit_embeddings=embeddings[key], context_into=lambda out: out) for key in keys]

    cache = BatchCache(context_frames=5, limit=2)
    batch, rows = cache.batch_for(streams("a", "b"))
    again, swapped = cache.batch_for(streams("b", "a"))
    assert again is batch and swapped == rows[::-1] == [slice(2, 3), slice(0, 2)]
    np.testing.assert_array_equal(batch.unit_embeddings[swapped[0]], embeddings["b"])
    cache.batch_for(streams("a", "c"))
    cache.batch_for(streams("b", "c"))  # the third composition: the oldest, {a, b}, goes
    assert len(cache) == 2 and cache.batch_for(streams("a", "b"))[0] is not batch
    with pytest.raises(ValueError, match="each stream needs its own"):
        cache.batch_for(streams("a", "a"))


def test_an_int8_engine_does_not_batch(int8_bundle):
    bundle = load_bundle(int8_bundle)
    assert bundle.batched_version is not None
    assert Engine(bundle).worth_batching(sessions=2, total_units=20)
    assert not Engine(bundle, int8=True).worth_batching(sessions=2, total_units=20)


STREAMS = {"a": "sim00", "b": "sim01", "c": "sim00"}  # stream -> calibration: three sessions on one bundle


@pytest.mark.parametrize("batched", [True, False], ids=["batching", "bundle-without-batched-graph"])
def test_the_server_publishes_the_per_session_forecasts_with_batching_on_or_off(
    batched, start_server, stream_client, served_bundle, tiny_recording, tmp_path, monkeypatch
):
    import time

    bundle_path = served_bundle if batched else without_batched_graph(served_bundle, tmp_path / "old")
    batch_sizes: list[int] = []
    forecast_batch = Engine.forecast_batch

    def counted(engine: Engine, batch: InferenceBatch) -> np.ndarray:
        batch_sizes.append(len(batch.bounds) - 1)
        return forecast_batch(engine, batch)

    server = start_server(bundle=bundle_path, open_sessions=STREAMS)
    monkeypatch.setattr(Engine, "forecast_batch", counted)  # after the sessions' warm-up runs
    client = stream_client(server, sessions=tuple(STREAMS))
    bundle = load_bundle(bundle_path)
    reference = Engine(load_bundle(served_bundle))  # the per-session path: one call per session
    traces = {stream: tiny_recording.session(name).traces[:60] for stream, name in STREAMS.items()}
    context = bundle.context_frames
    for index in range(context + 3):
        if index == context - 1:  # the warm-up frames all taken first, so none shares a turn with a forecast's
            wait_until(
                lambda: all(server.runtime.session_status(s).frames_accepted == context - 1 for s in STREAMS),
                "the warm-up frames taken",
            )
        if index >= context - 1:
            server.runtime.between_frames(lambda: time.sleep(0.3))  # the three frames queue, then go in one turn
        for stream in STREAMS:
            client.send(traces[stream][index], frame_index=index, session=stream)
        if index < context - 1:
            continue
        received = {forecast.header.session: forecast for forecast in (client.receive() for _ in STREAMS)}
        for stream, calibration in STREAMS.items():
            forecast = received[stream]
            expected = reference.forecast(calibration, traces[stream][index - context + 1 : index + 1])
            assert (forecast.header.frame_index, forecast.header.model_version) == (index, bundle.version)
            tolerance = FOLD_TOLERANCE * float(bundle.session(calibration).std.max())
            np.testing.assert_allclose(forecast.values, expected, rtol=0, atol=tolerance)
    assert batch_sizes == ([3] * 4 if batched else [])
