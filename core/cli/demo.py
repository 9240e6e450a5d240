"""poco-rt demo: a real server with the embedded bundle, fed a replayed recording, scored live.

Everything a rig would run, on this machine: `poco-rt serve` (in a thread, ports picked by the OS,
recordings in a temporary directory), FramePublisher sending the embedded simulator recording
(frames the bundle never saw) at its frame rate, and forecasts coming back over ZeroMQ.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "run a server with the embedded bundle, replay a simulated recording into it and show the live score"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the embedded one)")
    parser.add_argument("--session", default=None, help="recording session to replay (default: the first)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed (1: real time; 0: as fast as possible)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this much recording time")


def run(args: argparse.Namespace) -> int:
    import tempfile

    from rich.console import Console

    from poco_rt.cli.local_server import BackgroundServer
    from poco_rt.cli.replay_view import live_status, summary
    from poco_rt.clients.server_replay import connect_replay, read_session
    from poco_rt.resources import demo_recording_path
    from poco_rt.server.settings import ServerSettings

    session = read_session(demo_recording_path(), args.session)
    if not args.verbose:
        logging.getLogger("poco_rt.server").setLevel(logging.WARNING)  # the table is the readout
    console = Console()
    with tempfile.TemporaryDirectory(prefix="poco-rt-demo-") as data_dir:
        settings = ServerSettings(
            bundle=args.bundle,
            data_dir=Path(data_dir),
            http_port=0,
            frame_port=0,
            forecast_port=0,
            open_sessions={session.name: session.name},
        )
        with BackgroundServer(settings) as server:
            endpoints = server.runtime.endpoints
            console.print(f"server on {server.url}  (dashboard at /, API docs at /docs)")
            console.print(f"frames in on {endpoints.frames}, forecasts out on {endpoints.forecasts}")
            with (
                connect_replay(
                    session.traces,
                    session=session.name,
                    server_url=server.url,
                    rate_hz=session.frame_rate_hz * args.speed,
                    max_frames=max(1, round(args.seconds * session.frame_rate_hz)),
                ) as replay,
                live_status(console, title=f"poco-rt demo: session {session.name}") as show,
            ):
                replay.run(show)
    console.print(summary(replay.status))
    return 0
