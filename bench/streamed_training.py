"""Leave one worm out: does training on streamed windows help a new animal's zero-shot forecasts?

For each held-out worm, its 8-worm model (bench/finetune_loo.py's run of the variant) is trained
on for --steps more steps two ways, from the same weights and with the same recipe otherwise:

    continued   every window in its session's normalisation (POCO's recipe, as the run was trained)
    streamed    --streamed-share of the windows normalised as a new animal's live stream is (over its
                recent frames, the server's own schedule: poco_rt.normalisation.stream_estimate_span)

Each model, the one trained on from included, is exported as a bundle and scored, through
onnxruntime as the server runs it:

    new animal, as served    the held-out worm forecast zero-shot at every frame from its first full
                             context (the unseen-unit embedding for every unit, the stream's own
                             normalisation as the server estimates it), scored in the z-units of the
                             whole worm with POCO's metric
    new animal, whole worm   the same with the whole worm's normalisation (not available live: the bound)
    8 worms, test split      POCO's score on the worms the model was trained on (their calibrations)

and, as the reference, the 9-worm model (the variant's run on all 9) on the same frames with the worm's
own calibration (its learned embeddings and whole-worm normalisation), as a server serves a known worm.

Resumable: the runs are directories under --runs/loo/WORM. Usage:

    python bench/streamed_training.py --data ../shared/data/flavell_dag2023 --holdout 2022-01-16-01 [...] \
        [--steps 300] [--streamed-share 0.5] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from zero_shot_normalisation import as_served, whole_recording, zero_shot_score

from poco_rt.bundle import load_bundle
from poco_rt.models.evaluation import evaluate_run
from poco_rt.models.export import export_bundle
from poco_rt.models.recording import load_recording
from poco_rt.models.run_directory import RunDirectory
from poco_rt.models.training import train
from poco_rt.server.engine import Engine


def train_on(base: Path, out: Path, others, *, steps: int, streamed_share: float, threads: int) -> Path:
    """`base` trained on for `steps` more steps (its recipe otherwise), in `out`; resumes an unfinished one."""
    run = RunDirectory(base)
    if not (out.exists() and RunDirectory(out).manifest().get("status") == "finished"):
        config = dataclasses.replace(
            run.train_config, steps=steps, patience=0, streamed_share=streamed_share, threads=threads
        )
        train([others], str(out), model_config=run.model_config, train_config=config, sources=[others.name],
              init_from=str(base), show_progress=False)  # fmt: skip
    return out


@contextlib.contextmanager
def exported(run: Path) -> Iterator[Engine]:
    """An engine on `run` exported as a bundle (into a folder removed afterwards), as the server runs it."""
    with tempfile.TemporaryDirectory() as scratch:
        yield Engine(load_bundle(export_bundle(run, Path(scratch) / "bundle").path))


def scores(run: Path, others, frames: np.ndarray) -> dict[str, float]:
    with exported(run) as engine:
        context_frames = engine.bundle.context_frames
        return {
            "new animal, as served": zero_shot_score(engine, frames, list(as_served(frames, context_frames))),
            "new animal, whole worm": zero_shot_score(engine, frames, list(whole_recording(frames, context_frames))),
            "8 worms, test split": evaluate_run(str(run), [others]).score,
            "best step": RunDirectory(run).manifest().get("best_step"),
        }


def nine_worm_score(run: Path, worm: str, frames: np.ndarray) -> float:
    """The 9-worm model on every frame of `worm` from its first full context, with the worm's own calibration."""
    with exported(run) as engine:
        calibration = engine.bundle.session(worm)
        own = [(calibration.mean, calibration.std)] * len(frames)
        return zero_shot_score(engine, frames, own, embeddings=calibration.unit_embeddings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--holdout", nargs="+", required=True, help="worms, one at a time")
    parser.add_argument("--runs", type=Path, default=Path("bench/runs"))
    parser.add_argument("--variant", default="poco_warm_slow_seed0", help="the 8-worm run under --runs/loo/WORM")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--streamed-share", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    full = load_recording(args.data)
    results = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    for worm in args.holdout:
        others = dataclasses.replace(full, sessions=tuple(s for s in full.sessions if s.name != worm))
        frames = full.session(worm).traces.astype(np.float64)
        base = args.runs / "loo" / worm / args.variant
        runs = {
            "as trained": base,
            f"continued {args.steps}": train_on(base, Path(f"{base}_continued{args.steps}"), others,
                                                steps=args.steps, streamed_share=0.0, threads=args.threads),
            f"streamed {args.steps}": train_on(base, Path(f"{base}_streamed{args.steps}"), others,
                                               steps=args.steps, streamed_share=args.streamed_share,
                                               threads=args.threads),
        }  # fmt: skip
        results[worm] = {name: scores(run, others, frames) for name, run in runs.items()}
        reference = nine_worm_score(args.runs / "flavell" / args.variant, worm, frames)
        print(f"{worm}  9-worm model, its own calibration: {reference:+.4f}", flush=True)
        results[worm]["9-worm model, own calibration"] = {"new animal, as served": reference}
        for name, row in results[worm].items():
            print(f"{worm}  {name:<14} " + "  ".join(
                f"{key} {value:+.4f}" if isinstance(value, float) else f"{key} {value}" for key, value in row.items()
            ), flush=True)  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
