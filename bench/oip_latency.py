"""Open Inference Protocol round trips: gRPC against REST, on one real `poco-rt serve`, with Triton's clients.

For each unit count N, one inference request of the raw network (context (N, C), embeddings (N, D),
forecast (N, P)) is sent over each transport in turn, round-robin, so that the machine's noise falls
on all of them alike; the order rotates every round. Transports: REST with binary tensors
(tritonclient.http's default: raw bytes after the JSON), gRPC (tritonclient.grpc; raw bytes in
protobuf) and, with `--with-json`, REST with JSON tensors (slow for large N: every value is text,
parsed in Python). The baseline is REST with binary tensors; ratios are of the same percentile.
Round trip = the client's call, from building the request to the numpy result. Warm-up calls
are not counted. The server runs as its own process (bench/live_server.py).
Usage: python bench/oip_latency.py [--bundle DIR] [--units 128 1000] [--calls 1000] [--with-json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from live_server import SESSION, Server, bench_bundle

from poco_rt.bundle import load_bundle
from poco_rt.resources import default_bundle_path

WARM_UP_CALLS = 50
BASELINE = "REST binary"


def http_call(client: triton_http.InferenceServerClient, arrays: dict[str, np.ndarray], *, binary: bool) -> Callable:
    def call() -> np.ndarray:
        inputs = []
        for name, values in arrays.items():
            inputs.append(triton_http.InferInput(name, list(values.shape), "FP32"))
            inputs[-1].set_data_from_numpy(values, binary_data=binary)
        outputs = [triton_http.InferRequestedOutput("forecast", binary_data=binary)]
        return client.infer("poco", inputs, outputs=outputs).as_numpy("forecast")

    return call


def grpc_call(client: triton_grpc.InferenceServerClient, arrays: dict[str, np.ndarray]) -> Callable:
    def call() -> np.ndarray:
        inputs = []
        for name, values in arrays.items():
            inputs.append(triton_grpc.InferInput(name, list(values.shape), "FP32"))
            inputs[-1].set_data_from_numpy(values)
        return client.infer("poco", inputs).as_numpy("forecast")

    return call


def interleaved_ms(calls: dict[str, Callable], rounds: int) -> dict[str, np.ndarray]:
    """Each call once per round, the order rotated every round; milliseconds per call, warm-up left out."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(WARM_UP_CALLS + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            calls[name]()
            if round_index >= WARM_UP_CALLS:
                times[name].append((time.perf_counter() - started) * 1e3)
    return {name: np.array(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the embedded one)")
    parser.add_argument("--units", type=int, nargs="+", default=[128, 1000], help="unit counts N")
    parser.add_argument("--calls", type=int, default=1000, help="measured calls per transport and N")
    parser.add_argument("--with-json", action="store_true", help="also time REST with JSON tensors")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    args = parser.parse_args()
    source = args.bundle or default_bundle_path()
    workdir = Path(tempfile.mkdtemp(prefix="poco-rt-oip-"))
    results = {}
    try:
        bundle_path = bench_bundle(source, workdir / "bundle", max(args.units))
        bundle = load_bundle(bundle_path)
        embeddings = bundle.session(SESSION).unit_embeddings
        server = Server(bundle_path, workdir / "data", engine_flags=["--grpc-port", "0"], sessions=())  # flags as given
        try:
            rest = triton_http.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30.0)
            grpc = triton_grpc.InferenceServerClient(server.info["grpc_endpoint"])
            print(f"bundle {bundle.version}, {args.calls} calls per transport and N, interleaved; times in ms")
            print(f"{'N':>6}  {'transport':<12} {'p50':>7} {'p99':>7}   {'p50 / ' + BASELINE:>19} {'p99 / same':>10}")
            for units in args.units:
                rng = np.random.default_rng(units)
                arrays = {
                    "context": rng.standard_normal((units, bundle.context_frames)).astype(np.float32),
                    "unit_embeddings": np.ascontiguousarray(embeddings[:units]),
                }
                calls = {BASELINE: http_call(rest, arrays, binary=True), "gRPC": grpc_call(grpc, arrays)}
                if args.with_json:
                    calls["REST JSON"] = http_call(rest, arrays, binary=False)
                answers = [call() for call in calls.values()]
                if any(not np.array_equal(answer, answers[0]) for answer in answers):
                    raise RuntimeError(f"the transports' forecasts differ at N = {units}")
                timings = interleaved_ms(calls, args.calls)
                base_50, base_99 = np.percentile(timings[BASELINE], [50, 99])
                for name, values in timings.items():
                    p50, p99 = np.percentile(values, [50, 99])
                    ratios = f"{p50 / base_50:>18.2f}x {p99 / base_99:>9.2f}x"
                    print(f"{units:>6}  {name:<12} {p50:>7.2f} {p99:>7.2f}   {ratios}")
                results[units] = {name: values.tolist() for name, values in timings.items()}
            rest.close()
            grpc.close()
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
