"""Batching sessions that share a bundle: S calls of model.onnx against one call of model.batched.onnx.

For S sessions of N units each (POCO's paper sizes, random weights, as bench/inference.py), the
median and p99 of
  per session   S onnxruntime runs of the folded model, one per session (the server without batching)
  batched       one run of the batched model on the S sessions' units concatenated, with the mask
timed interleaved in the same run (every round calls each once), and their ratio. The inputs are
prepared once, as the server caches a batch's embeddings and mask while its sessions stay the same.
Also the multiply-adds per unit: the batched model's dense session mask adds 5 (S - 1) L D. Usage:

    python bench/batching.py [--sessions 1 2 4 8] [--units 128 1000] [--threads 1] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from inference import model_cost, paper_model, stats, timed

from poco_rt.models.export import batched_onnx_bytes, onnx_bytes
from poco_rt.server.engine import BATCH_MAX_UNITS, InferenceBatch, session_options


def tick_calls(
    folded: ort.InferenceSession,
    batched: ort.InferenceSession,
    contexts: list[np.ndarray],
    embeddings: list[np.ndarray],
) -> dict[str, Callable[[], object]]:
    """One frame tick's forecasts both ways; the batch's inputs prepared once, as the server caches them."""
    batch = InferenceBatch.of(embeddings, context_frames=contexts[0].shape[1])
    np.concatenate(contexts, out=batch.context)
    inputs = {"context": batch.context, "unit_embeddings": batch.unit_embeddings, "session_mask": batch.session_mask}
    singles = [{"context": c, "unit_embeddings": e} for c, e in zip(contexts, embeddings, strict=True)]
    return {
        "per session": lambda: [folded.run(None, feed) for feed in singles],
        "batched": lambda: batched.run(None, inputs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8], help="session counts S")
    parser.add_argument("--units", type=int, nargs="+", default=[128, 1000], help="units N per session")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="onnxruntime threads (server: 1)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per variant and size (at least 5 rounds)")
    args = parser.parse_args()

    model = paper_model()
    config = model.config
    workdir = Path(tempfile.mkdtemp(prefix="poco-rt-batching-"))
    folded_path, batched_path = workdir / "model.onnx", workdir / "model.batched.onnx"
    folded_path.write_bytes(onnx_bytes(model))
    batched_path.write_bytes(batched_onnx_bytes(model))
    per_unit = model_cost(config, folded=True).per_unit_macs
    extra = 5 * config.num_latents * config.dim  # per unit and extra session: encoder pooling 3 L D, decoder 2 L D
    print(
        f"POCO paper sizes, folded: {per_unit / 1e3:.0f} k multiply-adds per unit alone; batched "
        + ", ".join(
            f"S = {s}: +{extra * (s - 1) / 1e3:.1f} k ({extra * (s - 1) / per_unit:.1%})" for s in args.sessions
        )
        + f"; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; the server batches up to "
        f"{BATCH_MAX_UNITS} units"
    )
    for threads in args.threads:
        options = session_options(threads=threads)
        folded = ort.InferenceSession(str(folded_path), options, providers=["CPUExecutionProvider"])
        batched = ort.InferenceSession(str(batched_path), options, providers=["CPUExecutionProvider"])
        print(f"\n{threads} thread(s); times in ms per frame tick (all S sessions' forecasts)")
        print(
            f"{'N':>5} {'S':>3} {'per session med':>16} {'p99':>7} {'batched med':>12} {'p99':>7} {'batched/per':>12}"
        )
        for units in args.units:
            for sessions in args.sessions:
                rng = np.random.default_rng(units * 100 + sessions)
                contexts = [
                    rng.standard_normal((units, config.context_frames), dtype=np.float32) for _ in range(sessions)
                ]
                embeddings = [
                    (0.3 * rng.standard_normal((units, config.dim))).astype(np.float32) for _ in range(sessions)
                ]
                calls = tick_calls(folded, batched, contexts, embeddings)
                rows = timed(calls, args.seconds)
                (per_median, per_p99), (batched_median, batched_p99) = (
                    stats(rows["per session"]),
                    stats(rows["batched"]),
                )
                print(
                    f"{units:>5} {sessions:>3} {per_median:>16.2f} {per_p99:>7.2f} {batched_median:>12.2f} "
                    f"{batched_p99:>7.2f} {batched_median / per_median:>11.2f}x",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
