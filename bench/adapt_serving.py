"""What a live fine-tune round costs a new animal's forecasts, inside a real `poco-rt serve`.

    python bench/adapt_serving.py --bundle DIR [--data RECORDING --session NAME] [--rate-hz 30] \
        [--rounds 5] [--idle-s 20] [--json FILE]

A new animal's stream (`units` only, and `fresh`, so zero-shot every round) is fed a recording's frames, looped, at
`--rate-hz`; the forecasts come back over ZeroMQ with the server's own timestamps. Each round opens
the stream afresh, waits until it has recorded enough frames for a round that can swap, then:
`--idle-s` seconds with no job, one fine-tune round (`POST /v1/sessions/{name}/finetune`, the
server's defaults) from its queueing until the server has applied its result, and `--idle-s`
seconds more. A fresh stream per round keeps every round's recording the same length (a rig's
first rounds train on a few hundred frames). Forecasts are classed by when the server received
their frame: while the job ran (started_at to finished_at in the job table), while the server
applied its result (finished_at to one second later: loading the fine-tuned bundle, the swap),
and idle (the phases before and after, away from both).

Printed per round and pooled over rounds, p50 and p99 in ms of each leg of a forecast's way (one
clock): inbound (acquisition stamp to the server's receipt: the publisher, ZeroMQ), server (receipt
to send), outbound (send to delivery here: ZeroMQ, the subscriber) and end to end; the in-server
and end-to-end p99 against idle's; the forecast count. Bursts of late forecasts that come with or
without a job (bench/README.md, the frame path) set a round's p99 by chance, so compare the pooled
rows of several rounds. The bundle must be trainable (exported with network.pt); the server's job
worker needs the `train` extra.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from live_server import Server

from poco_rt.bundle import load_bundle
from poco_rt.clients import FramePublisher, ZmqForecastSubscriber
from poco_rt.frame_split import frames_to_decide
from poco_rt.models.recording import load_recording
from poco_rt.resources import default_bundle_path, demo_recording_path

STREAM = "animal"
APPLY_S = 1.0  # after a job ends: the adaptation thread's poll (0.5 s), loading the new bundle, the swap
CLASSES = ("idle", "job", "applying")
LEGS = ("inbound", "server", "outbound", "e2e")
POLL_S = 0.2
UNAPPLIED = ("queued", "running", "succeeded")  # a round's states before the server has applied its result


class Forecasts:
    """Every forecast's server receipt time (Unix s) and its legs in ms (LEGS): from the frame's
    acquisition stamp to the server's receipt, in the server, from its send to delivery here, in all."""

    def __init__(self) -> None:
        self.received_s: list[float] = []
        self.legs: dict[str, list[float]] = {leg: [] for leg in LEGS}

    def listen(self, endpoint: str, stop: threading.Event) -> threading.Thread:
        def run() -> None:
            with ZmqForecastSubscriber(endpoint, session=STREAM, timeout_s=0.5) as subscriber:
                while not stop.is_set():
                    try:
                        timing = subscriber.receive().timing
                    except TimeoutError:
                        continue
                    self.received_s.append(timing.received_ns / 1e9)
                    self.legs["inbound"].append((timing.received_ns - timing.acquisition_time_ns) / 1e6)
                    self.legs["server"].append(timing.server_ms)
                    self.legs["outbound"].append((timing.delivered_ns - timing.sent_ns) / 1e6)
                    self.legs["e2e"].append((timing.delivered_ns - timing.acquisition_time_ns) / 1e6)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


class Feed:
    """Publishes the recording's frames, looped, at a fixed rate, until stopped; counts what it sent."""

    def __init__(self, endpoint: str, frames: np.ndarray, rate_hz: float) -> None:
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(endpoint, frames, rate_hz), daemon=True)
        self._thread.start()

    def _run(self, endpoint: str, frames: np.ndarray, rate_hz: float) -> None:
        with FramePublisher(endpoint, session=STREAM) as publisher:
            started = time.perf_counter()
            while not self._stop.is_set():
                publisher.send(frames[self.sent % len(frames)], self.sent)
                self.sent += 1
                time.sleep(max(0.0, started + self.sent / rate_hz - time.perf_counter()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class StatusPoller:
    """GET the stream's status every POLL_S in every phase, as a dashboard does, so that the HTTP work the
    bench causes is the same with and without a job (it waits on these statuses, never polls more)."""

    def __init__(self, http: httpx.Client) -> None:
        self.latest: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(http,), daemon=True)
        self._thread.start()

    def _run(self, http: httpx.Client) -> None:
        while not self._stop.wait(POLL_S):
            self.latest = http.get(f"/v1/sessions/{STREAM}").json()

    def wait_for(self, condition: Callable[[dict], bool]) -> dict:
        while not (self.latest and condition(self.latest)):
            time.sleep(POLL_S / 2)
        return self.latest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def applied_round(info: dict, job_id: str) -> dict | None:
    """The stream's round of that job once the server has applied its result, else None."""
    rounds = (info.get("adaptation") or {}).get("rounds", [])
    ours = [r for r in rounds if r["job_id"] == job_id and r["state"] not in UNAPPLIED]
    return ours[0] if ours else None


def run_round(http: httpx.Client, server: Server, frames: np.ndarray, args: argparse.Namespace, need: int) -> dict:
    """One fresh stream: idle, one fine-tune round until applied, idle; every forecast's time and legs."""
    units = frames.shape[1]
    http.post("/v1/sessions", json={"name": STREAM, "units": units, "fresh": True}).raise_for_status()
    got, stop = Forecasts(), threading.Event()
    listener = got.listen(server.info["forecast_endpoint"], stop)
    time.sleep(0.5)  # PUB/SUB slow joiner
    feed = Feed(server.info["frame_endpoint"], frames, args.rate_hz)
    status = StatusPoller(http)
    try:
        status.wait_for(lambda info: info["frames_accepted"] >= need)
        idle_from = time.time()
        time.sleep(args.idle_s)
        job_id = http.post(f"/v1/sessions/{STREAM}/finetune").raise_for_status().json()["id"]
        applied = status.wait_for(lambda info: applied_round(info, job_id))
        time.sleep(args.idle_s)
        idle_to = time.time()
    finally:
        status.stop()
        feed.stop()
        time.sleep(1.0)
        stop.set()
        listener.join(5)
        http.delete(f"/v1/sessions/{STREAM}").raise_for_status()
    job = http.get(f"/v1/jobs/{job_id}").json()
    started = job["started_at"]
    return {
        "job_s": job["finished_at"] - started,
        "outcome": applied_round(applied, job_id)["outcome"],
        "frames_sent": feed.sent,
        "idle_s": [idle_from - started, idle_to - started],
        "seconds": [round(t - started, 4) for t in got.received_s],  # each frame's receipt, from the job's start
        "legs": {leg: [round(ms, 3) for ms in times] for leg, times in got.legs.items()},  # to the microsecond
    }


def classes_of(measured: dict) -> dict[str, dict[str, list[float]]]:
    """A round's forecasts by class (CLASSES), each as its legs' times; the times are from the job's start."""
    seconds, (idle_from, idle_to), job_s = np.asarray(measured["seconds"]), measured["idle_s"], measured["job_s"]
    near = (seconds >= -APPLY_S) & (seconds <= job_s + 2 * APPLY_S)
    masks = {
        "idle": (seconds >= idle_from) & (seconds <= idle_to) & ~near,
        "job": (seconds >= 0) & (seconds <= job_s),
        "applying": (seconds > job_s) & (seconds <= job_s + APPLY_S),
    }
    return {
        name: {leg: np.asarray(measured["legs"][leg])[mask].tolist() for leg in LEGS} for name, mask in masks.items()
    }


def row(label: str, legs: dict[str, list[float]], idle: dict[str, list[float]]) -> str:
    """count, then p50 / p99 of every leg (ms), then the in-server and end-to-end p99 against idle's."""
    if not legs["server"]:
        return f"{label:>15} {0:>6}"
    cells = " ".join(f"{np.median(legs[leg]):>6.2f} {np.percentile(legs[leg], 99):>6.2f}" for leg in LEGS)
    ratios = [np.percentile(legs[leg], 99) / np.percentile(idle[leg], 99) for leg in ("server", "e2e")]
    return f"{label:>15} {len(legs['server']):>6} {cells} {ratios[0]:>9.2f}x {ratios[1]:>6.2f}x"


def report(rounds: list[dict]) -> None:
    legs = " ".join(f"{leg + ' p50':>13} {'p99':>6}" for leg in LEGS)
    print(f"{'':>15} {'count':>6} {legs} {'server p99/idle':>10} {'e2e':>6}")
    classed = [classes_of(measured) for measured in rounds]
    for number, (measured, classes) in enumerate(zip(rounds, classed, strict=True), 1):
        for name in CLASSES:
            print(row(f"{number} {name}", classes[name], classes["idle"]))
        print(f"{'':>15} job {measured['job_s']:.1f} s: {measured['outcome']}")
    pooled = {name: {leg: [t for c in classed for t in c[name][leg]] for leg in LEGS} for name in CLASSES}
    for name in CLASSES:
        print(row(f"all {name}", pooled[name], pooled["idle"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=default_bundle_path(), help="a trainable bundle (network.pt)")
    parser.add_argument("--data", type=Path, default=None, help="recording to loop (default: the demo's)")
    parser.add_argument("--session", default=None, help="the recording's session to loop (default: its first)")
    parser.add_argument("--rate-hz", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=20.0, help="seconds before and after each round's job")
    parser.add_argument("--json", type=Path, default=None, help="also write every round's figures here")
    args = parser.parse_args()

    recording = load_recording(args.data or demo_recording_path())
    session = recording.session(args.session or recording.session_names[0])
    frames = session.traces.astype(np.float32)
    bundle = load_bundle(args.bundle)
    need = frames_to_decide(bundle.context_frames, bundle.horizon) + bundle.context_frames
    print(f"{session.name}: {frames.shape[1]} units at {args.rate_hz} Hz; each round waits for {need} frames")
    with tempfile.TemporaryDirectory() as work:
        server = Server(args.bundle, Path(work) / "data", engine_flags=[], sessions=())
        try:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                rounds = [run_round(http, server, frames, args, need) for _ in range(args.rounds)]
        finally:
            server.stop()
    report(rounds)
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rounds": rounds}, indent=1)
        )


if __name__ == "__main__":
    main()
