"""Offline: a new animal's zero-shot score under each way of estimating its normalisation from its own frames.

Every session of the recording is forecast at every frame from its first full context on, as a new
animal's stream is (the bundle's unseen-unit embedding for every unit), with the normalisation an
estimate would have given at that frame:

    frozen at 16C     every frame so far, re-estimated at C, 2C, 4C, 8C, 16C, then kept
    all, every C      every frame so far, re-estimated every C frames
    last kC, every C  the last k C frames (WindowedNormalisation), re-estimated every C frames
    whole recording   the mean and std of the whole session: not available live, the bound

Scores are POCO's (1 - MSE / MSE of copy-last), in the z-units of the whole session, so that every
schedule is scored alike. Only the normalisation differs between columns. Usage:

    python bench/zero_shot_normalisation.py --bundle DIR --data RECORDING [--sessions NAME ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from poco_rt.bundle import load_bundle
from poco_rt.metric import ScoreAccumulator
from poco_rt.models.recording import load_recording
from poco_rt.normalisation import WindowedNormalisation, normalisation_of, stream_estimate_span
from poco_rt.server.engine import Engine

Estimate = tuple[np.ndarray, np.ndarray]


def frozen_after_16_contexts(frames: np.ndarray, context_frames: int) -> Iterator[Estimate]:
    estimate, next_refresh = None, context_frames
    for seen in range(1, len(frames) + 1):
        if seen == next_refresh and next_refresh <= 16 * context_frames:
            estimate, next_refresh = normalisation_of(frames[:seen]), 2 * next_refresh
        yield estimate


def every_context(window_contexts: int | None) -> Callable[[np.ndarray, int], Iterator[Estimate]]:
    """Re-estimated every C frames, over the last `window_contexts` C frames (None: every frame so far)."""

    def schedule(frames: np.ndarray, context_frames: int) -> Iterator[Estimate]:
        window = len(frames) if window_contexts is None else window_contexts * context_frames
        running = WindowedNormalisation(frames.shape[1], window=window)
        estimate = None
        for frame in frames:
            running.add(frame)
            if running.count % context_frames == 0:
                estimate = running.estimate()
            yield estimate

    return schedule


def whole_recording(frames: np.ndarray, context_frames: int) -> Iterator[Estimate]:
    del context_frames
    estimate = normalisation_of(frames)
    for _ in frames:
        yield estimate


def as_served(frames: np.ndarray, context_frames: int) -> Iterator[Estimate | None]:
    """The server's own schedule (poco_rt.normalisation.stream_estimate_span): the last 4C frames, each
    re-estimate taken in after the forecast of the frame that completes it."""
    for seen in range(1, len(frames) + 1):
        span = slice(*stream_estimate_span(seen, context_frames)) if seen >= context_frames else None
        yield None if span is None else normalisation_of(frames[span])


SCHEDULES = {
    "frozen at 16C": frozen_after_16_contexts,
    "all, every C": every_context(None),
    "last 2C": every_context(2),
    "last 4C": every_context(4),
    "last 8C": every_context(8),
    "whole recording": whole_recording,
}


def zero_shot_score(
    engine: Engine,
    frames: np.ndarray,
    estimates: list[Estimate | None],
    embeddings: np.ndarray | None = None,
    *,
    first_target: int = 0,
) -> float:
    """POCO's score of forecasts at every frame from the first full context, each normalised by its frame's
    estimate, in the whole session's z-units; with the unseen-unit embedding unless `embeddings` (N, D);
    only the forecasts whose targets start at frame `first_target` or later."""
    bundle = engine.bundle
    context_frames, horizon = bundle.context_frames, bundle.horizon
    if embeddings is None:
        embeddings = np.tile(bundle.unseen_unit_embedding(), (frames.shape[1], 1)).astype(np.float32)
    z_mean, z_std = frames.mean(axis=0), frames.std(axis=0)
    scored = ScoreAccumulator()
    for t in range(max(context_frames, first_target) - 1, len(frames) - horizon):
        mean, std = estimates[t]
        context = np.ascontiguousarray(((frames[t - context_frames + 1 : t + 1] - mean) / std).T, dtype=np.float32)
        forecast = engine.forecast_normalised(context, embeddings) * std[:, None] + mean[:, None]
        target = (frames[t + 1 : t + horizon + 1] - z_mean) / z_std
        scored.add((forecast - z_mean[:, None]) / z_std[:, None], target.T, (frames[t] - z_mean) / z_std)
    return scored.score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle (its network only)")
    parser.add_argument("--data", type=Path, required=True, help="the recording whose sessions are the new animals")
    parser.add_argument("--sessions", nargs="+", default=None, help="only these sessions (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores here")
    args = parser.parse_args()
    engine = Engine(load_bundle(args.bundle))
    context_frames = engine.bundle.context_frames
    print(f"{'session':<16} {'frames':>6} " + " ".join(f"{name:>15}" for name in SCHEDULES))
    results = {}
    for session in load_recording(args.data).sessions:
        if args.sessions and session.name not in args.sessions:
            continue
        frames = session.traces.astype(np.float64)
        scores = {
            name: zero_shot_score(engine, frames, list(schedule(frames, context_frames)))
            for name, schedule in SCHEDULES.items()
        }
        results[session.name] = scores
        print(f"{session.name:<16} {len(frames):>6} " + " ".join(f"{s:>+15.3f}" for s in scores.values()), flush=True)
    means = {name: float(np.mean([scores[name] for scores in results.values()])) for name in SCHEDULES}
    print(f"{'mean':<16} {'':>6} " + " ".join(f"{s:>+15.3f}" for s in means.values()))
    if args.json:
        args.json.write_text(json.dumps({"sessions": results, "mean": means}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
