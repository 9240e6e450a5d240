"""poco-rt export: write a run as a model bundle that the server loads without torch."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = (
    "export a POCO run to a model bundle (model.onnx, model.batched.onnx, model.encode.onnx, model.decode.onnx, "
    "sessions/*.npz, bundle.json)"
)
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory from poco-rt train or finetune")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory")
    parser.add_argument(
        "--data",
        type=Path,
        nargs="*",
        default=[],
        help="the run's recordings: their test scores are written into bundle.json",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write model.int8.onnx (dynamic int8 weights), served with `poco-rt serve --engine-int8`",
    )
    parser.add_argument(
        "--sessions-only",
        action="store_true",
        help="add an embeddings-only fine-tune's new sessions to the existing bundle at --out",
    )


def run(args: argparse.Namespace) -> int:
    from poco_rt.models.export import add_sessions_to_bundle, export_bundle

    for exporter_log in ("onnx_ir", "onnxscript"):  # an INFO line per initializer deduplicated, per node kept
        logging.getLogger(exporter_log).setLevel(logging.WARNING)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # "no torchvision"
    if args.sessions_only:
        bundle = add_sessions_to_bundle(args.run_dir, args.out)
    else:
        evaluation = None
        if args.data:
            from poco_rt.models.evaluation import evaluate_run
            from poco_rt.models.recording import load_recordings

            evaluation = evaluate_run(str(args.run_dir), load_recordings(args.data)).to_dict()
        bundle = export_bundle(args.run_dir, args.out, evaluation=evaluation, int8=args.int8)
    logger.info("bundle %s (version %s): sessions %s", bundle.path, bundle.version, sorted(bundle.sessions))
    return 0
