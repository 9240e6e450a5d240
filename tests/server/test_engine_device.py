"""--engine-device: CPU by default; CUDA only where onnxruntime has it, refused with the fix otherwise."""

import onnxruntime as ort
import pytest

from poco_rt.bundle import load_bundle
from poco_rt.resources import default_bundle_path
from poco_rt.server.engine import Engine, providers_for
from poco_rt.server.settings import EngineDevice, ServerSettings

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_the_default_engine_runs_on_the_cpu():
    assert ServerSettings().engine_device is EngineDevice.CPU
    engine = Engine(load_bundle(default_bundle_path()))
    assert engine.session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA; the refusal is for machines without it")
def test_cuda_without_onnxruntime_gpu_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"engine_device=cuda needs .*CUDAExecutionProvider.*onnxruntime-gpu"):
        providers_for(EngineDevice.CUDA)


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a GPU (bench/README.md, inference speed)")
def test_cuda_forecasts_match_the_cpu():
    import numpy as np

    bundle = load_bundle(default_bundle_path())
    frames = np.random.default_rng(0).normal(size=(bundle.context_frames, bundle.session("sim00").num_units))
    cpu = Engine(bundle).forecast("sim00", frames.astype(np.float32))
    cuda = Engine(bundle, device=EngineDevice.CUDA).forecast("sim00", frames.astype(np.float32))
    np.testing.assert_allclose(cuda, cpu, atol=1e-4)
