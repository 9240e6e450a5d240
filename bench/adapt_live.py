"""A new animal on a real server: leave one worm out, replay it live as an animal the bundle never saw.

    python bench/adapt_live.py --data ../shared/data/flavell_dag2023 --holdout 2022-07-26-31 [--speed 1]

Per held-out worm, with the runs bench/finetune_loo.py trains (`poco_warm_slow`, seed 0: the 8 other
worms, and all 9 as the reference), both exported to bundles here:
- server A serves the 8-worm bundle; the worm is opened as a new animal (`units` only) with automatic
  adaptation on (AutoAdapt's defaults), so it forecasts zero-shot, then fine-tunes and swaps by itself;
- server B serves the 9-worm bundle, with the worm's own calibration: (a), the score to aim for;
- server C serves the 8-worm bundle too, the worm opened as a new animal without adaptation: the
  control that says whether A's swaps helped, on the same frames;
- (b), a per-animal MLP (POCO's "MLP only") trained offline on exactly the frames, and the same
  train and validation parts, that A's first swapped round had.
The frames go to the three servers at the worm's frame rate times `--speed` (acquisition times keep
the worm's own clock, so automatic rounds see acquisition seconds). Scores are POCO's metric on the
forecasts the servers published, in each unit's z-units over the recording; A's are split at its
swaps, and A, B, C and the MLP are compared over the same frames, from A's first swap to the end.
Also reported: time to the first swap (frames recorded when it was queued, job CPU, wall), A's
in-server latency while a fine-tune job runs against the rest of the replay, and frames lost.
Results are appended to bench/results/adapt_live.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from live_server import Server

from poco_rt.clients import FramePublisher, ZmqForecastSubscriber
from poco_rt.frame_split import split_frames
from poco_rt.metric import ScoreAccumulator
from poco_rt.models.adapt import windows_of
from poco_rt.models.baselines import Mlp
from poco_rt.models.config import ModelConfig, ModelKind, TrainConfig
from poco_rt.models.export import export_bundle
from poco_rt.models.recording import load_recording
from poco_rt.normalisation import normalisation_of
from poco_rt.server.engine import Engine

VARIANT = "poco_warm_slow_seed0"
MLP_MAX_STEPS, MLP_EVAL_EVERY, MLP_PATIENCE = 2000, 10, 10


@dataclasses.dataclass
class Received:
    frame_index: list[int] = dataclasses.field(default_factory=list)
    values: list[np.ndarray] = dataclasses.field(default_factory=list)
    server_ms: list[float] = dataclasses.field(default_factory=list)
    received_s: list[float] = dataclasses.field(default_factory=list)  # server clock, Unix seconds


def subscribe(endpoint: str, session: str, into: Received, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        with ZmqForecastSubscriber(endpoint, session=session, timeout_s=0.5) as subscriber:
            while not stop.is_set():
                try:
                    update = subscriber.receive()
                except TimeoutError:
                    continue
                into.frame_index.append(update.frame_index)
                into.values.append(update.forecast)
                into.server_ms.append((update.timing.sent_ns - update.timing.received_ns) / 1e6)
                into.received_s.append(update.timing.received_ns / 1e9)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def score(frames: np.ndarray, std: np.ndarray, made_at: list[int], forecasts: list[np.ndarray], first: int) -> float:
    """POCO's score of forecasts made at frames >= `first` whose P targets are all recorded."""
    horizon = forecasts[0].shape[1]
    accumulator = ScoreAccumulator()
    for t, values in zip(made_at, forecasts, strict=True):
        if t >= first and t + horizon < len(frames):
            accumulator.add(values / std[:, None], frames[t + 1 : t + horizon + 1].T / std[:, None], frames[t] / std)
    return accumulator.score


def mlp_forecasts(frames: np.ndarray, trained_on: int) -> tuple[list[int], list]:
    """A per-animal MLP fitted to frames[:trained_on] exactly as the fine-tune job cuts them, forecasting every
    later frame: trained on the train part's windows, early-stopped on the validation part's (POCO's "MLP
    only" with its learning rate and weight decay), normalised with the train part's statistics."""
    parts = split_frames(trained_on)
    config = ModelConfig(kind=ModelKind.MLP)
    train_config = TrainConfig()
    context_frames, horizon = config.context_frames, config.horizon
    mean, std = normalisation_of(frames[slice(*parts.train)])
    normalised = torch.from_numpy((frames - mean) / std).float()
    train_starts = np.asarray(parts.window_starts(parts.train, context_frames, horizon))
    validation_starts = np.asarray(parts.window_starts(parts.validation, context_frames, horizon))
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Mlp(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay
    )

    def validation_loss() -> float:
        with torch.no_grad():
            context, target = windows_of(normalised, validation_starts, context_frames, horizon)
            return float(torch.mean((model(context, 0) - target) ** 2))

    best_loss, best_state, stale = validation_loss(), copy.deepcopy(model.state_dict()), 0
    for step in range(1, MLP_MAX_STEPS + 1):
        context, target = windows_of(normalised, rng.choice(train_starts, size=train_config.batch_windows),
                                     context_frames, horizon)  # fmt: skip
        loss = torch.mean((model(context, 0) - target) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip_norm)
        optimizer.step()
        if step % MLP_EVAL_EVERY == 0:
            loss_now = validation_loss()
            if loss_now < best_loss:
                best_loss, best_state, stale = loss_now, copy.deepcopy(model.state_dict()), 0
            elif (stale := stale + 1) >= MLP_PATIENCE:
                break
    model.load_state_dict(best_state)
    model.eval()
    made_at = np.arange(max(trained_on, context_frames - 1), len(frames) - horizon)
    with torch.no_grad():
        context, _ = windows_of(normalised, made_at - context_frames + 1, context_frames, horizon)
        values = model(context, 0).numpy() * std[:, None] + mean[:, None]
    return made_at.tolist(), list(values)


def replay_worm(args: argparse.Namespace, worm: str, work: Path) -> dict:
    full = load_recording(args.data)
    session = full.session(worm)
    frames, rate_hz = session.traces, session.frame_rate_hz
    nine = export_bundle(args.runs / "flavell" / VARIANT, work / "nine")
    eight = export_bundle(args.runs / "loo" / worm / args.new_animal_run, work / "eight")
    (calibration,) = [name for name in nine.sessions if name not in eight.sessions]
    adapted = Server(eight.path, work / "data_a", engine_flags=[], sessions=())
    reference = Server(nine.path, work / "data_b", engine_flags=[], sessions=(f"ref={calibration}",))
    control = Server(eight.path, work / "data_c", engine_flags=[], sessions=())
    http = httpx.Client(base_url=adapted.url, timeout=10)
    try:
        units = frames.shape[1]
        http.post("/v1/sessions", json={"name": "worm", "units": units, "adapt": {}}).raise_for_status()
        httpx.post(f"{control.url}/v1/sessions", json={"name": "worm", "units": units}).raise_for_status()
        stop = threading.Event()
        got_a, got_b, got_c = Received(), Received(), Received()
        threads = [
            subscribe(adapted.info["forecast_endpoint"], "worm", got_a, stop),
            subscribe(reference.info["forecast_endpoint"], "ref", got_b, stop),
            subscribe(control.info["forecast_endpoint"], "worm", got_c, stop),
        ]
        time.sleep(0.5)
        swaps: list[dict] = []
        interval_s = 1.0 / (rate_hz * args.speed)
        with (
            FramePublisher(adapted.info["frame_endpoint"], session="worm") as to_a,
            FramePublisher(reference.info["frame_endpoint"], session="ref") as to_b,
            FramePublisher(control.info["frame_endpoint"], session="worm") as to_c,
        ):
            started = time.perf_counter()
            calibration_now = None
            for index, frame in enumerate(frames):
                stamp = int(index / rate_hz * 1e9)
                to_a.send(frame, index, stamp)
                to_b.send(frame, index, stamp)
                to_c.send(frame, index, stamp)
                info = http.get("/v1/sessions/worm").json()
                if info["calibration"] != calibration_now:
                    calibration_now = info["calibration"]
                    swaps.append({"calibration": calibration_now, "frame": info["last_frame_index"] or 0})
                time.sleep(max(0.0, started + (index + 1) * interval_s - time.perf_counter()))
        time.sleep(2.0)
        final = http.get("/v1/sessions/worm").json()
        reference_info = httpx.get(f"{reference.url}/v1/sessions/ref").json()
        jobs = {job["id"]: job for job in http.get("/v1/jobs").json()}
        stop.set()
        for thread in threads:
            thread.join(2)
    finally:
        http.close()
        adapted.stop()
        reference.stop()
        control.stop()

    kept = args.runs / "adapt" / f"{worm}.npz"  # what the servers published, to score again without a replay
    kept.parent.mkdir(parents=True, exist_ok=True)
    np.savez(kept, a_made_at=got_a.frame_index, a_values=np.stack(got_a.values), a_server_ms=got_a.server_ms,
             b_made_at=got_b.frame_index, b_values=np.stack(got_b.values))  # fmt: skip
    (kept.with_suffix(".json")).write_text(json.dumps({"final": final, "swaps": swaps, "jobs": jobs}, default=float))
    std = frames.std(axis=0)
    rounds = final["adaptation"]["rounds"]
    swapped = [r for r in rounds if r["swapped"]]
    swap_frames = [s["frame"] for s in swaps[1:]]  # the first entry is the zero-shot calibration at open
    first_swap = swap_frames[0] if swap_frames else len(frames)
    result: dict = {
        "worm": worm,
        "new_animal_run": args.new_animal_run,
        "zero_shot_embedding_choices": zero_shot_choices(eight, frames),
        "units": int(frames.shape[1]),
        "frames": len(frames),
        "frame_rate_hz": rate_hz,
        "speed": args.speed,
        "frames_lost": {
            "a": len(frames) - final["frames_accepted"],
            "b": len(frames) - reference_info["frames_accepted"],
        },
        "rounds": [round_with_its_job(r, jobs.get(r["job_id"])) for r in rounds],
        "swaps": swaps,
        "zero_shot_score": score(frames, std, got_a.frame_index, got_a.values, 0)
        if not swap_frames
        else score_until(frames, std, got_a, first_swap),
        "reference_score_same_frames_as_zero_shot": score_until(frames, std, got_b, first_swap),
    }
    if swapped:
        first_job = jobs[swapped[0]["job_id"]]
        summary = first_job["summary"]
        result["first_swap"] = {
            "frame": first_swap,
            "acquisition_s": first_swap / rate_hz,
            "frames_recorded_when_queued": swapped[0]["frames"],
            "job_cpu_s": summary["cpu_s"],
            "job_wall_s": first_job["finished_at"] - first_job["started_at"],
            "held_out": [summary["baseline_score"], summary["candidate_score"]],
        }
        made_at, mlp_values = mlp_forecasts(frames, swapped[0]["frames"])
        after = first_swap + 1
        result["after_first_swap"] = {
            "adapted": score(frames, std, got_a.frame_index, got_a.values, after),
            "nine_worm_model": score(frames, std, got_b.frame_index, got_b.values, after),
            "zero_shot_never_adapted": score(frames, std, got_c.frame_index, got_c.values, after),
            "per_animal_mlp": score(frames, std, made_at, mlp_values, after),
        }
        result["after_first_swap"]["ratio_to_nine_worm"] = (
            result["after_first_swap"]["adapted"] / result["after_first_swap"]["nine_worm_model"]
        )
        result["segments"] = segment_scores(frames, std, got_a, swap_frames)
    result["latency_ms"] = latency_while_jobs_ran(got_a, list(jobs.values()))
    return result


def round_with_its_job(round_info: dict, job: dict | None) -> dict:
    """A round as the server lists it, with its job's CPU seconds, wall seconds and steps where it finished."""
    summary = (job or {}).get("summary") or {}
    if not summary:
        return round_info
    return round_info | {
        "job_cpu_s": summary["cpu_s"],
        "job_wall_s": job["finished_at"] - job["started_at"],
        "steps": summary["steps"],
        "best_step": summary["best_step"],
    }


def zero_shot_choices(bundle, frames: np.ndarray) -> dict[str, float]:
    """Offline, on every window of the worm: the zero-shot score with each candidate unseen-unit embedding
    (the mean learned unit embedding the server uses, all zeros, and one learned unit's at random), in the
    normalisation of the whole recording, so that only the embedding differs."""
    engine = Engine(bundle, threads=1)
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    normalised = ((frames - mean) / std).astype(np.float32)
    units = frames.shape[1]
    learned = np.concatenate([s.unit_embeddings for s in bundle.sessions.values()])
    candidates = {
        "mean_learned_unit": np.tile(bundle.unseen_unit_embedding(), (units, 1)),
        "zeros": np.zeros((units, bundle.embedding_dim), dtype=np.float32),
        "one_learned_unit": np.tile(learned[np.random.default_rng(0).integers(len(learned))], (units, 1)),
    }
    context_frames, horizon = bundle.context_frames, bundle.horizon
    scores = {}
    for name, embeddings in candidates.items():
        accumulator = ScoreAccumulator()
        for t in range(context_frames - 1, len(frames) - horizon):
            context = np.ascontiguousarray(normalised[t - context_frames + 1 : t + 1].T)
            forecast = engine.forecast_normalised(context, embeddings.astype(np.float32))
            accumulator.add(forecast, normalised[t + 1 : t + horizon + 1].T, normalised[t])
        scores[name] = accumulator.score
    return scores


def score_until(frames: np.ndarray, std: np.ndarray, got: Received, stop: int) -> float:
    kept = [(t, v) for t, v in zip(got.frame_index, got.values, strict=True) if t < stop]
    return score(frames, std, [t for t, _ in kept], [v for _, v in kept], 0) if kept else float("nan")


def segment_scores(frames: np.ndarray, std: np.ndarray, got: Received, swap_frames: list[int]) -> list[dict]:
    """A's score between consecutive swaps: zero-shot first, then each fine-tuned calibration."""
    edges = [0, *[s + 1 for s in swap_frames], len(frames)]
    segments = []
    for start, stop in itertools.pairwise(edges):
        made_at = [t for t in got.frame_index if start <= t < stop]
        values = [v for t, v in zip(got.frame_index, got.values, strict=True) if start <= t < stop]
        if made_at:
            segments.append({"from_frame": start, "to_frame": stop, "score": score(frames, std, made_at, values, 0)})
    return segments


def latency_while_jobs_ran(got: Received, jobs: list[dict]) -> dict:
    windows = [(j["started_at"], j["finished_at"] or float("inf")) for j in jobs if j["started_at"]]
    busy = np.array([any(a <= t <= b for a, b in windows) for t in got.received_s], dtype=bool)
    server_ms = np.asarray(got.server_ms)

    def stats(values: np.ndarray) -> dict:
        if values.size == 0:
            return {"count": 0}
        return {"count": int(values.size), "median": float(np.median(values)), "p99": float(np.percentile(values, 99))}

    return {"job_running": stats(server_ms[busy]), "no_job": stats(server_ms[~busy])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flavell_dag2023"))
    parser.add_argument("--holdout", nargs="+", required=True, help="worms to replay, one after the other")
    parser.add_argument("--speed", type=float, default=1.0, help="replay at this multiple of the frame rate")
    parser.add_argument("--runs", type=Path, default=Path("bench/runs"), help="bench/finetune_loo.py's runs")
    parser.add_argument("--results", type=Path, default=Path("bench/results/adapt_live.json"))
    parser.add_argument(
        "--new-animal-run",
        default=VARIANT,
        help="the 8-worm run under --runs/loo/WORM that servers A and C serve (e.g. bench/streamed_training.py's "
        f"{VARIANT}_streamed300); the 9-worm reference is always {VARIANT}",
    )
    args = parser.parse_args()
    for worm in args.holdout:
        with tempfile.TemporaryDirectory() as folder:
            result = replay_worm(args, worm, Path(folder))
        print(json.dumps(result, indent=2, default=float))
        results = json.loads(args.results.read_text()) if args.results.exists() else []
        args.results.write_text(json.dumps([*results, result], indent=2, default=float))


if __name__ == "__main__":
    main()
