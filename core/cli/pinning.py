"""poco-rt pinning: train a PINning rate network (Rajan, Harvey & Tank 2016), or sweep pVar against p.

poco-rt pinning --target bump --p 0.1 --out runs/pin    # the same as `poco-rt pinning train ...`
poco-rt pinning sweep --p 0,0.02,0.05,0.1,0.2,0.3,0.5,1 --seeds 2 --out runs/pin-sweep
poco-rt pinning sweep --scheduler tcp://HOST:8786 --seeds 20 --out runs/pin-sweep   # on a Dask cluster

A sweep's networks go to a Dask LocalCluster on 127.0.0.1 by default (models/pinning/cluster.py),
to a running cluster with --scheduler, or stay in this process with --scheduler none.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from poco_rt.models.pinning.config import PinningConfig

if TYPE_CHECKING:
    import numpy as np

    from poco_rt.models.pinning.targets import Target

HELP = "train a PINning rate network on a bump sequence or a recording ('sweep': pVar against p)"
MODES = ("train", "sweep")
SYNTHETIC_TARGETS = ("bump", "two-bump")
SWEEP_FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)  # the p values of Rajan, Harvey & Tank (2016)'s sweep
TRAIN_FRACTION = 0.1
SWEEP_SEEDS = 2
IN_PROCESS = "none"  # --scheduler none: no Dask, this process's threads
logger = logging.getLogger(__name__)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0,0.1,0.5, got {text!r}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Two modes, each with its own options and `--help`; `poco-rt pinning` alone is `poco-rt pinning train`."""
    modes = parser.add_subparsers(dest="mode", metavar="MODE")
    train = modes.add_parser(
        "train", help="one network (the default mode)", description=HELP, formatter_class=parser.formatter_class
    )
    sweep = modes.add_parser(
        "sweep",
        help="one network per --p value and seed, for the pVar-vs-p curve",
        description="PINning sweep: pVar against the plastic fraction p, seeds per p (Rajan, Harvey & Tank 2016)",
        formatter_class=parser.formatter_class,
    )
    _add_shared_arguments(train)
    train.add_argument(
        "--p",
        type=_fractions,
        default=(TRAIN_FRACTION,),
        metavar="P",
        help=f"plastic fraction of the synapses (default: {TRAIN_FRACTION})",
    )
    train.add_argument("--seed", type=int, default=PinningConfig().seed, help="network seed")
    _add_shared_arguments(sweep)
    sweep.add_argument(
        "--p",
        type=_fractions,
        default=SWEEP_FRACTIONS,
        metavar="P,P,...",
        help="plastic fractions, a comma list (default: " + ",".join(f"{p:g}" for p in SWEEP_FRACTIONS) + ")",
    )
    sweep.add_argument("--seed", type=int, default=PinningConfig().seed, help="the first seed")
    sweep.add_argument("--seeds", type=int, default=SWEEP_SEEDS, help="networks per p value: --seed, --seed + 1, ...")
    sweep.add_argument(
        "--scheduler",
        default=None,
        help="the Dask scheduler to send the networks to (tcp://HOST:8786); if not given, a LocalCluster "
        f"on 127.0.0.1; '{IN_PROCESS}': train them in this process (no Dask needed) (default: a LocalCluster)",
    )
    sweep.add_argument(
        "--workers",
        type=int,
        default=0,
        help="LocalCluster worker processes, or threads with --scheduler none (0: one per core); "
        "a running cluster has its own",
    )


def default_mode(argv: list[str]) -> list[str]:
    """`argv` after `pinning` with `train` put first where no mode (and no top-level --help) is given."""
    if argv and argv[0] in (*MODES, "-h", "--help"):
        return argv
    return ["train", *argv]


def _add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = PinningConfig()
    parser.add_argument(
        "--target", default="bump", help="bump, two-bump (a cued pair of sequences), or a recording (.npz/.h5/.nwb)"
    )
    parser.add_argument(
        "--units",
        default=None,
        help="bump, two-bump: the network size N (500 if not given); a recording: columns such as 0:100,120 "
        "(all if not given)",
    )
    parser.add_argument("--session", default=None, help="recording session to fit (the first if not given)")
    parser.add_argument("--start-s", type=float, default=0.0, help="recording: start of the window, in seconds")
    parser.add_argument(
        "--duration-s", type=float, default=None, help="recording: length of the window in seconds (to the end)"
    )
    parser.add_argument(
        "--frame-interval-s",
        type=float,
        default=None,
        help="recording: resample onto this data-frame interval (its own frame interval if not given)",
    )
    parser.add_argument("--runs", type=int, default=defaults.runs, help="passes over the trial, free ones included")
    parser.add_argument(
        "--free-runs", type=int, default=defaults.free_runs, help="final passes per condition without learning"
    )
    parser.add_argument(
        "--lesion-runs",
        type=int,
        default=defaults.lesion_runs,
        help="passes per condition and lesion (h = 0; J[:, C] reset) after training",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from poco_rt.models.pinning.analysis import connectivity_change
    from poco_rt.models.pinning.cluster import connect, import_distributed, local_workers, sweep_on_cluster
    from poco_rt.models.pinning.results import save_result
    from poco_rt.models.pinning.sweep import save_sweep, sweep
    from poco_rt.models.pinning.trainer import run_schedule, train_networks

    target = _target(args)
    base = PinningConfig(runs=args.runs, free_runs=args.free_runs, lesion_runs=args.lesion_runs, seed=args.seed)
    passes = len(run_schedule(base, target.num_conditions))
    if args.mode == "sweep":
        fractions = args.p
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        if args.workers < 0:
            raise ValueError(f"--workers must be >= 0 (0: one per core), got {args.workers}")
        seeds = range(args.seed, args.seed + args.seeds)
        if args.scheduler == IN_PROCESS:
            workers = args.workers or local_workers()
            with _progress(f"sweep {target.name}", passes * len(fractions) * args.seeds, args.quiet) as advance:
                result = sweep(target, fractions, seeds, base=base, workers=workers, on_run=advance)
        else:
            import_distributed()  # which sets Dask's loggers to INFO: its cluster start and stop are debug matters
            logging.getLogger("distributed").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
            with (
                connect(args.scheduler, workers=args.workers) as client,
                _progress(f"sweep {target.name} on Dask", len(fractions) * args.seeds, args.quiet) as advance,
            ):
                result = sweep_on_cluster(client, target, fractions, seeds, base=base, on_network=advance)
        save_sweep(result, args.out)
        _show_curve(result.curve(), target.name)
        return 0
    fractions = args.p
    if len(fractions) != 1:
        raise ValueError(f"--p {','.join(map(str, fractions))}: train takes one plastic fraction; use 'sweep' for more")
    config = dataclasses.replace(base, plastic_fraction=fractions[0])
    with _progress(f"PINning {target.name}, p = {fractions[0]:g}", passes, args.quiet) as advance:
        (result,) = train_networks(target, [config], on_run=advance)
    save_result(result, target, args.out)
    logger.info(
        "pVar %.3f over the free runs (h = 0 lesion: %s); ‖J - J0‖ / ‖J0‖ = %.3f; wrote %s",
        result.pvar,
        _format(result.lesion_input_pvar),
        connectivity_change(result.initial_weights, result.weights),
        args.out,
    )
    return 0


def _target(args: argparse.Namespace) -> Target:
    from poco_rt.models.pinning.targets import bump_target, recording_target, two_bump_target
    from poco_rt.models.recording import load_recording

    if args.target in SYNTHETIC_TARGETS:
        units = 500 if args.units is None else _unit_count(args.units)
        return bump_target(units) if args.target == "bump" else two_bump_target(units)
    units = None if args.units is None else _unit_selection(args.units)
    return recording_target(
        load_recording(args.target),
        session=args.session,
        units=units,
        start_s=args.start_s,
        duration_s=args.duration_s,
        frame_interval_s=args.frame_interval_s,
    )


def _unit_count(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise ValueError(f"--units {text!r}: a synthetic target takes the network size, a whole number >= 2")
    return int(text)


def _unit_selection(text: str) -> list[int]:
    """'0:100,120' -> [0, ..., 99, 120]: indices and half-open ranges of recording columns."""
    units: list[int] = []
    for part in text.split(","):
        bounds = part.split(":")
        if not all(b.strip().isdigit() for b in bounds) or len(bounds) > 2:
            raise ValueError(f"--units {text!r}: expected column indices and ranges like 0:100,120")
        units.extend(range(int(bounds[0]), int(bounds[1])) if len(bounds) == 2 else [int(bounds[0])])
    return units


def _format(values: np.ndarray) -> str:
    return f"{float(values.mean()):.3f}" if values.size else "not run"


@contextlib.contextmanager
def _progress(description: str, total: int, quiet: bool) -> Iterator[Callable[[object], None]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=quiet) as progress:
        task = progress.add_task(description, total=total)
        yield lambda _report: progress.advance(task)


def _show_curve(curve: list[dict[str, float]], name: str) -> None:
    table = Table(title=f"PINning {name}: pVar against the plastic fraction p")
    for column in ("p", "pVar mean", "pVar SD"):
        table.add_column(column, justify="right")
    for point in curve:
        table.add_row(f"{point['plastic_fraction']:g}", f"{point['pvar_mean']:.3f}", f"{point['pvar_sd']:.3f}")
    Console().print(table)
