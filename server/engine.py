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


def inference_session(bundle: Bundle, *, threads: int = 1) -> ort.InferenceSession:
    """Threads stay idle rather than spin between frames: a rig PC runs acquisition beside us."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(bundle.model_path), options, providers=["CPUExecutionProvider"])


class Engine:
    def __init__(self, bundle: Bundle, *, threads: int = 1) -> None:
        self.bundle = bundle
        self.session = inference_session(bundle, threads=threads)

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
