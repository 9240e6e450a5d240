"""poco-rt curve-keys: a ZeroMQ CURVE key pair, as the two certificate files the server and clients read.

NAME.key_secret holds both keys and stays with its owner; NAME.key holds the public key only and
is the one to hand out (poco_rt.server.curve.write_key_pair; docs/server.md, CURVE).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "make a ZeroMQ CURVE key pair (NAME.key public, NAME.key_secret secret) for the server or a client"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="folder to write the two files into (made if missing)")
    parser.add_argument("--name", default="server", help="file name stem: 'server', or a client's name such as 'rig1'")


def run(args: argparse.Namespace) -> int:
    from poco_rt.server.curve import write_key_pair

    public_file, secret_file = write_key_pair(args.out_dir, args.name)
    logger.info(
        "wrote %s: SECRET, it stays with its owner. A server's: poco-rt serve --curve-server-key-file %s; "
        "a client's: its public_key and secret_key (zmq.auth.load_certificate)", secret_file, secret_file,
    )  # fmt: skip
    logger.info(
        "wrote %s: public, hand it out. A server's: to every client, as server_public_key; "
        "a client's: into the server's --curve-clients-dir, which lets that client connect", public_file,
    )  # fmt: skip
    return 0
