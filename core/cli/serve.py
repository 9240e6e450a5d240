"""poco-rt serve: the real-time server (ZeroMQ frames in; forecasts out on ZeroMQ, REST and WebSocket).

Every server setting is a flag, made from poco_rt.server.settings.ServerSettings so the two
never drift apart. A flag that is not given is not passed on, so the environment (POCO_RT_*)
and the --config-file TOML can still set it; precedence is flags, environment, file, defaults.
"""

from __future__ import annotations

import argparse
import enum
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poco_rt.server.settings import ServerSettings

HELP = "serve forecasts in real time: frames in over ZeroMQ, forecasts out over ZeroMQ PUB, REST and WebSocket"
SPECIAL_FIELDS = ("open_sessions", "new_animals", "auto_adapt", "auth_token")  # flags of their own below


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from poco_rt.server.adaptation import AutoAdapt
    from poco_rt.server.settings import ServerSettings

    for name, field in ServerSettings.model_fields.items():
        if name in SPECIAL_FIELDS:
            continue
        default = "the embedded bundle" if name == "bundle" else _shown(field.default)
        options = {"dest": name, "default": argparse.SUPPRESS, "help": f"{field.description} (default: {default})"}
        kind = _plain_type(field.annotation)
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            options |= {"type": kind, "choices": list(kind)}
        elif typing.get_origin(kind) is list:
            options |= {"type": typing.get_args(kind)[0], "nargs": "+"}
        else:
            options["type"] = kind
        parser.add_argument(f"--{name.replace('_', '-')}", **options)
    parser.add_argument(
        "--session",
        dest="open_sessions",
        action="append",
        default=argparse.SUPPRESS,
        metavar="NAME[=CALIBRATION] | NAME:UNITS",
        help="open this stream at start: NAME=CALIBRATION with that bundle session (NAME alone: the session of "
        "the same name), NAME:UNITS as a new animal of UNITS units (zero-shot, then fine-tuned live); "
        "repeatable, and the streams given here replace those of the environment and the config file "
        "(default: none)",
    )
    auto = AutoAdapt()
    parser.add_argument(
        "--adapt",
        dest="auto_adapt",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help=f"fine-tune the NAME:UNITS streams by themselves as they record: the first round after "
        f"{auto.after_s:g} s of acquisition, the next each time the recording grew {auto.growth:g}x, at most "
        f"{auto.max_rounds} rounds; the job workers need the train extra (torch) (default: off)",
    )
    parser.add_argument(
        "--auth-token",
        dest="auth_token",
        default=argparse.SUPPRESS,
        help="bearer token for REST/WebSocket (prefer POCO_RT_AUTH_TOKEN: flags show in `ps`) (default: none)",
    )


def run(args: argparse.Namespace) -> int:
    from poco_rt.server.serve import serve

    serve(settings_from(args))
    return 0


def settings_from(args: argparse.Namespace) -> ServerSettings:
    """The flags that were given, over the environment, the config file and the defaults."""
    from pydantic import ValidationError

    from poco_rt.server.settings import ServerSettings

    overrides = {name: value for name, value in vars(args).items() if name in ServerSettings.model_fields}
    if "open_sessions" in overrides:
        specs = overrides.pop("open_sessions")
        overrides["open_sessions"] = dict(_session_pair(spec) for spec in specs if ":" not in spec)
        overrides["new_animals"] = dict(_new_animal(spec) for spec in specs if ":" in spec)
    try:
        return ServerSettings(**overrides)
    except ValidationError as error:
        # pydantic's own text quotes the input, which holds the auth token: only the reasons go to the log
        reasons = "; ".join(_reason(detail) for detail in error.errors(include_input=False, include_url=False))
        raise ValueError(f"the server settings are invalid: {reasons}") from None


def _reason(detail: dict) -> str:
    field = ".".join(str(part) for part in detail["loc"])
    message = detail["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def _session_pair(spec: str) -> tuple[str, str]:
    name, _, calibration = spec.partition("=")
    return name, calibration or name


def _new_animal(spec: str) -> tuple[str, int]:
    """`fish7:312` -> ("fish7", 312); a stream name never holds a colon, so the two forms cannot be confused."""
    name, _, units = spec.partition(":")
    if not (units.isascii() and units.isdigit()):
        raise ValueError(f"--session {spec}: after the colon comes the new animal's unit count, like fish7:312")
    return name, int(units)


def _plain_type(annotation: typing.Any) -> typing.Any:
    """The argparse type of a settings field: `Path | None` -> Path; SecretStr and the like -> str (pydantic parses)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if typing.get_origin(annotation) is list:
        return annotation  # list[int] -> nargs="+" of int
    if annotation in (bool, int, float, str, Path) or (
        isinstance(annotation, type) and issubclass(annotation, enum.Enum)
    ):
        return annotation
    return str


def _shown(value: typing.Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    return "none" if value is None else str(value)
