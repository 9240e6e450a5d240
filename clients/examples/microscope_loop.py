"""A microscope's acquisition loop sending each frame to a poco-rt server (FramePublisher, pyzmq + numpy only).

    poco-rt serve --session rig1=sim00                       # a server whose stream rig1 uses bundle session sim00
    python clients/examples/microscope_loop.py --session rig1

The camera here is a stand-in that plays the embedded demo recording (sim00's 117 units) at the
frame rate; put your pipeline's per-frame ROI values, one (N,) array per frame, in its place.
`send` never holds the loop up: if the server is down or slow, frames queue (1000 by default)
and then are dropped and counted, and the publisher reconnects by itself.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from collections.abc import Iterator

import numpy as np

from poco_rt.clients import FramePublisher

logger = logging.getLogger("microscope_loop")


def stand_in_camera(rate_hz: float) -> Iterator[np.ndarray]:
    """One (N,) float32 frame at a time, paced like a camera (frame k at start + k / rate_hz), for ever."""
    from poco_rt.models.recording import load_recording  # the stand-in's data only; a rig has its own
    from poco_rt.resources import demo_recording_path

    traces = load_recording(demo_recording_path()).session("sim00").traces
    started = time.monotonic()
    for k in itertools.count():
        time.sleep(max(0.0, started + k / rate_hz - time.monotonic()))
        yield traces[k % len(traces)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:8701", help="the server's frame socket")
    parser.add_argument("--session", default="rig1", help="the stream name the server knows")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    deadline = time.monotonic() + args.seconds
    with FramePublisher(args.endpoint, session=args.session) as publisher:
        next_report = time.monotonic() + 1.0
        for frame in stand_in_camera(args.rate):
            publisher.send(frame)  # index counts from 0; the timestamp is time.time_ns() now
            if time.monotonic() >= next_report:
                stats = publisher.stats
                logger.info("sent %d frames, dropped %d", stats.sent, stats.dropped)
                next_report += 1.0
            if time.monotonic() >= deadline:
                break
        stats = publisher.stats
    logger.info("done: sent %d frames, dropped %d", stats.sent, stats.dropped)


if __name__ == "__main__":
    main()
