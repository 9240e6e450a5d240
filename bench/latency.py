"""End-to-end forecast latency of a real `poco-rt serve`, beside the model's own inference time.

For each unit count N, a synthetic session of N units is added to a copy of the bundle (the
network is session-agnostic: embeddings are the bundle's own, resampled with a little noise), a
server is started as a separate process (as on a rig; recording on, as in production), and
frames are published at the frame rate over ZeroMQ PUSH while a ZeroMQ SUB takes the forecasts.

    end-to-end  = subscriber's receive - publisher's send (one clock: both run here)
    server      = forecast header's sent_ns - received_ns (inside the server)
    inference   = Engine.forecast_normalised alone, at the same N, paced at the frame rate, measured here beforehand
    overhead    = end-to-end - inference, at the same percentile

The first C frames (no forecast yet) and the first second of forecasts are a warm-up and not
counted. With `--pinning-jobs K`, every N is measured twice in the same run: idle, then while K
PINning jobs (N = 500, Rajan, Harvey & Tank 2016's setting, as many runs as outlast the measurement) train in
the server's job workers; the last column is then the p99 ratio against the idle figure. With
`--dashboard`, likewise, while the dashboard (`/`) shows the session in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright): its plots, score, latency histograms and jobs polling.
With `--compare-intervals R`, every N is measured on two servers side by side, live accuracy and
intervals on (the default) and off (`--no-live-accuracy`), in R alternating rounds of
seconds / R each (on, off, off, on, ...), so that both see the same machine; the last columns are
the p99 ratio of on against off, and the ratio of the medians of each side's per-round p99 (a
burst of stalls from outside the server lands in a few rounds of one side and moves the pooled p99
of that side alone; the median over rounds is robust to it).
With `--wire-floor R`, every N is measured on the server and on bench/wire_echo.py (the same two
ZeroMQ hops, with a process that answers each frame at once) in R alternating rounds; the server's
own cost is then what its end to end adds to the echo's beyond the network:

    own = server's end-to-end - echo's end-to-end - inference, at the median

(a difference of medians: the p99s of three separate measurements do not subtract). The rows
also give the time inside each (received to sent) and the server's work from the network's
return to the send, both from the forecast's own header, so per forecast and on one clock.

Usage: python bench/latency.py [--bundle DIR] [--units 128 1000 10000] [--seconds 60] [--pinning-jobs 2] [--dashboard]
       python bench/latency.py --units 1000 10000 --seconds 120 --compare-intervals 6
       python bench/latency.py --units 128 1000 --seconds 120 --wire-floor 6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zmq
from live_server import SESSION, Server, bench_bundle
from wire_echo import WireEcho

from poco_rt.bundle import load_bundle
from poco_rt.resources import default_bundle_path
from poco_rt.server.engine import Engine
from poco_rt.server.settings import ServerSettings
from poco_rt.server.split_network import keep_to_cores
from poco_rt.wire import decode_forecast, encode_frame, forecast_topic

WARM_UP_S = 1.0
CHROMIUM = "/usr/bin/chromium"
# As tests/server/test_dashboard_browser.py starts it: off the network (no updates, sync, QUIC, background
# fetches), as root.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def inference_ms(
    bundle_path: Path, units: int, repeats: int, frame_rate_hz: float, *, int8: bool, threads: int
) -> np.ndarray:
    """The model alone: one onnxruntime run per frame interval, after a warm-up, as the server's engine runs it.

    Paced, not back to back: between two frames the caches cool and the thread sleeps, as in the server,
    so that the difference to the end-to-end time is the server's and the network's, not the cache's.
    The calling thread keeps to the ingest thread's cores and a split engine's helpers to the others,
    as in the server.
    """
    bundle = load_bundle(bundle_path)
    settings = ServerSettings()
    engine = Engine(bundle, int8=int8, threads=threads, helper_cores=settings.io_cores())
    calibration = bundle.session(SESSION)
    context = np.random.default_rng(1).standard_normal((units, bundle.context_frames)).astype(np.float32)
    own_cores = os.sched_getaffinity(0)
    keep_to_cores(settings.realtime_cores())
    try:
        for _ in range(5):
            engine.forecast_normalised(context, calibration.unit_embeddings)
        times = []
        schedule = time.perf_counter()
        for _ in range(repeats):
            schedule += 1.0 / frame_rate_hz
            started = time.perf_counter()
            engine.forecast_normalised(context, calibration.unit_embeddings)
            times.append((time.perf_counter() - started) * 1e3)
            time.sleep(max(0.0, schedule - time.perf_counter()))
    finally:
        keep_to_cores(own_cores)  # the publisher and subscriber that follow run where the server's ingest does not
    return np.array(times)


def bundle_and_inference(
    source: Path, workdir: Path, units: int, args: argparse.Namespace, *, int8: bool = False, threads: int = 1
) -> tuple[Path, np.ndarray]:
    """The bench bundle of `units` units under `workdir`, and the network's time alone at that N (a sixth of
    the measured streaming time's frames, paced at its rate)."""
    bundle = bench_bundle(source, workdir / "bundle", units)
    repeats = max(10, int(args.seconds * args.frame_rate_hz / 6))
    return bundle, inference_ms(bundle, units, repeats, args.frame_rate_hz, int8=int8, threads=threads)


@contextlib.contextmanager
def dashboard_open(url: str, cpus: list[int]) -> Iterator:
    """The dashboard showing session `bench` in headless Chromium on `cpus`, its plots live, until the block ends.

    The browser is a client: on a rig it runs on the operator's machine, or on the server's beside
    the jobs, off the core the ingest thread keeps to. Its own CPU time (about a tenth of a core
    here) is not the page's cost to the ingest path, so by default it gets the job cores.
    """
    from playwright.sync_api import sync_playwright

    own_cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # this thread only; Playwright's driver, and the browser it starts, inherit it
    try:
        playwright = sync_playwright().start()
    finally:
        os.sched_setaffinity(0, own_cpus)
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1250})
        page.goto(f"{url}/#session={SESSION}")
        page.wait_for_selector("#live:not([hidden]) #plots .plot", timeout=30_000)
        yield page
    finally:
        playwright.stop()


def measure(server: Server, units: int, *, seconds: float, frame_rate_hz: float) -> dict[str, np.ndarray]:
    """Publish paced frames for `seconds` (plus warm-up) and time every forecast that comes back."""
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    sub = context.socket(zmq.SUB)
    for socket in (push, sub):
        socket.setsockopt(zmq.LINGER, 0)
    push.connect(server.info["frame_endpoint"])
    sub.setsockopt(zmq.SUBSCRIBE, forecast_topic(SESSION))
    sub.connect(server.info["forecast_endpoint"])
    time.sleep(0.5)  # PUB/SUB slow joiner
    context_frames = server.info["context_frames"]
    total = context_frames + int((WARM_UP_S + seconds) * frame_rate_hz)
    frames = np.random.default_rng(2).standard_normal((64, units)).astype(np.float32)
    counted_from = context_frames + int(WARM_UP_S * frame_rate_hz)

    def publish() -> None:
        started = time.perf_counter()
        for index in range(total):
            time.sleep(max(0.0, started + index / frame_rate_hz - time.perf_counter()))
            message = encode_frame(
                frames[index % len(frames)], session=SESSION, frame_index=index, acquisition_time_ns=time.time_ns()
            )
            push.send_multipart(message.parts, copy=message.copy)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    end_to_end, in_server, after_network = [], [], []
    last_index = -1
    # The first forecast comes only after C frames (16 s at 3 Hz); later ones within a frame interval or so.
    timeout_ms = int(1000 * (context_frames / frame_rate_hz + 5))
    while last_index < total - 1 and sub.poll(timeout_ms):
        timeout_ms = int(1000 * (2 / frame_rate_hz + 5))
        forecast = decode_forecast(sub.recv_multipart())
        received_ns = time.time_ns()
        header = forecast.header
        last_index = header.frame_index
        if header.frame_index >= counted_from:
            end_to_end.append((received_ns - header.acquisition_time_ns) * 1e-6)
            in_server.append((header.sent_ns - header.received_ns) * 1e-6)
            after_network.append((header.sent_ns - header.inferred_ns) * 1e-6)
    publisher.join(10)
    context.destroy(linger=0)
    expected = total - counted_from
    return {
        "end_to_end_ms": np.array(end_to_end),
        "server_ms": np.array(in_server),
        "after_network_ms": np.array(after_network),  # the server's work from the network's return to the send
        "expected": np.array(expected),
    }


COLUMNS = (
    f"{'N':>6} {'forecasts':>11}   {'e2e p50':>8} {'p99':>7} {'max':>7}   {'infer p50':>9} {'p99':>7}   "
    f"{'overhead p50':>12} {'p99':>7}   {'server p50':>10} {'p99':>7}   {'e2e/infer':>9}"
)


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


def row(units: int, timings: dict[str, np.ndarray], inference: np.ndarray) -> str:
    """One line of COLUMNS: end-to-end, inference alone, their difference, time inside the server."""
    e2e, server = timings["end_to_end_ms"], timings["server_ms"]
    e2e_50, e2e_99, infer_50, infer_99 = (percentile(e2e, 50), percentile(e2e, 99), percentile(inference, 50),
                                          percentile(inference, 99))  # fmt: skip
    counted = f"{len(e2e)}/{int(timings['expected'])}"
    return (
        f"{units:>6} {counted:>11}   {e2e_50:>8.2f} {e2e_99:>7.2f} {e2e.max():>7.2f}   "
        f"{infer_50:>9.2f} {infer_99:>7.2f}   {e2e_50 - infer_50:>12.2f} {e2e_99 - infer_99:>7.2f}   "
        f"{percentile(server, 50):>10.2f} {percentile(server, 99):>7.2f}   {e2e_50 / infer_50:>8.2f}x"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the embedded one)")
    parser.add_argument("--units", type=int, nargs="+", default=[128, 1000, 10000], help="unit counts N")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured streaming time per N")
    parser.add_argument("--frame-rate-hz", type=float, default=30.0, help="publishing rate")
    parser.add_argument("--engine-threads", type=int, default=1, help="the server's threads per forecast")
    parser.add_argument("--engine-int8", action="store_true", help="serve the bundle's model.int8.onnx")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw timings here")
    parser.add_argument(
        "--pinning-jobs", type=int, default=0, help="also measure each N while this many PINning jobs run (0: none)"
    )
    parser.add_argument(
        "--dashboard", action="store_true", help="also measure each N with the dashboard open in headless Chromium"
    )
    parser.add_argument(
        "--browser-cpus", type=int, nargs="+", default=None,
        help="cores the --dashboard browser runs on (default: the server's job cores, every core but the first)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-intervals", type=int, default=0, metavar="ROUNDS",
        help="measure each N with live accuracy on and off, in this many alternating rounds (0: no comparison)",
    )  # fmt: skip
    parser.add_argument(
        "--wire-floor", type=int, default=0, metavar="ROUNDS",
        help="measure each N on the server and on a wire echo, in this many alternating rounds (0: server only)",
    )  # fmt: skip
    args = parser.parse_args()
    source = args.bundle or default_bundle_path()
    if args.compare_intervals:
        return compare_intervals(source, args)
    if args.wire_floor:
        return wire_floor(source, args)
    if not (source / "bundle.json").exists():
        parser.error(f"no bundle at {source}; pass --bundle DIR (make default-bundle builds the embedded one)")
    print(f"bundle {load_bundle(source).version}, {args.frame_rate_hz:g} Hz, {args.seconds:g} s per N; times in ms")
    beside = bool(args.pinning_jobs or args.dashboard)  # a second measurement, and the ratio of its p99 to idle
    print(COLUMNS + (f"   {'beside':>7}  p99 / idle" if beside else ""))
    results = {}
    for units in args.units:
        workdir = Path(tempfile.mkdtemp(prefix=f"poco-rt-latency-{units}-"))
        try:
            bundle, inference = bundle_and_inference(
                source, workdir, units, args, int8=args.engine_int8, threads=args.engine_threads
            )
            engine_flags = ["--engine-threads", str(args.engine_threads), *(["--engine-int8"] * args.engine_int8)]
            server = Server(bundle, workdir / "data", job_workers=max(1, args.pinning_jobs), engine_flags=engine_flags)
            try:
                timings = measure(server, units, seconds=args.seconds, frame_rate_hz=args.frame_rate_hz)
                loaded = with_page = None
                if args.pinning_jobs:
                    jobs = server.start_pinning_jobs(args.pinning_jobs, seconds=args.seconds)
                    server.reopen_session()
                    loaded = measure(server, units, seconds=args.seconds, frame_rate_hz=args.frame_rate_hz)
                    still_running = sum(server.job(i)["state"] == "running" for i in jobs)
                if args.dashboard:
                    server.reopen_session()
                    with dashboard_open(server.url, args.browser_cpus or ServerSettings().job_cores()) as page:
                        with_page = measure(server, units, seconds=args.seconds, frame_rate_hz=args.frame_rate_hz)
                        drawn = page.get_attribute("#plots .plot", "data-last-frame")
            finally:
                server.stop()
            print(row(units, timings, inference) + (f"   {'nothing':>7}" if beside else ""), flush=True)
            results[units] = {"inference_ms": inference.tolist(), **{k: v.tolist() for k, v in timings.items()}}
            if loaded is not None:
                ratio = percentile(loaded["end_to_end_ms"], 99) / percentile(timings["end_to_end_ms"], 99)
                print(f"{row(units, loaded, inference)}   {f'{still_running} jobs':>7}  {ratio:>10.2f}x", flush=True)
                results[f"{units}_with_jobs"] = {k: v.tolist() for k, v in loaded.items()}
            if with_page is not None:
                ratio = percentile(with_page["end_to_end_ms"], 99) / percentile(timings["end_to_end_ms"], 99)
                print(f"{row(units, with_page, inference)}   {'page':>7}  {ratio:>10.2f}x", flush=True)
                print(f"       the page had plotted frames up to index {drawn} when the measurement ended", flush=True)
                results[f"{units}_with_dashboard"] = {k: v.tolist() for k, v in with_page.items()}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


def compare_intervals(source: Path, args: argparse.Namespace) -> int:
    """Each N on two servers, live accuracy on and off, measured in alternating rounds."""
    rounds, seconds = args.compare_intervals, args.seconds / args.compare_intervals
    print(f"bundle {load_bundle(source).version}, {args.frame_rate_hz:g} Hz, {rounds} rounds of {seconds:g} s per side")
    print(f"{COLUMNS}   {'accuracy':>8}  p99 on / off  median round p99 on / off")
    results = {}
    for units in args.units:
        workdir = Path(tempfile.mkdtemp(prefix=f"poco-rt-latency-{units}-"))
        try:
            bundle, inference = bundle_and_inference(source, workdir, units, args)
            flags = ["--engine-threads", "1"]
            servers = {
                "on": Server(bundle, workdir / "on", engine_flags=flags),
                "off": Server(bundle, workdir / "off", engine_flags=[*flags, "--no-live-accuracy"]),
            }
            timings = alternating_rounds(
                servers, units, rounds=rounds, seconds=seconds, frame_rate_hz=args.frame_rate_hz
            )
            merged = {side: merge(measured) for side, measured in timings.items()}
            ratio = percentile(merged["on"]["end_to_end_ms"], 99) / percentile(merged["off"]["end_to_end_ms"], 99)
            round_p99 = {side: [percentile(m["end_to_end_ms"], 99) for m in got] for side, got in timings.items()}
            round_ratio = float(np.median(round_p99["on"]) / np.median(round_p99["off"]))
            print(f"{row(units, merged['off'], inference)}   {'off':>8}", flush=True)
            ratios = f"{ratio:>11.3f}x  {round_ratio:>23.3f}x"
            print(f"{row(units, merged['on'], inference)}   {'on':>8}  {ratios}", flush=True)
            results[units] = {side: {k: v.tolist() for k, v in m.items()} for side, m in merged.items()}
            for side, p99s in round_p99.items():
                results[units][side]["round_p99_ms"] = p99s
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


def wire_floor(source: Path, args: argparse.Namespace) -> int:
    """Each N on the server and on the wire echo, in alternating rounds: the server's cost beyond the wire's."""
    rounds, seconds = args.wire_floor, args.seconds / args.wire_floor
    bundle_info = load_bundle(source)
    print(f"bundle {bundle_info.version}, {args.frame_rate_hz:g} Hz, {rounds} rounds of {seconds:g} s per side")
    print(f"{'N':>6} {'side':>7} {'forecasts':>11}   {'e2e p50':>8} {'p99':>7}   {'in-server p50':>13} {'p99':>7}   "
          f"{'after network p50':>17}   {'infer p50':>9}   {'own p50':>7}   {'median round p99':>16}")  # fmt: skip
    results = {}
    for units in args.units:
        workdir = Path(tempfile.mkdtemp(prefix=f"poco-rt-latency-{units}-"))
        try:
            bundle, inference = bundle_and_inference(source, workdir, units, args)
            sides = {
                "echo": WireEcho(horizon=bundle_info.horizon, context_frames=bundle_info.context_frames),
                "server": Server(bundle, workdir / "data", engine_flags=["--engine-threads", "1"]),
            }
            timings = alternating_rounds(sides, units, rounds=rounds, seconds=seconds, frame_rate_hz=args.frame_rate_hz)
            merged = {side: merge(measured) for side, measured in timings.items()}
            infer = percentile(inference, 50)
            beyond_echo = percentile(merged["server"]["end_to_end_ms"], 50) - percentile(
                merged["echo"]["end_to_end_ms"], 50
            )
            for side, measured in merged.items():
                e2e, in_server = measured["end_to_end_ms"], measured["server_ms"]
                shown = f"{infer:>9.2f}   {beyond_echo - infer:>7.2f}" if side == "server" else f"{'':>9}   {'':>7}"
                round_p99 = float(np.median([percentile(m["end_to_end_ms"], 99) for m in timings[side]]))
                counted = f"{len(e2e)}/{int(measured['expected'])}"
                print(f"{units:>6} {side:>7} {counted:>11}   {percentile(e2e, 50):>8.2f} {percentile(e2e, 99):>7.2f}   "
                      f"{percentile(in_server, 50):>13.2f} {percentile(in_server, 99):>7.2f}   "
                      f"{percentile(measured['after_network_ms'], 50):>17.3f}   {shown}   {round_p99:>16.2f}",
                      flush=True)  # fmt: skip
            results[units] = {"inference_ms": inference.tolist()}
            for side, measured in timings.items():
                results[units][side] = [{k: v.tolist() for k, v in m.items()} for m in measured]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results))
    return 0


def alternating_rounds(
    sides: dict[str, Server | WireEcho], units: int, *, rounds: int, seconds: float, frame_rate_hz: float
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Two sides measured in `rounds` rounds each, their order swapped every round (a, b, b, a, ...) so
    that both see the same machine; both are stopped at the end."""
    first, second = sides
    timings: dict[str, list[dict[str, np.ndarray]]] = {side: [] for side in sides}
    try:
        for round_index in range(rounds):
            for side in (first, second) if round_index % 2 == 0 else (second, first):
                if round_index:
                    sides[side].reopen_session()
                timings[side].append(measure(sides[side], units, seconds=seconds, frame_rate_hz=frame_rate_hz))
    finally:
        for side in sides.values():
            side.stop()
    return timings


def merge(measured: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rounds of one side as one measurement (timings concatenated, expected counts summed)."""
    return {
        "end_to_end_ms": np.concatenate([m["end_to_end_ms"] for m in measured]),
        "server_ms": np.concatenate([m["server_ms"] for m in measured]),
        "after_network_ms": np.concatenate([m["after_network_ms"] for m in measured]),
        "expected": np.array(sum(int(m["expected"]) for m in measured)),
    }


if __name__ == "__main__":
    sys.exit(main())
