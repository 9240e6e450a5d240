"""`poco-rt`: one entry point, one module per subcommand, each a thin layer over the library."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from poco_rt.errors import PocoRtError

SUBCOMMANDS = ("simulate", "train", "evaluate", "finetune", "export", "demo", "pinning", "serve", "replay")
SUBCOMMANDS += ("curve-keys",)  # its module: poco_rt.cli.curve_keys (a dash cannot name a module)
SUBCOMMANDS += ("recording",)  # offline work on the server's recordings: `poco-rt recording export-nwb`


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default is shown; one whose help already says it in words ("the embedded one") keeps those,
    and a required option, or one without a default, shows none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(default:" in (action.help or "") or action.required or action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poco-rt", description="Real-time neural forecasting with POCO.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"poco_rt.cli.{name.replace('-', '_')}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def with_default_mode(argv: list[str]) -> list[str]:
    """`argv` with the command's default mode put in where none is given: argparse's sub-commands cannot
    have one, so a command module with modes says its own (`default_mode(args) -> args`, as `pinning` does)."""
    command_at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    if command_at == len(argv) or argv[command_at] not in SUBCOMMANDS:
        return argv  # argparse says what is wrong
    module = importlib.import_module(f"poco_rt.cli.{argv[command_at].replace('-', '_')}")
    if not hasattr(module, "default_mode"):
        return argv
    return [*argv[: command_at + 1], *module.default_mode(argv[command_at + 1 :])]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(with_default_mode(sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is a debug matter
    try:
        return args.handler(args) or 0
    except (ValueError, FileNotFoundError, PocoRtError) as exc:  # a bad input or a missing extra, said in one line
        logging.getLogger("poco_rt").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
