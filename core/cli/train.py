"""poco-rt train: train one model across every session of the given recordings.

The same command runs on several processes under torchrun (`torchrun --nproc-per-node 2 -m
poco_rt.cli.main train ...`): the ranks share each step's batch, and rank 0 alone writes --out.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from poco_rt.cli.options import add_train_options, log_result, train_config_from

HELP = "train POCO (or a baseline) on recordings; resumes if --out already holds this run"
PRESETS = ("paper", "small")
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="recordings: .npz, .h5, .nwb files or directories of them (one dataset each)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--model", choices=("poco", "mlp", "nlinear"), default="poco", help="model kind")
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="paper",
        help="paper: POCO's sizes (1.5 M parameters); small: a 0.6 M model for the embedded bundle",
    )
    parser.add_argument(
        "--film-gate",
        choices=("multiplicative", "residual"),
        default="multiplicative",
        help="POCO's FiLM gate: multiplicative (the paper: h*a+b, a starts at 0) or residual "
        "(h*(1+a)+b: starts as the plain MLP)",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="a finished run whose matching weights start this one (e.g. an MLP run for POCO)",
    )
    add_train_options(parser, default_steps=10_000)


def run(args: argparse.Namespace) -> int:
    from poco_rt.models.config import ModelConfig
    from poco_rt.models.distributed import join_process_group
    from poco_rt.models.recording import load_recordings
    from poco_rt.models.training import train

    recordings = load_recordings(args.data)
    sizes = {"mlp_hidden": 512, "ffn_hidden": 256, "self_attention_heads": 4} if args.preset == "small" else {}
    model_config = ModelConfig(kind=args.model, film_gate=args.film_gate, **sizes)
    with join_process_group() as group:
        if not group.is_main:
            logging.getLogger("poco_rt").setLevel(logging.WARNING)  # one voice per run: rank 0's
        result = train(
            recordings,
            str(args.out),
            model_config=model_config,
            train_config=train_config_from(args),
            sources=[str(p) for p in args.data],
            init_from=str(args.init_from) if args.init_from else None,
            show_progress=not args.quiet,
            group=group,
        )
        log_result(logger, result)
        if group.is_distributed:
            leave_run()
    return 0


def leave_run() -> None:
    """End a rank of a finished torchrun run at once, after every rank is done: gloo's connection threads,
    torn down at destroy or interpreter exit while a peer has already gone, can abort a process
    ("terminate called without an active exception", SIGABRT) whose run is complete and written."""
    import torch.distributed as dist

    dist.barrier()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
