"""Leave one animal out: train on the others, fine-tune embeddings only on the held-out one.

    python bench/finetune_loo.py --data ../shared/data/flavell_dag2023 --holdout 2022-07-26-31 --seed 0

Compares the fine-tuned model's test score on the held-out session with the score the same
variant and seed reach when that session was part of multi-session training (from
bench/flavell.py's runs, trained here if missing), and reports the fine-tune's wall and CPU time.
Resumable like bench/flavell.py: every training is a run directory under --runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from flavell import VARIANTS, run_one

from poco_rt.models.config import TrainConfig
from poco_rt.models.evaluation import evaluate_run
from poco_rt.models.finetune import FinetuneMode, finetune
from poco_rt.models.recording import load_recording


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flavell_dag2023"))
    parser.add_argument("--holdout", nargs="+", default=["2022-07-26-31"], help="sessions to hold out, one at a time")
    parser.add_argument("--variant", default="poco_warm", choices=[v for v in VARIANTS if v.startswith("poco")])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (1 when other jobs share the CPU)")
    parser.add_argument("--runs", type=Path, default=Path("bench/runs"))
    parser.add_argument("--results", type=Path, default=Path("bench/results/finetune_loo.json"))
    args = parser.parse_args()

    full = load_recording(args.data)
    variant = VARIANTS[args.variant]
    results = json.loads(args.results.read_text()) if args.results.exists() else []
    multi = (
        run_one(variant, args.seed, full, args.runs / "flavell", threads=args.threads)
        if variant.init_from_variant is None
        else None
    )
    if multi is None:
        run_one(VARIANTS[variant.init_from_variant], args.seed, full, args.runs / "flavell", threads=args.threads)
        multi = run_one(variant, args.seed, full, args.runs / "flavell", threads=args.threads)
    for holdout in args.holdout:
        others = dataclasses.replace(full, sessions=tuple(s for s in full.sessions if s.name != holdout))
        held_out = dataclasses.replace(full, sessions=(full.session(holdout),))
        runs = args.runs / "loo" / holdout
        if variant.init_from_variant:
            run_one(VARIANTS[variant.init_from_variant], args.seed, others, runs, threads=args.threads)
        run_one(variant, args.seed, others, runs, threads=args.threads)
        tuned = runs / f"{variant.name}_seed{args.seed}_finetuned"
        config = TrainConfig(
            steps=args.steps, eval_every=10, learning_rate=args.learning_rate, seed=args.seed, threads=args.threads
        )
        wall, cpu = time.perf_counter(), time.process_time()
        finetune(
            str(runs / f"{variant.name}_seed{args.seed}"),
            [held_out],
            str(tuned),
            mode=FinetuneMode.EMBEDDINGS,
            train_config=config,
            show_progress=False,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        score = evaluate_run(str(tuned), [held_out]).score
        reference = multi["session_scores"][holdout]
        result = {
            "variant": variant.name,
            "seed": args.seed,
            "holdout": holdout,
            "finetuned_score": score,
            "multi_session_score": reference,
            "ratio": score / reference,
            "finetune_wall_seconds": wall,
            "finetune_cpu_seconds": cpu,
            "steps": args.steps,
            "learning_rate": args.learning_rate,
        }
        results = [r for r in results if (r["variant"], r["seed"], r["holdout"]) != (variant.name, args.seed, holdout)]
        results.append(result)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=2))
        print(
            f"{holdout}: fine-tuned {score:.4f} vs multi-session {reference:.4f} ({100 * score / reference:.0f} %), "
            f"{wall:.0f} s wall, {cpu:.0f} s CPU",
            flush=True,
        )


if __name__ == "__main__":
    main()
