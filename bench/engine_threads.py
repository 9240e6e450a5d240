"""A forecast on one thread, on two split by units, and on two of onnxruntime's: a real server at a frame rate.

For each N and each round, every variant is measured once, in turn, by bench/latency.py's own
measurement (a `poco-rt serve` process, frames paced over ZeroMQ, forecasts timed at a SUB socket;
the network alone timed beforehand, paced, as the server runs it), so that a machine whose load
changes slows every variant alike. Variants:

    1 thread     --engine-threads 1
    2 split      --engine-threads 2 on the bundle as exported (model.encode.onnx + model.decode.onnx:
                 chunks of units on the ingest thread and a helper on the other cores)
    2 onnxrt     --engine-threads 2 on a copy of the bundle without the split graphs (onnxruntime's
                 intra-op threads, as every bundle ran before the split existed)
    [int8 variants with --int8: the same on model.int8.onnx, which is never split]

Printed per variant: the medians over rounds of each round's p50 and p99 (end to end, and the
network alone), and how many forecasts came. A unit count "fits" a frame interval where the end to
end p99 stays under it. Usage:

    python bench/engine_threads.py --bundle DIR [--units 1000 3000] [--rounds 3] [--seconds 20] [--json FILE]
    python bench/engine_threads.py --bundle DIR --call-costs [--units 128 256]   # the network alone, in process

`--call-costs` times the network alone in this process instead, paced at the frame rate, one
thread against two split by units (the calling thread kept to the ingest thread's cores, the
helper to the others, as in the server), interleaved call by call: where the split starts to pay.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from latency import inference_ms, measure
from live_server import Server, bench_bundle

from poco_rt.bundle import DECODE_MODEL_FILE, ENCODE_MODEL_FILE, load_bundle, rewrite_manifest
from poco_rt.server.engine import Engine
from poco_rt.server.settings import ServerSettings
from poco_rt.server.split_network import keep_to_cores


def without_split_graphs(bundle_path: Path, out: Path) -> Path:
    """A copy of the bundle without model.encode.onnx and model.decode.onnx: one graph, as before the split."""
    copy = Path(shutil.copytree(bundle_path, out))
    for name in (ENCODE_MODEL_FILE, DECODE_MODEL_FILE):
        (copy / name).unlink()
    rewrite_manifest(copy, load_bundle(bundle_path).manifest)
    return copy


def print_call_costs(bundle_path: Path, units: list[int], *, calls: int, frame_rate_hz: float) -> None:
    """Median and p99 of one forecast of the network alone: one thread, and two split by units."""
    bundle, settings = load_bundle(bundle_path), ServerSettings()
    engines = {"1 thread": Engine(bundle), "2 split": Engine(bundle, threads=2, helper_cores=settings.io_cores())}
    keep_to_cores(settings.realtime_cores())
    rng = np.random.default_rng(0)
    for count in units:
        context = rng.standard_normal((count, bundle.context_frames), dtype=np.float32)
        embeddings = (0.3 * rng.standard_normal((count, bundle.embedding_dim))).astype(np.float32)
        times: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(calls):
            for name, engine in engines.items():
                time.sleep(1.0 / frame_rate_hz)
                started = time.perf_counter()
                engine.forecast_normalised(context, embeddings)
                times[name].append((time.perf_counter() - started) * 1e3)
        print(f"N = {count:>6}  " + "   ".join(
            f"{name} {np.median(t):6.2f} / {np.percentile(t, 99):6.2f}" for name, t in times.items()
        ), flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle exported with the split graphs")
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 3000], help="unit counts N")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each measures every variant once")
    parser.add_argument("--seconds", type=float, default=20.0, help="streaming time per variant and round")
    parser.add_argument("--frame-rate-hz", type=float, default=30.0, help="publishing rate")
    parser.add_argument("--int8", action="store_true", help="also the int8 network on 1 and 2 onnxruntime threads")
    parser.add_argument("--json", type=Path, default=None, help="also write every round's timings here")
    parser.add_argument("--call-costs", action="store_true", help="the network alone in this process, no server")
    args = parser.parse_args()
    if not load_bundle(args.bundle).split:
        parser.error(f"{args.bundle} has no {ENCODE_MODEL_FILE} and {DECODE_MODEL_FILE}: export it with this version")
    if args.call_costs:
        print(f"the network alone, {args.frame_rate_hz:g} Hz, median / p99 ms")
        print_call_costs(args.bundle, args.units, calls=int(args.seconds * args.frame_rate_hz / 2),
                         frame_rate_hz=args.frame_rate_hz)  # fmt: skip
        return 0
    results: dict[str, dict[str, list]] = {}
    interval_ms = 1000 / args.frame_rate_hz
    print(f"{args.frame_rate_hz:g} Hz ({interval_ms:.1f} ms), {args.seconds:g} s per variant and round; "
          "medians over rounds of each round's p50 / p99, ms")  # fmt: skip
    for units in args.units:
        workdir = Path(tempfile.mkdtemp(prefix=f"poco-rt-threads-{units}-"))
        try:
            split = bench_bundle(args.bundle, workdir / "split", units)
            unsplit = without_split_graphs(split, workdir / "unsplit")
            variants = {"1 thread": (split, 1, False), "2 split": (split, 2, False), "2 onnxrt": (unsplit, 2, False)}
            if args.int8:
                variants |= {"int8 1 thread": (split, 1, True), "int8 2 onnxrt": (split, 2, True)}
            rounds: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in variants}
            for round_index in range(args.rounds):
                for name, (bundle, threads, int8) in variants.items():
                    repeats = max(10, int(args.seconds * args.frame_rate_hz / 4))
                    inference = inference_ms(bundle, units, repeats, args.frame_rate_hz, int8=int8, threads=threads)
                    flags = ["--engine-threads", str(threads), *(["--engine-int8"] * int8)]
                    server = Server(bundle, workdir / f"data-{round_index}-{threads}-{int8}", engine_flags=flags)
                    try:
                        timings = measure(server, units, seconds=args.seconds, frame_rate_hz=args.frame_rate_hz)
                    finally:
                        server.stop()
                    rounds[name].append({"inference_ms": inference, **timings})
            for name, measured in rounds.items():
                e2e = [round_["end_to_end_ms"] for round_ in measured]
                inference = [round_["inference_ms"] for round_ in measured]
                e2e_50, e2e_99 = (float(np.median([np.percentile(t, q) for t in e2e])) for q in (50, 99))
                net_50, net_99 = (float(np.median([np.percentile(t, q) for t in inference])) for q in (50, 99))
                came = sum(len(t) for t in e2e)
                expected = sum(int(round_["expected"]) for round_ in measured)
                fits = "fits" if e2e_99 < interval_ms else "does not fit"
                print(f"N = {units:>6}  {name:<14} e2e {e2e_50:6.2f} / {e2e_99:6.2f}   network {net_50:6.2f} / "
                      f"{net_99:6.2f}   {came}/{expected} forecasts   {fits}", flush=True)  # fmt: skip
                results[f"{units} {name}"] = {
                    key: [round_[key].tolist() for round_ in measured] for key in ("inference_ms", "end_to_end_ms")
                }
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
