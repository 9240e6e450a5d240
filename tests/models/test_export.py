"""ONNX against torch, the bundle's integrity checks, and serving without torch."""

from pathlib import Path

import numpy as np
import pytest
import torch

from poco_rt.bundle import load_bundle
from poco_rt.errors import BundleError, UnknownSession
from poco_rt.models.config import ModelConfig, SessionLayout, SessionSpec
from poco_rt.models.export import onnx_bytes
from poco_rt.models.poco import Poco
from poco_rt.models.run_directory import RunDirectory
from poco_rt.models.training import load_model
from tests.helpers import ONNX_TOLERANCE
from tests.torchless import BLOCK_TORCH, run_child


@pytest.fixture(scope="module")
def paper_model_onnx(tmp_path_factory) -> tuple[Poco, Path]:
    torch.manual_seed(0)
    model = Poco(ModelConfig(), SessionLayout((SessionSpec("d", "s", 4),))).eval()
    for parameter in model.forecaster.parameters():  # open the zero-initialised FiLM gate
        torch.nn.init.normal_(parameter, std=0.05)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    path.write_bytes(onnx_bytes(model))
    return model, path


@pytest.mark.parametrize("units", [1, 137, 5000])
def test_onnx_matches_torch(paper_model_onnx, units):
    import onnxruntime as ort

    model, path = paper_model_onnx
    rng = np.random.default_rng(units)
    context = rng.normal(size=(units, 48)).astype(np.float32)
    embeddings = (0.3 * rng.normal(size=(units, 128))).astype(np.float32)
    with torch.no_grad():
        expected = model.forecast(torch.from_numpy(context)[None], torch.from_numpy(embeddings))[0].numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"context": context, "unit_embeddings": embeddings})[0]
    assert actual.shape == (units, 16)
    assert np.abs(actual - expected).max() <= ONNX_TOLERANCE


def test_bundle_sessions_carry_the_runs_embeddings_and_normalisation(tiny_run, served_bundle, tiny_recording):
    bundle = load_bundle(served_bundle)
    assert sorted(bundle.sessions) == ["sim00", "sim01"]
    model = load_model(RunDirectory(tiny_run))
    with torch.no_grad():
        np.testing.assert_array_equal(bundle.session("sim01").unit_embeddings, model.session_unit_embeddings(1).numpy())
    traces = tiny_recording.session("sim01").traces
    np.testing.assert_allclose(bundle.session("sim01").mean, traces.mean(axis=0), rtol=1e-5)
    assert bundle.session("sim01").unit_ids == tiny_recording.session("sim01").unit_ids
    with pytest.raises(UnknownSession, match="no session 'nope'"):
        bundle.session("nope")


def test_a_tampered_or_incomplete_bundle_is_refused(served_bundle, tmp_path):
    import shutil

    copy = Path(shutil.copytree(served_bundle, tmp_path / "b"))
    with (copy / "sessions" / "sim00.npz").open("ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match=r"sim00\.npz does not match its sha256"):
        load_bundle(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx is listed in bundle\.json but missing"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path)


TORCHLESS_PREDICT = (
    BLOCK_TORCH
    + """
import json
import numpy as np
from poco_rt.bundle import load_bundle
from poco_rt.server.engine import Engine
engine = Engine(load_bundle(sys.argv[1]))
frames = np.load(sys.argv[2])
forecast = engine.forecast("sim00", frames)
print(json.dumps({"forecast": forecast.tolist(), "torch_loaded": "torch" in sys.modules}))
"""
)


def test_the_bundle_forecasts_in_a_process_without_torch(tiny_run, served_bundle, tiny_recording, tmp_path):
    frames = tiny_recording.session("sim00").traces[100:148]  # (C, N) raw
    np.save(tmp_path / "frames.npy", frames)
    reply = run_child(TORCHLESS_PREDICT, str(served_bundle), str(tmp_path / "frames.npy"))
    assert reply["torch_loaded"] is False
    calibration = load_bundle(served_bundle).session("sim00")
    context = torch.from_numpy(((frames - calibration.mean) / calibration.std).T.copy())
    with torch.no_grad():
        normalised = load_model(RunDirectory(tiny_run))(context[None], 0)[0].numpy()
    expected = normalised * calibration.std[:, None] + calibration.mean[:, None]
    tolerance = ONNX_TOLERANCE * float(calibration.std.max())
    np.testing.assert_allclose(np.array(reply["forecast"]), expected, atol=tolerance)


@pytest.mark.parametrize("name", ["", "-x", "a/b", "abc\n", "a" * 129])
def test_session_names_that_could_escape_the_sessions_folder_are_refused(name):
    from poco_rt.bundle import check_session_name

    with pytest.raises(ValueError, match="session name"):
        check_session_name(name)


def test_an_int8_bundle_serves_its_own_network_tagged_with_its_own_version(int8_bundle):
    from poco_rt.server.engine import Engine

    bundle = load_bundle(int8_bundle)
    fp32, int8 = Engine(bundle), Engine(bundle, int8=True)
    assert int8.version == bundle.network_version(int8=True) != fp32.version == bundle.version
    session = bundle.session("sim00")
    context = np.random.default_rng(0).normal(size=(session.num_units, 48)).astype(np.float32)
    expected = fp32.forecast_normalised(context, session.unit_embeddings)
    difference = np.abs(int8.forecast_normalised(context, session.unit_embeddings) - expected).max()
    assert 0 < difference < 0.1  # quantised, so not equal; close (its score is checked by bench/int8_score.py)


def test_serving_int8_from_a_bundle_without_it_is_refused(served_bundle):
    from poco_rt.server.engine import Engine

    with pytest.raises(BundleError, match=r"no model.int8.onnx; export it with `poco-rt export --int8`"):
        Engine(load_bundle(served_bundle), int8=True)


def test_an_exported_network_holds_no_record_of_where_it_was_exported(paper_model_onnx):
    from poco_rt.models import export

    _, path = paper_model_onnx
    content = path.read_bytes()
    assert b"stack_trace" not in content and str(Path(export.__file__).parents[1]).encode() not in content
