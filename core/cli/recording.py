"""poco-rt recording: offline work on a recording the server wrote (DATA_DIR/recordings/<session>/<start>-<n>/).

poco-rt recording export-nwb data/recordings/rig1/20261202T170000Z-0 rig1.nwb --metadata lab.json
poco-rt recording finetune data/recordings/fish7/20261202T170000Z-0 --out bundles/fish7

export-nwb writes it as an NWB ophys file (poco_rt.models.nwb_export); finetune adapts a new
animal's unit embeddings to it, as the server's fine-tune job does live, and writes a new bundle
version (poco_rt.models.adapt_recording). Both need the train extra (pynwb, torch), which the
serving install does not have: pip install 'poco-rt[train]'.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from poco_rt.errors import MissingExtra

HELP = "offline work on a server recording (export-nwb: as an NWB ophys file; finetune: adapt a new animal to it)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export-nwb",
        help="write one recording as an NWB ophys file (RoiResponseSeries with acquisition times, unit ids, model)",
        description="Write one recording as an NWB ophys file; needs pynwb (pip install 'poco-rt[train]').",
        formatter_class=parser.formatter_class,
    )
    export.add_argument(
        "recording_dir", type=Path, help="the recording: a folder DATA_DIR/recordings/<session>/<start>-<n>/"
    )
    export.add_argument("out", type=Path, help="the NWB file to write (its name ends in .nwb)")
    export.add_argument(
        "--metadata",
        type=Path,
        default=None,
        help="a JSON object of what the recording does not know (subject_id, species, sex, age, indicator, "
        "location, excitation_lambda_nm, ...: poco_rt.models.nwb_export.NwbMetadata) (default: none)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_finetune_arguments(actions, formatter_class=parser.formatter_class)


def add_finetune_arguments(actions: argparse._SubParsersAction, *, formatter_class: type) -> None:
    from poco_rt.server.adaptation import FinetuneOptions

    defaults = FinetuneOptions()
    finetune = actions.add_parser(
        "finetune",
        help="fine-tune a new animal's unit embeddings on its recording (network frozen) into a new bundle version",
        description="Fine-tune the recorded stream's unit embeddings (the network frozen) on the first 60 % of its "
        "frames, early-stopped on the next 20 %, scored against the calibration it streamed with on the last 20 %; "
        "the result goes into a new bundle version. Needs torch (pip install 'poco-rt[train]').",
        formatter_class=formatter_class,
    )
    finetune.add_argument(
        "recording_dir", type=Path, help="the recording: a folder DATA_DIR/recordings/<session>/<start>-<n>/"
    )
    finetune.add_argument("--out", type=Path, required=True, help="the new bundle version's directory (new or empty)")
    finetune.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="the bundle to adapt (default: the one the recording names, which the stream forecast with)",
    )
    finetune.add_argument(
        "--name", default=None, help="the new calibration's name (default: SESSION.RECORDING, after the folders)"
    )
    finetune.add_argument("--max-steps", type=int, default=defaults.max_steps, help="training steps at most")
    finetune.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="AdamW's")
    finetune.add_argument(
        "--patience", type=int, default=defaults.patience, help="validations (every 10 steps) without improvement"
    )
    finetune.add_argument("--seed", type=int, default=0, help="of the training windows' draw")


def run(args: argparse.Namespace) -> int:
    if args.action == "finetune":
        return run_finetune(args)
    from poco_rt.models.nwb_export import NwbMetadata, export_nwb

    metadata = NwbMetadata.from_json(args.metadata) if args.metadata else NwbMetadata()
    written = export_nwb(args.recording_dir, args.out, metadata=metadata, overwrite=args.overwrite)
    logger.info(
        "wrote %s: %d frames of %d units (%d frame indices missing between the first and the last)",
        written.path,
        written.frames,
        written.units,
        written.missing_frames,
    )
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    try:
        from poco_rt.models.adapt import AdaptConfig
        from poco_rt.models.adapt_recording import finetune_recording
    except ImportError as error:
        raise MissingExtra(f"fine-tuning needs torch ({error}): pip install 'poco-rt[train]'") from error

    def on_validation(step: int, score: float, best_step: int) -> None:
        logger.info("step %d: validation score %.4f (best at step %d)", step, score, best_step)

    config = AdaptConfig(
        max_steps=args.max_steps, learning_rate=args.learning_rate, patience=args.patience, seed=args.seed
    )
    adapted = finetune_recording(
        args.recording_dir,
        args.out,
        bundle_path=args.bundle,
        name=args.name,
        config=config,
        on_validation=on_validation,
    )
    result = adapted.result
    start, stop = result.parts.held_out
    logger.info(
        "held-out frames %d..%d, POCO's score (copy-last scores 0): %s %.4f, %s %.4f (best step %d of %d)",
        start, stop, result.calibration.name, result.candidate_score, adapted.baseline_name,
        result.baseline_score, result.best_step, result.steps,
    )  # fmt: skip
    logger.info("%s", adapted.reason)
    logger.info(
        "wrote bundle version %s; open the animal with it: poco-rt serve --bundle %s --session STREAM=%s",
        adapted.bundle.path, adapted.bundle.path, result.calibration.name,
    )  # fmt: skip
    return 0
