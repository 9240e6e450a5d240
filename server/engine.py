"""onnxruntime inference of a model bundle: raw frames in, raw-unit forecasts out, no torch.

The engine owns one InferenceSession for the bundle's session-agnostic network. A forecast for a
session normalises its (C, N) context with that session's calibration, runs the network once with
the session's unit embeddings, and maps the (N, P) result back to raw units. The server's hot
path (poco_rt.server.session) keeps its context normalised and calls `forecast_normalised`.

`session.run` is used rather than IOBinding into preallocated outputs: IOBinding measured the same
(median run vs IOBinding, the tests' tiny bundle, one thread on a busy 2-core machine: N = 128
0.27 vs 0.28 ms; 1000 1.45 vs 1.49 ms; 10000 15.1 vs 15.1 ms), and
the server needs a fresh (N, P) array per forecast anyway, since REST and WebSocket readers hold
it after the next frame arrives. onnxruntime's `run` is safe to call from several threads at
once, which the stateless REST forecast relies on.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from poco_rt.bundle import Bundle
from poco_rt.server.settings import EngineDevice

PROVIDERS = {
    EngineDevice.CPU: ["CPUExecutionProvider"],
    EngineDevice.CUDA: ["CUDAExecutionProvider", "CPUExecutionProvider"],  # CPU for ops CUDA lacks
}


def providers_for(device: EngineDevice) -> list[str]:
    """The execution providers for `device`; a clear ValueError where this onnxruntime lacks them, so
    that a server asked for the GPU refuses to start rather than run silently on the CPU."""
    providers = PROVIDERS[device]
    available = ort.get_available_providers()
    if providers[0] not in available:
        raise ValueError(
            f"engine_device={device.value} needs onnxruntime's {providers[0]}, but this onnxruntime "
            f"({ort.__version__}) has only {available}; install onnxruntime-gpu (matching the CUDA on this machine) "
            "or use engine_device=cpu"
        )
    return providers


def session_options(*, threads: int = 1) -> ort.SessionOptions:
    """Threads stay idle rather than spin between frames: a rig PC runs acquisition beside us."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def inference_session(
    bundle: Bundle, *, threads: int = 1, device: EngineDevice = EngineDevice.CPU, int8: bool = False
) -> ort.InferenceSession:
    options = session_options(threads=threads)
    model_path = bundle.path / bundle.network_file(int8=int8)
    return ort.InferenceSession(str(model_path), options, providers=providers_for(device))


class Engine:
    def __init__(
        self, bundle: Bundle, *, threads: int = 1, device: EngineDevice = EngineDevice.CPU, int8: bool = False
    ) -> None:
        self.bundle = bundle
        self.version = bundle.network_version(int8=int8)  # what forecasts are tagged with
        self.session = inference_session(bundle, threads=threads, device=device, int8=int8)

    def forecast_normalised(self, context: np.ndarray, unit_embeddings: np.ndarray) -> np.ndarray:
        """context (N, C) and unit_embeddings (N, D), float32 -> (N, P) in normalised units."""
        return self.session.run(None, {"context": context, "unit_embeddings": unit_embeddings})[0]

    def forecast(self, session_name: str, frames: np.ndarray) -> np.ndarray:
        """frames (C, N) raw, oldest first -> (N, P) raw forecast of the next P frames."""
        calibration = self.bundle.session(session_name)
        context = ((frames - calibration.mean) / calibration.std).T.astype(np.float32, copy=False)
        normalised = self.forecast_normalised(np.ascontiguousarray(context), calibration.unit_embeddings)
        return normalised * calibration.std[:, None] + calibration.mean[:, None]

    def warm_up(self, unit_embeddings: np.ndarray) -> None:
        """One throwaway run at this unit count, so the first real frame does not pay onnxruntime's first-run cost."""
        context = np.zeros((unit_embeddings.shape[0], self.bundle.context_frames), dtype=np.float32)
        self.forecast_normalised(context, unit_embeddings)
