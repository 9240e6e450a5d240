"""poco-rt finetune: adapt a trained model to new recordings.

A new animal that a server recorded is adapted from its recording folder and the served bundle
instead, by `poco-rt recording finetune` (the same embeddings-only fine-tune the server runs live).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from poco_rt.cli.options import add_train_options, log_result, train_config_from

HELP = (
    "fine-tune a trained run to new recordings (embeddings only, + MLP, or all weights); "
    "a server's recording of a new animal: `poco-rt recording finetune`"
)
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="the trained run to start from")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="the new recordings")
    parser.add_argument("--out", type=Path, required=True, help="run directory of the fine-tuned model")
    parser.add_argument(
        "--mode",
        choices=("embeddings", "mlp", "all"),
        default="embeddings",
        help="what learns: embeddings only (the bundle's network stays), + the MLP, or all",
    )
    add_train_options(parser, default_steps=2_000)


def run(args: argparse.Namespace) -> int:
    from poco_rt.models.finetune import FinetuneMode, finetune
    from poco_rt.models.recording import load_recordings

    result = finetune(
        str(args.run_dir),
        load_recordings(args.data),
        str(args.out),
        mode=FinetuneMode(args.mode),
        train_config=train_config_from(args),
        show_progress=not args.quiet,
    )
    log_result(logger, result)
    return 0
