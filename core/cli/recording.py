"""poco-rt recording: offline work on a recording the server wrote (DATA_DIR/recordings/<session>/<start>-<n>/).

poco-rt recording export-nwb data/recordings/rig1/20261202T170000Z-0 rig1.nwb --metadata lab.json

export-nwb writes it as an NWB ophys file (poco_rt.models.nwb_export); it needs pynwb, which the
serving install does not have: pip install 'poco-rt[train]'.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "offline work on a server recording (export-nwb: as an NWB ophys file)"
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


def run(args: argparse.Namespace) -> int:
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
