"""poco-rt replay: stream a recording to a running server as a microscope would, with a live score."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "stream a recording (.npz, HDF5, NWB) to a running server in real time and show the live forecast score"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from poco_rt.clients.rest_calls import DEFAULT_SERVER_URL
    from poco_rt.clients.server_replay import ForecastChannel

    parser.add_argument("file", type=Path, metavar="FILE", help="the recording to replay")
    parser.add_argument("--session", default=None, help="the recording's session to replay (default: its first)")
    parser.add_argument("--stream", default=None, help="stream name the frames carry (default: the session's name)")
    parser.add_argument(
        "--calibration", default=None, help="bundle session to open the stream with (default: the stream's name)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="HZ",
        help="frames per second (default: the recording's; 0: flat out)",
    )
    parser.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    parser.add_argument(
        "--seconds", type=float, default=None, help="stop after this much recording time (default: all)"
    )
    parser.add_argument("--server", default=DEFAULT_SERVER_URL, help="the server's HTTP address")
    parser.add_argument("--token", default=None, help="the server's bearer token, if it has one (default: none)")
    parser.add_argument(
        "--via",
        type=ForecastChannel,
        choices=list(ForecastChannel),
        default=ForecastChannel.ZMQ,
        help="how forecasts come back",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from poco_rt.cli.replay_view import live_status, summary
    from poco_rt.clients.server_replay import connect_replay, read_session

    session = read_session(args.file, args.session)
    stream = args.stream or session.name
    rate_hz = session.frame_rate_hz if args.rate is None else args.rate
    max_frames = None if args.seconds is None else max(1, round(args.seconds * session.frame_rate_hz))
    console = Console()
    console.print(
        f"replaying {args.file} session {session.name!r} ({session.num_units} units) as stream {stream!r} "
        f"to {args.server} at {rate_hz:g} Hz"
    )
    with connect_replay(
        session.traces,
        session=stream,
        calibration=args.calibration,
        server_url=args.server,
        token=args.token,
        rate_hz=rate_hz,
        loop=args.loop,
        max_frames=max_frames,
        channel=args.via,
    ) as replay:
        try:
            with live_status(console, title=f"poco-rt replay: stream {stream}") as show:
                replay.run(show)
        except KeyboardInterrupt:
            console.print("stopped")
    console.print(summary(replay.status))
    return 0
