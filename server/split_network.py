"""The network on several threads by units: encode once over all of them, decode chunks of them in parallel.

POCO's forecast is a small population part (the encoder pools every unit's tokens into 8 latents)
and a large per-unit part (each unit attends to those latents, then its decoder FFN and FiLM MLP):
nearly all of the multiply-adds, independent across units once the latents are known. A bundle
exported with model.encode.onnx and model.decode.onnx (core/bundle.py) has the two parts as
graphs of their own, so a forecast here is one encode call over all N units, then decode calls on
chunks of at most CHUNK_UNITS units, split between the calling thread and helper threads, each an
onnxruntime call on one thread; the results equal model.onnx's to float rounding
(tests/server/test_split_network.py).

Why not onnxruntime's own intra-op threads: at a frame rate, at N = 1000, they were measured
slower and with a longer tail than this split, and equal to it at N = 2000 (bench/README.md, two
threads per forecast). Here the threads meet once per forecast rather than inside every parallel
node of the graph. The helpers keep to the cores given (the server: every core but the ingest
thread's): unpinned, the scheduler woke the helper on the caller's own core, where it waited for
the caller instead of running beside it, and the split ran at one thread's speed.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
from collections.abc import Collection

import numpy as np
import onnxruntime as ort

# Rows per decode call: (512, 1024) float32 intermediates are 2 MiB, about a core's L2; smaller chunks
# pay a call's fixed cost (about 0.45 ms at POCO's paper sizes) more often. Measured at those sizes,
# 2 cores at 30 Hz: 256 and 512 rows gave the same median, 512 the shorter tail.
CHUNK_UNITS = 512
# From this many units the split pays on 2 cores (bench/engine_threads.py --call-costs: 4.1 against
# 4.3-4.4 ms at 128 units, 5.5 against 6.4 at 256); below, the second call and the hand-off cost more
# than the work they share.
MIN_SPLIT_UNITS = 128


def keep_to_cores(cores: Collection[int]) -> None:
    """Keep the calling thread to `cores` (Linux affinity is per thread); nothing where that is unsupported."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))


class SplitNetwork:
    """forecast(context (N, C), unit_embeddings (N, D)) -> (N, P) normalised, as model.onnx computes it.

    Safe to call from several threads at once, as onnxruntime's `run` is: each call has its own
    output, and a call's chunks queue behind another's on the helpers."""

    def __init__(
        self,
        *,
        whole: ort.InferenceSession,
        encode: ort.InferenceSession,
        decode: ort.InferenceSession,
        horizon: int,
        threads: int,
        helper_cores: Collection[int] = (),
    ) -> None:
        if threads < 2:
            raise ValueError(f"a split network runs on at least 2 threads, not {threads}")
        self._whole, self._encode, self._decode = whole, encode, decode
        self._horizon = horizon
        self._parts = threads
        self._helpers = concurrent.futures.ThreadPoolExecutor(
            threads - 1, thread_name_prefix="poco-rt-decode", initializer=keep_to_cores, initargs=(tuple(helper_cores),)
        )

    def forecast(self, context: np.ndarray, unit_embeddings: np.ndarray) -> np.ndarray:
        units = len(context)
        if units < MIN_SPLIT_UNITS:
            return self._whole.run(None, {"context": context, "unit_embeddings": unit_embeddings})[0]
        query_maps, latent_values = self._encode.run(None, {"context": context, "unit_embeddings": unit_embeddings})
        forecast = np.empty((units, self._horizon), dtype=np.float32)
        bounds = np.linspace(0, units, self._parts + 1).astype(int).tolist()
        parts = list(itertools.pairwise(bounds))

        def decode(part: tuple[int, int]) -> None:
            for first in range(part[0], part[1], CHUNK_UNITS):
                rows = slice(first, min(first + CHUNK_UNITS, part[1]))
                inputs = {
                    "context": context[rows],
                    "unit_embeddings": unit_embeddings[rows],
                    "query_maps": query_maps,
                    "latent_values": latent_values,
                }
                forecast[rows] = self._decode.run(None, inputs)[0]

        helpers = [self._helpers.submit(decode, part) for part in parts[1:]]
        decode(parts[0])
        for helper in helpers:
            helper.result()
        return forecast

    def close(self) -> None:
        """Let the helper threads end once their queued chunks are done."""
        self._helpers.shutdown(wait=False)
