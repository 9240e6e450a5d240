"""Calibrated intervals on a real recording: each worm of `flavell_dag2023` replayed through a real server.

    python bench/intervals_flavell.py --run RUN --data DATA            # exports RUN into a temp dir first
    python bench/intervals_flavell.py --bundle BUNDLE --data DATA

A `poco-rt serve` process (bench/live_server.py) serves the 9-worm bundle with every worm's
session open and `wire_intervals` on; each worm's whole recording is sent frame by frame in
lockstep (a frame, then its forecast), so every frame gets its own forecast. Coverage is counted
here, from the bounds each forecast carried, against the frames that followed: over every unit
and step of every forecast that had bounds (the server serves them after a warm-up of K =
`interval_warm_up_forecasts` scored forecasts per step), and per unit. Widths are half-widths in
units of each unit's calibration std.

Two fixed-width baselines, one global quantile of |residual| / std over all units and steps:
- oracle: the quantile of the very residuals it is scored on (so its overall coverage is the
  level by construction); it shows what width one global number needs, and how unevenly it
  covers units of different predictability;
- split: the quantile of the warm-up forecasts' residuals, applied to the rest (what a fixed
  interval calibrated at the start of a session gives later on).
Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import zmq
from live_server import Server

from poco_rt.bundle import load_bundle
from poco_rt.models.recording import load_recording
from poco_rt.wire import decode_forecast, encode_frame, forecast_topic

LEVELS = (0.8, 0.95)


@dataclasses.dataclass
class Replayed:
    values: np.ndarray  # (F, N, P) forecasts, raw, one per frame from frame C - 1
    lower: np.ndarray  # (F, L, N, P); NaN where the forecast carried no bounds
    upper: np.ndarray
    first_frame: int  # the frame the first forecast was made after


def replay(server: Server, session: str, traces: np.ndarray, *, context_frames: int) -> Replayed:
    context = zmq.Context()
    push, sub = context.socket(zmq.PUSH), context.socket(zmq.SUB)
    for socket in (push, sub):
        socket.setsockopt(zmq.LINGER, 0)
    push.connect(server.info["frame_endpoint"])
    sub.setsockopt(zmq.SUBSCRIBE, forecast_topic(session))
    sub.connect(server.info["forecast_endpoint"])
    time.sleep(0.5)  # PUB/SUB slow joiner
    values, lowers, uppers = [], [], []
    try:
        for index, frame in enumerate(traces.astype(np.float32)):
            message = encode_frame(frame, session=session, frame_index=index, acquisition_time_ns=time.time_ns())
            push.send_multipart(message.parts, copy=message.copy)
            if index < context_frames - 1:
                continue
            if not sub.poll(30_000):
                raise TimeoutError(f"no forecast for frame {index} of {session} within 30 s")
            forecast = decode_forecast(sub.recv_multipart())
            values.append(forecast.values)
            nan = np.full((len(LEVELS), *forecast.values.shape), np.nan, dtype=np.float32)
            carried = forecast.intervals
            bounds = [carried.bounds(level) for level in LEVELS] if carried and carried.levels else None
            lowers.append(np.stack([lower for lower, _ in bounds]) if bounds else nan)
            uppers.append(np.stack([upper for _, upper in bounds]) if bounds else nan)
    finally:
        context.destroy(linger=0)
    return Replayed(np.stack(values), np.stack(lowers), np.stack(uppers), first_frame=context_frames - 1)


def targets_of(replayed: Replayed, traces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F', N, P) targets of the forecasts whose P frames all exist, and the mask of those forecasts."""
    horizon = replayed.values.shape[2]
    made_after = replayed.first_frame + np.arange(len(replayed.values))
    complete = made_after + horizon < len(traces)
    steps = made_after[complete][:, None] + np.arange(1, horizon + 1)  # (F', P)
    return traces[steps].transpose(0, 2, 1), complete  # (F', P, N) -> (F', N, P)


def evaluate(replayed: Replayed, traces: np.ndarray, std: np.ndarray, warm_up: int) -> dict[str, float]:
    targets, complete = targets_of(replayed, traces)
    values = replayed.values[complete]
    lower, upper = replayed.lower[complete], replayed.upper[complete]
    bounded = ~np.isnan(lower[:, 0, 0, 0])
    score = np.abs(targets - values) / std[None, :, None]  # (F', N, P)
    result = {"forecasts": int(bounded.sum())}
    for index, level in enumerate(LEVELS):
        inside = (lower[bounded, index] <= targets[bounded]) & (targets[bounded] <= upper[bounded, index])
        unit_coverage = inside.mean(axis=(0, 2))
        width = ((upper[bounded, index] - lower[bounded, index]) / 2 / std[None, :, None]).mean()
        oracle_q = np.quantile(score[bounded], level)
        oracle_units = (score[bounded] <= oracle_q).mean(axis=(0, 2))
        split_q = np.quantile(score[:warm_up], level)
        name = f"{round(level * 100)}"
        result |= {
            f"coverage_{name}": float(inside.mean()),
            f"width_{name}": float(width),
            f"unit_p5_{name}": float(np.percentile(unit_coverage, 5)),
            f"unit_p95_{name}": float(np.percentile(unit_coverage, 95)),
            f"oracle_width_{name}": float(oracle_q),
            f"oracle_unit_p5_{name}": float(np.percentile(oracle_units, 5)),
            f"oracle_unit_p95_{name}": float(np.percentile(oracle_units, 95)),
            f"split_coverage_{name}": float((score[bounded] <= split_q).mean()),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a finished 9-worm training run, exported into a temp dir first")
    source.add_argument("--bundle", type=Path, help="an exported bundle of the 9 worms")
    parser.add_argument("--data", type=Path, required=True, help="the flavell_dag2023 folder of HDF5 files")
    parser.add_argument("--warm-up", type=int, default=50, help="K: scored forecasts per step before bounds")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}: skipped")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="poco-rt-intervals-flavell-"))
    try:
        bundle_path = args.bundle
        if args.run is not None:
            from poco_rt.models.export import export_bundle

            bundle_path = export_bundle(args.run, workdir / "bundle").path
        bundle = load_bundle(bundle_path)
        recording = load_recording(args.data)
        worms = [session for session in recording.sessions if session.name in bundle.sessions]
        flags = ["--engine-threads", "1", "--wire-intervals", "--interval-warm-up-forecasts", str(args.warm_up)]
        server = Server(bundle_path, workdir / "data", engine_flags=flags, sessions=[worm.name for worm in worms])
        print(f"bundle {bundle.version}: {len(worms)} worms, C = {bundle.context_frames}, P = {bundle.horizon}, "
              f"K = {args.warm_up}; widths are half-widths in units of each unit's std")  # fmt: skip
        print(
            f"{'worm':>14} {'N':>4} {'fcsts':>5} {'score':>6}   {'cov 80':>6} {'95':>6}   {'width 80':>8} {'95':>6}   "
            f"{'units p5-p95 80':>15} {'95':>11}   {'global w 80':>11} {'95':>6}   {'units p5-p95 80':>15} "
            f"{'95':>11}   {'split cov 80':>12} {'95':>6}"
        )
        rows = []
        try:
            for worm in worms:
                replayed = replay(server, worm.name, worm.traces, context_frames=bundle.context_frames)
                std = bundle.sessions[worm.name].std
                row = evaluate(replayed, worm.traces.astype(np.float32), std, args.warm_up)
                accuracy = httpx.get(f"{server.url}/v1/sessions/{worm.name}/accuracy", timeout=10).json()
                row["score"] = float(np.nanmean([s for s in accuracy["unit_score"] if s is not None]))
                rows.append(row)
                print(format_row(worm.name, worm.traces.shape[1], row), flush=True)
        finally:
            server.stop()
        mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
        print(format_row("mean", 0, mean))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def format_row(name: str, units: int, row: dict[str, float]) -> str:
    def spread(prefix: str, level: str) -> str:
        return f"{row[f'{prefix}unit_p5_{level}']:.2f}-{row[f'{prefix}unit_p95_{level}']:.2f}"

    return (
        f"{name:>14} {units:>4} {row['forecasts']:>5.0f} {row['score']:>6.3f}   {row['coverage_80']:>6.3f} "
        f"{row['coverage_95']:>6.3f}   {row['width_80']:>8.3f} {row['width_95']:>6.3f}   {spread('', '80'):>15} "
        f"{spread('', '95'):>11}   {row['oracle_width_80']:>11.3f} {row['oracle_width_95']:>6.3f}   "
        f"{spread('oracle_', '80'):>15} {spread('oracle_', '95'):>11}   {row['split_coverage_80']:>12.3f} "
        f"{row['split_coverage_95']:>6.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
