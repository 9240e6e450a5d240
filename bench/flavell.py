"""POCO against its baselines on a real multi-session recording, several seeds, POCO's split and metric.

    python bench/flavell.py --data ../shared/data/flavell_dag2023 --seeds 0 1 2

Every (variant, seed) is one run directory under --runs; a finished run is skipped and an
interrupted one resumes from its checkpoint, so the script can be stopped and restarted at will,
and several copies (say one per seed, --threads 1 each) can share a machine. Each run's result is
one JSON file under --results; the summary table (mean ± 95 % CI over seeds, t-distribution) of
every result there is printed at the end (`--summary` prints only that).

Variants (all trained by the same loop, best-validation checkpoint, tested once):
- nlinear, mlp: the baselines, up to 10k steps (POCO's multi-session budget), validated every
  100, patience 10.
- poco: the published recipe (multiplicative FiLM gate, random init), validated every 20 steps,
  patience 10: the reference overfits after ~60-100 steps, so the recipe's 100-step validation
  misses its best point.
- poco_warm: POCO with the residual FiLM gate (h * (1 + alpha) + beta), its forecaster started from
  the same seed's trained MLP: the model begins as the MLP and the population conditioning can only
  be kept where it lowers validation loss.
- poco_warm_ud: poco_warm with unit dropout 0.5 in the population encoder (training only).
- poco_warm_slow: poco_warm at a tenth of the learning rate (3e-5), patience 15.
- poco_warm_anonymous: poco_warm without unit embeddings (one FiLM modulation per session state).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from poco_rt.models.config import FilmGate, ModelConfig, ModelKind, TrainConfig
from poco_rt.models.evaluation import evaluate_run, mean_confidence_interval
from poco_rt.models.recording import load_recording
from poco_rt.models.run_directory import RunDirectory
from poco_rt.models.training import train


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    model: ModelConfig
    train: TrainConfig
    init_from_variant: str | None = None


VARIANTS = {
    "mlp": Variant("mlp", ModelConfig(kind=ModelKind.MLP), TrainConfig(steps=10_000, eval_every=100, patience=10)),
    "nlinear": Variant(
        "nlinear", ModelConfig(kind=ModelKind.NLINEAR), TrainConfig(steps=10_000, eval_every=100, patience=10)
    ),
    "poco": Variant("poco", ModelConfig(), TrainConfig(steps=2_000, eval_every=20, patience=10)),
    "poco_warm": Variant(
        "poco_warm",
        ModelConfig(film_gate=FilmGate.RESIDUAL),
        TrainConfig(steps=2_000, eval_every=20, patience=10),
        init_from_variant="mlp",
    ),
    "poco_warm_slow": Variant(
        "poco_warm_slow",
        ModelConfig(film_gate=FilmGate.RESIDUAL),
        TrainConfig(steps=2_000, eval_every=20, patience=15, learning_rate=3e-5),
        init_from_variant="mlp",
    ),
    "poco_warm_anonymous": Variant(
        "poco_warm_anonymous",
        ModelConfig(film_gate=FilmGate.RESIDUAL, unit_embeddings=False),
        TrainConfig(steps=2_000, eval_every=20, patience=10),
        init_from_variant="mlp",
    ),
    "poco_warm_ud": Variant(
        "poco_warm_ud",
        ModelConfig(film_gate=FilmGate.RESIDUAL, unit_dropout=0.5),
        TrainConfig(steps=2_000, eval_every=20, patience=10),
        init_from_variant="mlp",
    ),
}


def run_one(variant: Variant, seed: int, recording, runs: Path, *, threads: int = 0) -> dict:
    run_path = runs / f"{variant.name}_seed{seed}"
    run = RunDirectory(run_path)
    started = time.perf_counter()
    if not (run.exists and run.manifest().get("status") == "finished"):
        init_from = None
        if variant.init_from_variant:
            init_from = str(runs / f"{variant.init_from_variant}_seed{seed}")
            if RunDirectory(init_from).manifest().get("status") != "finished":
                raise RuntimeError(f"{init_from} is not finished; run the {variant.init_from_variant} variant first")
        train(
            [recording],
            str(run_path),
            model_config=variant.model,
            train_config=dataclasses.replace(variant.train, seed=seed, threads=threads),
            sources=[recording.name],
            init_from=init_from,
            show_progress=False,
        )
    evaluation = evaluate_run(str(run_path), [recording])
    manifest = run.manifest()
    return {
        "variant": variant.name,
        "seed": seed,
        "score": evaluation.score,
        "session_scores": {s.session: s.score for s in evaluation.sessions},
        "best_step": manifest["best_step"],
        "seconds_per_step": manifest["seconds_per_step"],
        "wall_seconds_this_call": time.perf_counter() - started,
    }


def summary(results: list[dict]) -> list[str]:
    lines = [
        "| variant | seeds | test score, mean ± 95 % CI | per seed | best steps | s/step |",
        "|---|---|---|---|---|---|",
    ]
    by_variant: dict[str, list[dict]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    for name, rows in by_variant.items():
        mean, half_width = mean_confidence_interval([r["score"] for r in rows])
        seeds = ", ".join(f"{r['score']:.4f}" for r in rows)
        steps = ", ".join(str(r["best_step"]) for r in rows)
        speed = sum(r["seconds_per_step"] for r in rows) / len(rows)
        lines.append(f"| {name} | {len(rows)} | {mean:.4f} ± {half_width:.4f} | {seeds} | {steps} | {speed:.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flavell_dag2023"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["mlp", "poco_warm", "nlinear", "poco"], choices=VARIANTS)
    parser.add_argument("--runs", type=Path, default=Path("bench/runs/flavell"))
    parser.add_argument("--results", type=Path, default=Path("bench/results/flavell"))
    parser.add_argument("--summary", action="store_true", help="only print the table of the results so far")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (1 when other jobs share the CPU)")
    args = parser.parse_args()

    args.results.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        recording = load_recording(args.data)
        for seed in args.seeds:
            for name in args.variants:
                path = args.results / f"{name}_seed{seed}.json"
                if path.exists():
                    continue
                result = run_one(VARIANTS[name], seed, recording, args.runs, threads=args.threads)
                path.write_text(json.dumps(result, indent=2))
                print(f"{name} seed {seed}: score {result['score']:.4f} (best step {result['best_step']})", flush=True)
    results = [json.loads(p.read_text()) for p in sorted(args.results.glob("*.json"))]
    print("\n".join(summary(sorted(results, key=lambda r: (r["variant"], r["seed"])))))


if __name__ == "__main__":
    main()
