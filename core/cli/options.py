"""Options several subcommands share."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from poco_rt.models.config import TrainConfig

if TYPE_CHECKING:
    from poco_rt.models.training import TrainResult


def add_train_options(parser: argparse.ArgumentParser, *, default_steps: int) -> None:
    defaults = TrainConfig()
    parser.add_argument("--steps", type=int, default=default_steps, help="optimiser steps")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (runs are deterministic on CPU)")
    parser.add_argument(
        "--batch-windows", type=int, default=defaults.batch_windows, help="windows per dataset per step"
    )
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=defaults.eval_every,
        help="validate every this many steps (the best validation checkpoint is kept)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many validations without a new best (0: run every step)",
    )
    parser.add_argument(
        "--streamed-share",
        type=float,
        default=defaults.streamed_share,
        help="share of windows normalised as a new animal's live stream is, over its recent frames, so that the "
        "network also forecasts animals it was not trained on well (0: POCO's recipe; docs/server.md, new animals)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def train_config_from(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        steps=args.steps,
        batch_windows=args.batch_windows,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        eval_every=args.eval_every,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
        streamed_share=args.streamed_share,
    )


def log_result(logger: logging.Logger, result: TrainResult) -> None:
    logger.info(
        "best validation loss %.4f at step %d (%.3f s/step)",
        result.best_validation_loss,
        result.best_step,
        result.seconds_per_step,
    )
