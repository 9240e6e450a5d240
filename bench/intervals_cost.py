"""What live accuracy and calibrated intervals cost the ingest thread per frame, beside what it already does.

    python bench/intervals_cost.py [--units 1000 10000] [--frames 2000]

Per frame the ingest thread, with live accuracy on, keeps a copy of the frame (`stage`, O(N)),
records the new forecast with its bounds (`record`: the bounds are 2 L N P floats), both on the
frame path, and once the forecast is out scores the forecasts the frame completes
(`score_staged`: O(L P N)), which delays the next frame only if it is already waiting. All three
are timed here on one stream of N units with P = 16 and the default levels (80 %, 95 %), after a
warm-up of 100 frames, against two baselines measured in the same run at the same N: the frame's
way into the context (`ContextRing.stage` + `push_staged`, what every frame costs without it) and
one inference of the embedded bundle's network (what every forecast costs). Frames are a random
walk, forecasts copy-last plus noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from live_server import SESSION, bench_bundle

from poco_rt.bundle import load_bundle
from poco_rt.resources import default_bundle_path
from poco_rt.server.engine import Engine
from poco_rt.server.live_accuracy import AccuracyConfig, LiveAccuracy
from poco_rt.server.ring import ContextRing

WARM_UP_FRAMES = 100
HORIZON = 16
CONTEXT_FRAMES = 48


def time_accuracy(units: int, frames: int) -> dict[str, np.ndarray]:
    """Seconds per frame of stage + record (the frame path) and of score_staged (after), after the warm-up."""
    rng = np.random.default_rng(0)
    accuracy = LiveAccuracy(std=np.ones(units, np.float32), horizon=HORIZON, config=AccuracyConfig())
    value = np.zeros(units, np.float32)
    seconds: dict[str, list[float]] = {"path": [], "score": []}
    for index in range(WARM_UP_FRAMES + frames):
        value += rng.standard_normal(units).astype(np.float32)
        forecast = (value[:, None] + rng.standard_normal((units, HORIZON))).astype(np.float32)
        started = time.perf_counter()
        accuracy.stage(index, value)
        accuracy.record(index, forecast)
        recorded = time.perf_counter()
        accuracy.score_staged()
        scored = time.perf_counter()
        if index >= WARM_UP_FRAMES:
            seconds["path"].append(recorded - started)
            seconds["score"].append(scored - recorded)
    return {key: np.array(values) for key, values in seconds.items()}


def time_ring(units: int, frames: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    ring = ContextRing(context_frames=CONTEXT_FRAMES, num_units=units)
    mean, std = np.zeros(units, np.float32), np.ones(units, np.float32)
    raw = rng.standard_normal((64, units)).astype(np.float32)
    seconds = []
    for index in range(WARM_UP_FRAMES + frames):
        started = time.perf_counter()
        ring.stage(raw[index % 64], mean, std)
        ring.push_staged()
        if index >= WARM_UP_FRAMES:
            seconds.append(time.perf_counter() - started)
    return np.array(seconds)


def time_inference(units: int, repeats: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="poco-rt-intervals-cost-") as workdir:
        bundle = load_bundle(bench_bundle(default_bundle_path(), Path(workdir) / "bundle", units))
        engine = Engine(bundle, threads=1)
        embeddings = bundle.session(SESSION).unit_embeddings
        context = np.random.default_rng(2).standard_normal((units, bundle.context_frames)).astype(np.float32)
        engine.warm_up(embeddings)
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            engine.forecast_normalised(context, embeddings)
            seconds.append(time.perf_counter() - started)
    return np.array(seconds)


def ms(seconds: np.ndarray, q: float) -> float:
    return float(np.percentile(seconds, q) * 1e3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000], help="unit counts N")
    parser.add_argument("--frames", type=int, default=2000, help="timed frames per N")
    parser.add_argument("--inference-repeats", type=int, default=50, help="timed network runs per N")
    args = parser.parse_args()
    print(f"P = {HORIZON}, levels 0.8 and 0.95, {args.frames} frames per N after {WARM_UP_FRAMES}; times in ms")
    print(
        f"{'N':>6}   {'frame path p50':>14} {'p99':>6}   {'score after p50':>15} {'p99':>6}   "
        f"{'ring p50':>8} {'p99':>6}   {'infer p50':>9} {'p99':>6}   {'path/infer p50':>14} {'all/infer':>9}"
    )
    for units in args.units:
        accuracy = time_accuracy(units, args.frames)
        path, score = accuracy["path"], accuracy["score"]
        ring = time_ring(units, args.frames)
        inference = time_inference(units, args.inference_repeats)
        print(
            f"{units:>6}   {ms(path, 50):>14.3f} {ms(path, 99):>6.3f}   {ms(score, 50):>15.3f} {ms(score, 99):>6.3f}   "
            f"{ms(ring, 50):>8.3f} {ms(ring, 99):>6.3f}   {ms(inference, 50):>9.2f} {ms(inference, 99):>6.2f}   "
            f"{ms(path, 50) / ms(inference, 50):>13.1%} {ms(path + score, 50) / ms(inference, 50):>9.1%}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
