"""A closed-loop stimulation controller: trigger when a unit's forecast crosses a threshold.

    python clients/examples/stimulation_controller.py --session rig1 --unit 3 --threshold 0.8

It asks the server (REST) where its forecasts are published, subscribes over ZeroMQ, and checks
each forecast: if unit U is forecast to reach the threshold within the horizon, and the last
trigger is more than --refractory-frames ago, it calls `trigger`. Replace `trigger` with your
stimulator's call (a DAQ line, a serial command); it runs on the forecast's own loop, so keep it
short. A forecast's `timing.age_ms` says how old it is when it arrives (acquisition to here).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from poco_rt.clients import ForecastClient, ZmqForecastSubscriber

logger = logging.getLogger("stimulation_controller")


def first_step_at_or_above(forecast: np.ndarray, threshold: float) -> int | None:
    """forecast (P,) of one unit -> frames ahead (1..P) of its first value >= threshold, or None."""
    above = np.flatnonzero(forecast >= threshold)
    return int(above[0]) + 1 if above.size else None


def trigger(unit: int, frames_ahead: int) -> None:
    """The stimulator's call goes here."""
    logger.info("TRIGGER unit %d (crossing forecast %d frames ahead)", unit, frames_ahead)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8700", help="the server's HTTP address")
    parser.add_argument("--token", default=None, help="the server's bearer token, if it has one")
    parser.add_argument("--session", default="rig1", help="the stream to watch")
    parser.add_argument("--unit", type=int, default=0, help="the unit (column) to watch")
    parser.add_argument("--threshold", type=float, required=True, help="in the frames' raw units")
    parser.add_argument("--refractory-frames", type=int, default=20, help="no second trigger within this many frames")
    parser.add_argument("--max-triggers", type=int, default=0, help="stop after this many (0: run until Ctrl-C)")
    parser.add_argument("--idle-timeout", type=float, default=30.0, help="give up after this long without a forecast")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    with ForecastClient(args.server, token=args.token) as client:
        endpoint = client.endpoints().forecasts
    triggers, refractory_until = 0, -1
    with ZmqForecastSubscriber(endpoint, session=args.session, timeout_s=args.idle_timeout) as forecasts:
        logger.info("listening for %r forecasts on %s", args.session, endpoint)
        for frame_index, forecast, timing in forecasts:
            frames_ahead = first_step_at_or_above(forecast[args.unit], args.threshold)
            if frames_ahead is None or frame_index < refractory_until:
                continue
            trigger(args.unit, frames_ahead)
            logger.info("  after frame %d; forecast %.1f ms after acquisition", frame_index, timing.age_ms)
            triggers, refractory_until = triggers + 1, frame_index + args.refractory_frames
            if triggers == args.max_triggers:
                break
    logger.info("done: %d triggers", triggers)


if __name__ == "__main__":
    main()
