"""poco-rt evaluate: POCO's test score per session and overall, beside copy-last."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

HELP = "score a run on POCO's test split (score = 1 - MSE_model / MSE_copy-last)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory from poco-rt train or finetune")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="the recordings the run was trained on")
    parser.add_argument("--split", choices=("test", "validation"), default="test", help="which split to score")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from poco_rt.models.evaluation import evaluate_run
    from poco_rt.models.recording import load_recordings
    from poco_rt.models.splits import Split

    evaluation = evaluate_run(str(args.run_dir), load_recordings(args.data), split=Split(args.split))
    if args.json:
        sys.stdout.write(json.dumps(evaluation.to_dict(), indent=2) + "\n")
        return 0
    table = Table(title=f"{args.run_dir} on the {args.split} split")
    for column in ("dataset", "session", "windows", "MSE model", "MSE copy-last", "score"):
        table.add_column(column, justify="right" if column not in ("dataset", "session") else "left")
    for s in evaluation.sessions:
        table.add_row(s.dataset, s.session, str(s.windows), f"{s.model_mse:.4f}", f"{s.copy_mse:.4f}", f"{s.score:.4f}")
    table.add_row("mean", "", "", "", "", f"{evaluation.score:.4f}")
    Console().print(table)
    return 0
