"""Import boundaries and the command line: the server runs without torch, its API calls the runtime's
operations only; `poco-rt serve` maps flags to settings."""

from __future__ import annotations

import re
from pathlib import Path

import poco_rt.server
from poco_rt.cli.main import build_parser
from poco_rt.cli.serve import settings_from
from poco_rt.server.runtime import ServerRuntime
from poco_rt.server.settings import FrameSocketKind
from tests.torchless import BLOCK_TORCH, run_child

TORCHLESS_SERVER = (
    BLOCK_TORCH
    + """
import json
import poco_rt.wire
wire_only = sorted(m for m in ("fastapi", "zmq", "torch") if m in sys.modules)
from poco_rt.server.app import create_app
from poco_rt.server.settings import ServerSettings
import poco_rt.server.serve, poco_rt.server.recording_files
ports = dict(http_port=0, frame_port=0, forecast_port=0, grpc_port=0)  # gRPC too: the grpc extra's path
settings = ServerSettings(bundle=sys.argv[1], data_dir=sys.argv[2], **ports)
app = create_app(settings)
app.state.runtime.start(None)  # what the lifespan does: load the bundle, start the threads, bind the sockets
app.state.runtime.open_session("sim00")
app.state.runtime.stop()
paths = sorted(app.openapi()["paths"])
print(json.dumps({"wire_imports": wire_only, "torch_loaded": "torch" in sys.modules, "paths": paths}))
"""
)


def test_the_server_imports_starts_and_stops_without_torch(served_bundle: Path, tmp_path: Path):
    reply = run_child(TORCHLESS_SERVER, str(served_bundle), str(tmp_path))
    assert reply["torch_loaded"] is False
    assert reply["wire_imports"] == []  # the wire module needs neither fastapi nor zmq nor torch
    assert {"/v1/sessions", "/v1/sessions/{name}/forecast", "/v2/models/{model_name}/infer"} <= set(reply["paths"])


def test_the_api_and_grpc_call_only_the_runtimes_operations():
    """Every `runtime.<name>` in server/api/ and the gRPC endpoint is a public member of ServerRuntime: its
    parts (sessions, bundles, ingest, hub, jobs, ...) are private, so no caller reaches past an operation."""
    server = Path(poco_rt.server.__file__).parent
    sources = [*sorted((server / "api").glob("*.py")), server / "grpc_endpoint.py"]
    used = {name for path in sources for name in re.findall(r"\b_?runtime\.([A-Za-z_]+)", path.read_text())}
    operations = {name for name in dir(ServerRuntime) if not name.startswith("_")}
    assert used, "no runtime call found: the pattern no longer matches how the routes are written"
    assert used <= operations, f"not operations of ServerRuntime: {sorted(used - operations)}"


def test_serve_flags_become_settings_and_unset_flags_leave_room_for_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POCO_RT_MAX_SESSIONS", "3")
    args = build_parser().parse_args(
        [
            "serve",
            "--bundle",
            str(tmp_path),
            "--http-port",
            "0",
            "--frame-socket",
            "sub",
            "--no-record-frames",
            "--session",
            "rig1=sim00",
            "--session",
            "sim01",
        ]
    )
    settings = settings_from(args)
    assert (settings.bundle, settings.http_port, settings.frame_socket) == (tmp_path, 0, FrameSocketKind.SUB)
    assert settings.record_frames is False
    assert settings.open_sessions == {"rig1": "sim00", "sim01": "sim01"}
    assert settings.max_sessions == 3  # not a flag here: the environment's value
    assert settings.frame_port == 8701  # neither: the default
