"""What a new animal's first fine-tune round costs and decides, at each number of windows per step.

    python bench/adapt_round_cost.py --data ../shared/data/flavell_dag2023 --holdout 2022-01-16-01 [--frames 311] \
        [--batch-windows 64 16] [--json FILE]

Per held-out worm, with bench/finetune_loo.py's runs (`poco_warm_slow`, seed 0: the 8 other worms,
and all 9), exported to bundles here: the worm's first `--frames` frames (311, what an automatic
round waits for at C = 48, P = 16) go through `adapt_embeddings` as the server's fine-tune job runs
it, on one thread, from the zero-shot calibration (the bundle's unseen-unit embedding for every
unit). Printed: steps, the best step, CPU seconds (and per step), the held-out scores and the swap
verdict; then how the round's embeddings and the zero-shot ones forecast the worm's later frames,
every unit in the normalisation of the whole worm (offline, not what a live stream can know), with
the 9-worm model and the worm's own calibration (its embeddings and its normalisation) on the
same windows as the reference.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from poco_rt.bundle import Bundle, SessionCalibration
from poco_rt.frame_split import frames_to_decide
from poco_rt.models.adapt import UNIT_WINDOWS_PER_CALL, AdaptConfig, adapt_embeddings, load_network, score_windows
from poco_rt.models.export import export_bundle
from poco_rt.models.recording import load_recording
from poco_rt.normalisation import normalisation_of

VARIANT = "poco_warm_slow_seed0"


def zero_shot(bundle: Bundle, units: int) -> SessionCalibration:
    """A new animal's first calibration, as the server makes it: the unseen-unit embedding for every unit."""
    return SessionCalibration(
        name="worm.zero-shot",
        unit_ids=tuple(str(unit) for unit in range(units)),
        unit_embeddings=np.tile(bundle.unseen_unit_embedding(), (units, 1)),
        mean=np.zeros(units, np.float32),
        std=np.ones(units, np.float32),
    )


def later_frames_score(
    bundle: Bundle, every: np.ndarray, first: int, embeddings: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> float:
    """POCO's score of `embeddings` on every window whose targets lie at or after frame `first`."""
    context_frames, horizon = bundle.context_frames, bundle.horizon
    normalised = torch.from_numpy((every - mean) / std).float()
    starts = np.arange(first - context_frames, len(every) - context_frames - horizon + 1)
    return score_windows(load_network(bundle), normalised, starts, torch.from_numpy(embeddings), context_frames)


def one_worm(args: argparse.Namespace, worm: str, nine: Bundle, work: Path) -> list[dict]:
    every = load_recording(args.data).session(worm).traces.astype(np.float32)
    eight = export_bundle(args.runs / "loo" / worm / VARIANT, work / worm)
    (own,) = [name for name in nine.sessions if name not in eight.sessions]
    frames = args.frames or frames_to_decide(eight.context_frames, eight.horizon)
    baseline = zero_shot(eight, every.shape[1])
    whole_mean, whole_std = normalisation_of(every)
    reference = nine.session(own)
    nine_worm = later_frames_score(nine, every, frames, reference.unit_embeddings, reference.mean, reference.std)
    zero = later_frames_score(eight, every, frames, baseline.unit_embeddings, whole_mean, whole_std)
    results = []
    for batch in args.batch_windows:
        started = time.process_time()
        result = adapt_embeddings(
            eight,
            every[:frames],
            baseline=baseline,
            name="worm.adapted",
            config=AdaptConfig(batch_windows=batch, unit_windows_per_call=args.unit_windows_per_call),
        )
        cpu_s = time.process_time() - started
        embeddings = result.calibration.unit_embeddings
        row = {
            "worm": worm,
            "units": every.shape[1],
            "frames": frames,
            "batch_windows": min(batch, args.unit_windows_per_call // every.shape[1]),
            "steps": result.steps,
            "best_step": result.best_step,
            "cpu_s": cpu_s,
            "held_out": {"current": result.baseline_score, "candidate": result.candidate_score},
            "gain_p_value": result.gain_p_value,
            "swaps": result.improved,
            "later_frames": {
                "round": later_frames_score(eight, every, frames, embeddings, whole_mean, whole_std),
                "zero_shot": zero,
                "nine_worm": nine_worm,
            },
        }
        results.append(row)
        later, verdict, windows = row["later_frames"], "swaps" if result.improved else "kept", row["batch_windows"]
        print(f"{worm} N={row['units']} B={windows:>3}: {result.steps:>3} steps (best {result.best_step:>3}), "
              f"{cpu_s:6.1f} s CPU ({cpu_s / result.steps:.3f} s a step); held-out {result.baseline_score:+.4f} -> "
              f"{result.candidate_score:+.4f}, p = {result.gain_p_value:.3f}, {verdict}; "
              f"later frames: round {later['round']:+.4f}, zero-shot {zero:+.4f}, 9-worm {nine_worm:+.4f}",
              flush=True)  # fmt: skip
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flavell_dag2023"))
    parser.add_argument("--holdout", nargs="+", required=True, help="held-out worms (bench/finetune_loo.py's runs)")
    parser.add_argument("--runs", type=Path, default=Path("bench/runs"), help="bench/finetune_loo.py's runs")
    parser.add_argument("--frames", type=int, default=None, help="frames the round has (default: frames_to_decide)")
    parser.add_argument("--batch-windows", type=int, nargs="+", default=[64, 16])
    parser.add_argument(
        "--unit-windows-per-call",
        type=int,
        default=UNIT_WINDOWS_PER_CALL,
        help="the forward's cap in windows x units (65536: a round as it ran before the cap was lowered)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a job worker keeps to one core
    with tempfile.TemporaryDirectory(prefix="poco-rt-round-cost-") as work:
        nine = export_bundle(args.runs / "flavell" / VARIANT, Path(work) / "nine")
        rows = [row for worm in args.holdout for row in one_worm(args, worm, nine, Path(work))]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
