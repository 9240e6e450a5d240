"""Leave one worm out: should a new animal's fine-tune round train in the normalisation its stream serves in?

A new animal's stream forecasts in its own running normalisation (the last 4 C frames, re-estimated
every C frames: poco_rt.normalisation.stream_estimate_span), and keeps it when a round's embeddings
are swapped in. The round itself (poco_rt.models.adapt) trains and judges the embeddings in one
normalisation, that of its train part. Per held-out worm and 8-worm network, the worm's first
`--frames` frames (311: what an automatic round waits for at C = 48, P = 16; 622: its second round)
go through two rounds from the zero-shot calibration, with the same parts, steps, early stopping
and seed:

    as the server runs it   poco_rt.models.adapt.adapt_embeddings
    in the stream's         every window's context normalised as the stream had it at that frame,
    normalisation           its forecast mapped back and its loss taken in the train part's units
                            (as streamed training does, poco_rt.models.data); validation and the
                            held-out check forecast the same way

Printed per round: its best step and its held-out check (current -> candidate), and how every
forecast whose targets come after the round's frames scores as a live stream would make it (the
stream's own normalisation) with zero-shot's embeddings and with each round's; as the reference,
the 9-worm model with the worm's own calibration (its embeddings, its whole-worm normalisation:
what a server serves for a worm it was trained on) on the same forecasts. Scores are POCO's, in the
whole worm's z-units. Usage:

    python bench/adapt_in_stream_normalisation.py --data ../shared/data/flavell_dag2023 \
        --holdout 2022-07-26-31 [...] [--variants poco_warm_slow_seed0 poco_warm_slow_seed0_streamed300] \
        [--frames 311 622] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from adapt_round_cost import zero_shot
from zero_shot_normalisation import as_served, zero_shot_score

from poco_rt.bundle import Bundle
from poco_rt.frame_split import split_frames
from poco_rt.metric import score_from_errors
from poco_rt.models.adapt import AdaptConfig, adapt_embeddings, load_network, window_starts
from poco_rt.models.export import export_bundle
from poco_rt.models.poco import Poco
from poco_rt.models.recording import load_recording
from poco_rt.normalisation import normalisation_of, stream_estimate_span
from poco_rt.server.engine import Engine


class StreamWindows:
    """Windows of raw frames (T, N) with the stream's estimate at each: context normalised by it, its
    forecast mapped back by it, target and errors in the units of (`unit_mean`, `unit_std`)."""

    def __init__(self, frames: np.ndarray, context_frames: int, horizon: int, unit_mean, unit_std) -> None:
        self.frames = torch.from_numpy(frames).float()
        self.raw = frames
        self.context_frames, self.horizon = context_frames, horizon
        self.unit_mean, self.unit_std = torch.from_numpy(unit_mean), torch.from_numpy(unit_std)
        self._estimates: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # a new one every C frames

    def _estimate(self, span: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if span not in self._estimates:
            mean, std = normalisation_of(self.raw[slice(*span)])
            self._estimates[span] = torch.from_numpy(mean), torch.from_numpy(std)
        return self._estimates[span]

    def forecast_and_target(self, model: Poco, starts: np.ndarray, embeddings: torch.Tensor):
        """Forecast (B, P, N), target (B, P, N) and copy-last (B, 1, N), all in the unit normalisation."""
        context_frames = self.context_frames
        estimates = [self._estimate(stream_estimate_span(int(s) + context_frames, context_frames)) for s in starts]
        mean = torch.stack([m for m, _ in estimates])[:, None]  # (B, 1, N)
        std = torch.stack([s for _, s in estimates])[:, None]
        offsets = torch.from_numpy(starts[:, None] + np.arange(context_frames + self.horizon)[None, :])
        windows = self.frames[offsets]  # (B, C + P, N)
        context = ((windows[:, :context_frames] - mean) / std).transpose(1, 2)  # (B, N, C)
        forecast = model.forecast(context, embeddings).transpose(1, 2) * std + mean  # (B, P, N)
        in_units = [(part - self.unit_mean) / self.unit_std for part in (forecast, windows)]
        return in_units[0], in_units[1][:, context_frames:], in_units[1][:, context_frames - 1 : context_frames]

    def score(self, model: Poco, starts: np.ndarray, embeddings: torch.Tensor) -> float:
        with torch.no_grad():
            forecast, target, last = self.forecast_and_target(model, starts, embeddings)
        return score_from_errors(float(((forecast - target) ** 2).sum()), float(((last - target) ** 2).sum()))


def adapt_in_stream_normalisation(bundle: Bundle, frames: np.ndarray, start: np.ndarray, config: AdaptConfig) -> dict:
    """adapt_embeddings' round, every window forecast as the stream served it (the module docstring)."""
    model = load_network(bundle)
    context_frames, horizon = bundle.context_frames, bundle.horizon
    parts = split_frames(len(frames))
    windows = StreamWindows(frames, context_frames, horizon, *normalisation_of(frames[slice(*parts.train)]))
    train, validation, held_out = (
        window_starts(parts, part, context_frames, horizon) for part in (parts.train, parts.validation, parts.held_out)
    )
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    embeddings = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = torch.optim.AdamW([embeddings], lr=config.learning_rate, weight_decay=0.0, amsgrad=True)
    best_score, best_step = windows.score(model, validation, embeddings.detach()), 0
    best = embeddings.detach().clone()
    step, stale = 0, 0
    while step < config.max_steps and stale < config.patience:
        step += 1
        starts = rng.choice(train, size=config.batch_windows)
        forecast, target, _ = windows.forecast_and_target(model, starts, embeddings)
        loss = torch.mean((forecast - target) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % config.eval_every == 0:
            score = windows.score(model, validation, embeddings.detach())
            if score > best_score:
                best_score, best_step, stale, best = score, step, 0, embeddings.detach().clone()
            else:
                stale += 1
    return {
        "embeddings": best.numpy(),
        "best step": best_step,
        "held-out current": windows.score(model, held_out, torch.from_numpy(start)),
        "held-out candidate": windows.score(model, held_out, best),
    }


def one_round(eight: Bundle, nine: Bundle, own: str, every: np.ndarray, frames: int) -> dict:
    baseline = zero_shot(eight, every.shape[1])
    served = list(as_served(every, eight.context_frames))
    engine = Engine(eight)

    def later(embeddings: np.ndarray) -> float:
        return zero_shot_score(engine, every, served, embeddings, first_target=frames)

    reference = nine.session(own)
    whole_own = [(reference.mean, reference.std)] * len(every)
    result = adapt_embeddings(eight, every[:frames], baseline=baseline, name="worm.adapted", config=AdaptConfig())
    streamed = adapt_in_stream_normalisation(eight, every[:frames], baseline.unit_embeddings, AdaptConfig())
    return {
        "later frames, 9-worm": zero_shot_score(
            Engine(nine), every, whole_own, reference.unit_embeddings, first_target=frames
        ),
        "later frames, zero-shot": later(baseline.unit_embeddings),
        "as the server runs it": {
            "best step": result.best_step,
            "held-out current": result.baseline_score,
            "held-out candidate": result.candidate_score,
            "swaps": result.improved,
            "later frames": later(result.calibration.unit_embeddings),
        },
        "in the stream's normalisation": {
            **{key: value for key, value in streamed.items() if key != "embeddings"},
            "later frames": later(streamed["embeddings"]),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--holdout", nargs="+", required=True)
    parser.add_argument("--runs", type=Path, default=Path("bench/runs"))
    parser.add_argument("--variants", nargs="+", default=["poco_warm_slow_seed0", "poco_warm_slow_seed0_streamed300"])
    parser.add_argument("--frames", nargs="+", type=int, default=[311, 622])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recording = load_recording(args.data)
    results = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    with tempfile.TemporaryDirectory() as scratch:
        nine = export_bundle(args.runs / "flavell" / "poco_warm_slow_seed0", Path(scratch) / "nine")
        for worm in args.holdout:
            every = recording.session(worm).traces.astype(np.float64)
            for variant in args.variants:
                eight = export_bundle(args.runs / "loo" / worm / variant, Path(scratch) / worm / variant)
                (own,) = [name for name in nine.sessions if name not in eight.sessions]
                for frames in args.frames:
                    key = f"{worm} {variant} {frames}"
                    if key in results:
                        continue
                    results[key] = row = one_round(eight, nine, own, every, frames)
                    print(key, json.dumps(row, default=float), flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
