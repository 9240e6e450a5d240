"""poco-rt simulate: write a simulated multi-session recording (the project's own data)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

HELP = "simulate a chaotic rate network observed through calcium, as a multi-session .npz recording"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    parser.add_argument("--sessions", type=int, default=4, help="animals (sessions) to simulate")
    parser.add_argument("--frames", type=int, default=3000, help="frames per session")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed: the same seed and frame counts give the same data (each animal's observed units are "
        "drawn after its dynamics, so their count depends on --frames + --holdout-frames)",
    )
    parser.add_argument(
        "--holdout-frames",
        type=int,
        default=0,
        help="also write the last K frames of every session to OUT.holdout.npz, "
        "kept out of OUT (the demo replays them)",
    )


def run(args: argparse.Namespace) -> int:
    from poco_rt.models.recording import split_recording_at
    from poco_rt.models.simulator import simulate_recording

    recording = simulate_recording(sessions=args.sessions, frames=args.frames + args.holdout_frames, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.holdout_frames:
        recording, holdout = split_recording_at(recording, args.frames)
        holdout_path = args.out.with_suffix(".holdout.npz")
        holdout.save_npz(holdout_path)
        logger.info("wrote %s: the last %d frames of each session", holdout_path, args.holdout_frames)
    recording.save_npz(args.out)
    units = ", ".join(f"{s.name} {s.traces.shape[1]}" for s in recording.sessions)
    logger.info("wrote %s: %d sessions x %d frames; units: %s", args.out, len(recording.sessions), args.frames, units)
    return 0
