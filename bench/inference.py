"""Inference speed of one forecast (one frame of one session) against the machine's compute floor.

For each unit count N: the model's FLOPs per forecast from its layer shapes, this machine's
float32 GEMM throughput measured in the same run, and the median / p99 time of
  torch eager         Poco.forecast, the network as written
  onnx as written     the unfolded network exported (onnx_bytes(folded=False))
  onnx folded         what bundles ship: models/folded.py (the same function, ~2/3 of the work)
  onnx folded int8    the folded model with onnxruntime's dynamic int8 quantisation of its MatMuls
each against the floor = FLOPs of the *unfolded* model / GEMM throughput, at the same thread count.
The network has POCO's paper sizes (D = 128, MLP 1024, the `paper` preset), random weights with the FiLM
gate opened: speed does not depend on the values. Then, at one N, what each onnxruntime session
setting changes. Usage:

    python bench/inference.py [--units 128 1000 10000 70000] [--threads 1 2] [--seconds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from threadpoolctl import threadpool_limits

from poco_rt.models.config import ModelConfig, SessionLayout, SessionSpec
from poco_rt.models.export import onnx_bytes, quantized_onnx
from poco_rt.models.poco import Poco
from poco_rt.server.engine import session_options


@dataclasses.dataclass(frozen=True)
class Cost:
    per_unit_macs: int
    per_frame_macs: int  # the latents' blocks: the same whatever N

    def flops(self, units: int) -> float:
        return 2.0 * (self.per_unit_macs * units + self.per_frame_macs)


def model_cost(config: ModelConfig, *, folded: bool) -> Cost:
    """Multiply-adds from the layer shapes (LayerNorms, softmax and element-wise work left out)."""
    d, dh, latents, hidden = config.dim, config.head_dim, config.num_latents, config.mlp_hidden
    tokens = config.context_frames // config.token_frames
    ffn = d * 2 * config.ffn_hidden + config.ffn_hidden * d
    per_unit = tokens * config.token_frames * d + ffn + config.context_frames * hidden + d * hidden
    per_unit += hidden * config.horizon  # forecaster: tokenizer, decoder FFN, input, alpha, output
    if folded:
        per_unit += 2 * tokens * latents * d + 2 * latents * d + config.horizon * d
    else:
        per_unit += tokens * d * 2 * dh + 2 * tokens * latents * dh  # encoder keys and values, attention
        per_unit += 2 * d * dh + 2 * latents * dh + d * hidden  # decoder query, attention, output; beta
    inner = config.self_attention_heads * dh
    self_attention = d * 3 * inner + 2 * latents * inner + inner * d  # per latent
    encoder_query_and_output, decoder_keys_values = 2 * d * dh, d * 2 * dh  # per latent
    per_frame = latents * (encoder_query_and_output + decoder_keys_values + ffn)  # the encoder FFN
    per_frame += config.self_attention_layers * latents * (self_attention + ffn)
    return Cost(per_unit, per_frame)


def timed(calls: dict[str, Callable[[], object]], seconds: float, min_rounds: int = 5) -> dict[str, np.ndarray]:
    """Milliseconds of each call, interleaved: every round calls each once, so that a machine whose
    load changes during the run slows every variant alike. Two warm-up calls each, then rounds for
    about `seconds` per variant (at least min_rounds)."""
    for call in calls.values():
        call()
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    deadline = time.perf_counter() + seconds * len(calls)
    while min(map(len, times.values())) < min_rounds or time.perf_counter() < deadline:
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: np.array(values) for name, values in times.items()}


def gemm_gflops(threads: int, seconds: float) -> tuple[float, float]:
    """float32 GEMM throughput, best of the calls (the floor is what the machine can do): large squares
    and the model's skinny (N x 128)(128 x 1024) shape."""
    rng = np.random.default_rng(0)
    square = rng.standard_normal((2048, 2048), dtype=np.float32)
    skinny, wide = rng.standard_normal((4096, 128), dtype=np.float32), rng.standard_normal((128, 1024), np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        products = {"square": lambda: square @ square, "skinny": lambda: skinny @ wide}
        best = {name: float(times.min()) for name, times in timed(products, seconds).items()}
    return 2 * 2048**3 / (best["square"] * 1e-3) / 1e9, 2 * 4096 * 128 * 1024 / (best["skinny"] * 1e-3) / 1e9


def paper_model() -> Poco:
    torch.manual_seed(0)
    model = Poco(ModelConfig(), SessionLayout((SessionSpec("d", "s", 4),))).eval()
    for parameter in model.forecaster.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    return model


def torch_runner(model: Poco, context: np.ndarray, embeddings: np.ndarray) -> Callable[[], object]:
    torch_context, torch_embeddings = torch.from_numpy(context)[None], torch.from_numpy(embeddings)

    def run() -> object:
        with torch.no_grad():
            return model.forecast(torch_context, torch_embeddings)

    return run


def onnx_runner(path: Path, options: ort.SessionOptions, inputs: dict[str, np.ndarray]) -> Callable[[], object]:
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, inputs)


def stats(times: np.ndarray) -> tuple[float, float]:
    return float(np.median(times)), float(np.percentile(times, 99))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, nargs="+", default=[128, 1000, 10000, 70000], help="unit counts N")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per variant and N (at least 5 calls)")
    parser.add_argument("--settings-units", type=int, default=1000, help="N at which session settings are compared")
    args = parser.parse_args()

    model = paper_model()
    config = model.config
    unfolded_cost, folded_cost = model_cost(config, folded=False), model_cost(config, folded=True)
    workdir = Path(tempfile.mkdtemp(prefix="poco-rt-inference-"))
    paths = {"as written": workdir / "unfolded.onnx", "folded": workdir / "folded.onnx"}
    paths["as written"].write_bytes(onnx_bytes(model, folded=False))
    paths["folded"].write_bytes(onnx_bytes(model))
    paths["folded int8"] = workdir / "folded-int8.onnx"
    paths["folded int8"].write_bytes(quantized_onnx(paths["folded"].read_bytes()))
    print(
        f"POCO paper sizes: {unfolded_cost.per_unit_macs * 2 / 1e6:.3f} MFLOP per unit as written, "
        f"{folded_cost.per_unit_macs * 2 / 1e6:.3f} folded, + {unfolded_cost.per_frame_macs * 2 / 1e6:.1f} MFLOP "
        f"per frame for the latents; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    for threads in args.threads:
        peak, narrow = gemm_gflops(threads, args.seconds)
        print(f"\n{threads} thread(s): float32 GEMM {peak:.0f} GFLOP/s (2048^2), {narrow:.0f} GFLOP/s (4096x128x1024)")
        print(f"{'N':>6} {'variant':<18} {'median ms':>10} {'p99 ms':>8} {'floor ms':>9} {'x floor':>8} {'x torch':>8}")
        torch.set_num_threads(threads)
        options = session_options(threads=threads)
        for units in args.units:
            rng = np.random.default_rng(units)
            context = rng.standard_normal((units, config.context_frames), dtype=np.float32)
            embeddings = (0.3 * rng.standard_normal((units, config.dim))).astype(np.float32)
            inputs = {"context": context, "unit_embeddings": embeddings}
            floor_ms = unfolded_cost.flops(units) / (peak * 1e9) * 1e3
            budget = args.seconds if units < 50_000 else args.seconds / 2
            calls = {"torch eager": torch_runner(model, context, embeddings)}
            calls |= {f"onnx {name}": onnx_runner(path, options, inputs) for name, path in paths.items()}
            rows = timed(calls, budget, min_rounds=3)
            torch_median = float(np.median(rows["torch eager"]))
            for name, times in rows.items():
                median, p99 = stats(times)
                print(
                    f"{units:>6} {name:<18} {median:>10.2f} {p99:>8.2f} {floor_ms:>9.2f} "
                    f"{median / floor_ms:>7.2f}x {torch_median / median:>7.2f}x",
                    flush=True,
                )
    print_settings(paths["folded"], args.settings_units, config, args.seconds)
    return 0


def print_settings(path: Path, units: int, config: ModelConfig, seconds: float) -> None:
    """What each onnxruntime session setting changes for the folded model at one N (one thread, unless named)."""
    rng = np.random.default_rng(0)
    inputs = {
        "context": rng.standard_normal((units, config.context_frames), dtype=np.float32),
        "unit_embeddings": (0.3 * rng.standard_normal((units, config.dim))).astype(np.float32),
    }
    print(f"\nonnxruntime settings, folded model, N = {units}, 1 thread, interleaved (the server's are marked *):")
    variants: list[tuple[str, ort.SessionOptions]] = []
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        options = session_options(threads=1)
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        variants.append((f"graph optimisation {level}" + (" *" if level == "ORT_ENABLE_ALL" else ""), options))
    variants.append(("2 threads, spinning off (as the server's)", session_options(threads=2)))
    spinning = ort.SessionOptions()  # as the server's, but spinning (an entry cannot be set twice)
    spinning.intra_op_num_threads, spinning.inter_op_num_threads = 2, 1
    variants.append(("2 threads, spinning on (onnxruntime's default)", spinning))
    no_arena = session_options(threads=1)
    no_arena.enable_cpu_mem_arena = False
    variants.append(("memory arena off (server: on *)", no_arena))
    calls = {name: onnx_runner(path, options, inputs) for name, options in variants}
    session = ort.InferenceSession(str(path), session_options(threads=1), providers=["CPUExecutionProvider"])
    binding = session.io_binding()
    output = np.empty((units, config.horizon), dtype=np.float32)
    for name, value in inputs.items():
        binding.bind_cpu_input(name, value)
    binding.bind_output("forecast", "cpu", 0, np.float32, list(output.shape), output.ctypes.data)
    calls["IOBinding into a preallocated output"] = lambda: session.run_with_iobinding(binding)
    for name, times in timed(calls, seconds).items():
        median, p99 = stats(times)
        print(f"  {name:<44} median {median:7.2f} ms  p99 {p99:7.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
