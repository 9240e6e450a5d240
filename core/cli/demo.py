"""poco-rt demo: the embedded bundle forecasting a replayed recording, with a live score."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

HELP = "replay a simulated recording through the embedded default bundle and show the live score"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the embedded one)")
    parser.add_argument("--session", default=None, help="bundle session to replay (default: the first)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1: real time; 0: as fast as possible)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this much recording time")


def status_table(status, copy_note: str) -> Table:
    table = Table(title=f"poco-rt demo: session {status.session}", show_header=False)
    table.add_row("frames replayed", str(status.frames))
    table.add_row("forecasts made", str(status.forecasts))
    table.add_row("score vs copy-last", f"{status.score:+.3f}  {copy_note}")
    table.add_row(
        "inference latency",
        f"median {status.latency_percentile(50):.2f} ms, p99 {status.latency_percentile(99):.2f} ms",
    )
    return table


def run(args: argparse.Namespace) -> int:
    from poco_rt.bundle import load_bundle
    from poco_rt.clients.local_replay import replay
    from poco_rt.models.recording import load_recording
    from poco_rt.resources import default_bundle_path, demo_recording_path
    from poco_rt.server.engine import Engine

    bundle = load_bundle(args.bundle or default_bundle_path())
    recording = load_recording(demo_recording_path())
    session = recording.session(args.session or recording.sessions[0].name)
    frames = min(session.num_frames, int(args.seconds * session.frame_rate_hz))
    engine = Engine(bundle)
    console = Console()
    note = "(0 = copy-last, 1 = perfect; POCO's metric, updated as targets arrive)"
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        status = replay(
            engine,
            session.name,
            session.traces[:frames],
            frame_rate_hz=session.frame_rate_hz,
            speed=args.speed,
            on_update=lambda s: live.update(status_table(s, note)),
        )
    console.print(
        f"{status.forecasts} forecasts over {status.frames} frames; live score {status.score:+.3f} against copy-last"
    )
    return 0
