"""Forecast score of a trained run served as fp32 ONNX and as int8 ONNX, on POCO's test split.

int8 (onnxruntime's dynamic quantisation of the MatMul weights) is accepted for a model only if its
score stays within 0.005 of fp32's: the score, not the speed, decides. Both are scored by the same
code as `poco-rt evaluate` (models/evaluation.py, POCO's metric exactly), with torch's own score
beside them as the reference. Usage:

    python bench/int8_score.py --run RUN --data ../shared/data/flavell_dag2023
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from poco_rt.models.data import TrainingSet
from poco_rt.models.evaluation import evaluate_model
from poco_rt.models.export import onnx_bytes, quantized_onnx
from poco_rt.models.recording import load_recordings
from poco_rt.models.run_directory import RunDirectory
from poco_rt.models.training import load_model
from poco_rt.server.engine import session_options

ACCEPTED_DROP = 0.005


class OnnxForecaster(nn.Module):
    """An ONNX model in evaluate_model's place: (B, N, C) windows of one session -> (B, N, P)."""

    def __init__(self, path: Path, embeddings: dict[int, np.ndarray]) -> None:
        super().__init__()
        self.session = ort.InferenceSession(str(path), session_options(threads=1), providers=["CPUExecutionProvider"])
        self.embeddings = embeddings

    def forward(self, context: Tensor, session_index: int) -> Tensor:
        embeddings = self.embeddings[session_index]
        forecasts = [
            self.session.run(None, {"context": window, "unit_embeddings": embeddings})[0]
            for window in context.numpy().astype(np.float32)
        ]
        return torch.from_numpy(np.stack(forecasts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained POCO run directory")
    parser.add_argument("--data", nargs="+", required=True, help="the recordings it was trained on")
    args = parser.parse_args()
    run = RunDirectory(args.run)
    model = load_model(run).eval()
    data = TrainingSet.build(load_recordings(args.data), run.layout, run.model_config)
    with torch.no_grad():
        embeddings = {i: model.session_unit_embeddings(i).numpy() for i in range(len(run.layout.sessions))}
    scores = {"torch": evaluate_model(model, data, run.layout).score}
    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
        fp32.write_bytes(onnx_bytes(model))
        int8.write_bytes(quantized_onnx(fp32.read_bytes()))
        for name, path in (("onnx fp32 (folded)", fp32), ("onnx int8 (folded)", int8)):
            scores[name] = evaluate_model(OnnxForecaster(path, embeddings), data, run.layout).score
    for name, score in scores.items():
        print(f"{name:<20} test score {score:.4f}")
    drop = scores["onnx fp32 (folded)"] - scores["onnx int8 (folded)"]
    verdict = "accepted" if drop < ACCEPTED_DROP else "refused"
    print(f"int8 drop {drop:+.4f} against fp32: {verdict} (the bar: < {ACCEPTED_DROP})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
