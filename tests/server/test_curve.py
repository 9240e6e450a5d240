"""ZeroMQ CURVE on a real server, with real key files made by `poco-rt curve-keys` in a temp dir.

With the server's secret certificate, frames go in and forecasts come out only over CURVE: a
client that knows the server's public key streams as usual, a plain one is never heard (nothing
counted) while the server goes on serving. With an allow-list, a listed client connects and an
unlisted one with a valid key pair does not. A certificate the server cannot use stops the start
with a message that names the file and the fix. The reference forecast is the bundle's own engine.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from poco_rt.bundle import load_bundle
from poco_rt.cli.main import main
from poco_rt.clients import FramePublisher, ZmqForecastSubscriber
from poco_rt.server.engine import Engine
from tests.helpers import C

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")

SESSION = "sim00"
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
SLOW_JOINER_S = 0.5  # a subscription (and its CURVE handshake) reaches the server's PUB socket asynchronously
UNHEARD_S = 1.0  # long enough for a refused handshake's frames to have arrived, had they been let in


@pytest.fixture(scope="module")
def traces(tiny_recording) -> np.ndarray:
    return tiny_recording.session(SESSION).traces[:C]  # (C, N = 14) raw


@pytest.fixture(scope="module")
def expected(served_bundle, traces) -> np.ndarray:
    return Engine(load_bundle(served_bundle)).forecast(SESSION, traces)  # (N, P): the forecast after frame C - 1


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """Key pairs for the server, a listed client (rig1) and an unlisted one (intruder); allowed/ lists rig1."""
    directory = tmp_path / "keys"
    for name in ("server", "rig1", "intruder"):
        assert main(["curve-keys", str(directory), "--name", name]) == 0
    (directory / "allowed").mkdir()
    shutil.copy(directory / "rig1.key", directory / "allowed")
    return directory


def server_key(keys: Path) -> bytes:
    return zmq.auth.load_certificate(keys / "server.key")[0]  # what a client is given: the public file


def client_keys(keys: Path, name: str) -> dict[str, bytes]:
    public_key, secret_key = zmq.auth.load_certificate(keys / f"{name}.key_secret")
    return {"server_public_key": server_key(keys), "public_key": public_key, "secret_key": secret_key}


def frames_received(server) -> float:
    return server.runtime.metric_value("poco_rt_frames_received_total")


def publish_context(publisher: FramePublisher, traces: np.ndarray) -> None:
    """C frames; a refused client's may queue or drop on its side (ZeroMQ drops once a ZAP denial ends the peer)."""
    for index, frame in enumerate(traces):
        publisher.send(frame, index=index)


def test_curve_keys_writes_a_matching_pair_with_a_private_secret_and_never_overwrites(keys, caplog):
    public_key, no_secret = zmq.auth.load_certificate(keys / "server.key")
    same_public, secret_key = zmq.auth.load_certificate(keys / "server.key_secret")
    assert no_secret is None and same_public == public_key == zmq.curve_public(secret_key)
    assert (keys / "server.key_secret").stat().st_mode & 0o777 == 0o600
    with caplog.at_level(logging.ERROR):
        assert main(["curve-keys", str(keys), "--name", "server"]) == 2
    assert f"{keys / 'server.key'} exists; pick another --name or folder" in caplog.text
    assert zmq.auth.load_certificate(keys / "server.key_secret")[1] == secret_key


def test_a_curve_client_streams_frames_in_and_gets_forecasts_out(start_server, keys, traces, expected):
    server = start_server(open_sessions={SESSION: SESSION}, curve_server_key_file=keys / "server.key_secret")
    curve = {"server_public_key": server_key(keys)}  # an anonymous client: a fresh key pair of its own
    with (
        ZmqForecastSubscriber(server.forecast_endpoint, session=SESSION, timeout_s=10, **curve) as forecasts,
        FramePublisher(server.frame_endpoint, session=SESSION, **curve) as publisher,
    ):
        time.sleep(SLOW_JOINER_S)
        publish_context(publisher, traces)
        frame_index, forecast, _ = forecasts.receive()
    assert frame_index == C - 1
    np.testing.assert_allclose(forecast, expected, **TOLERANCE)


def assert_only_the_admitted_are_heard(server, traces, expected, *, unheard: dict, admitted: dict) -> None:
    """A publisher and a subscriber with `unheard` keys get nothing through; with `admitted` keys, a
    publisher's frames are forecast and the forecast reaches the admitted subscriber."""
    with (
        ZmqForecastSubscriber(server.forecast_endpoint, session=SESSION, timeout_s=10, **unheard) as refused,
        ZmqForecastSubscriber(server.forecast_endpoint, session=SESSION, timeout_s=10, **admitted) as forecasts,
        FramePublisher(server.frame_endpoint, session=SESSION, linger_s=0, **unheard) as outsider,
    ):
        time.sleep(SLOW_JOINER_S)
        publish_context(outsider, traces)  # queued on the client side: its handshake fails, so nothing leaves
        time.sleep(UNHEARD_S)
        assert frames_received(server) == 0  # not received, so not rejected, dropped or recorded either
        with FramePublisher(server.frame_endpoint, session=SESSION, **admitted) as publisher:
            publish_context(publisher, traces)
            frame_index, forecast, _ = forecasts.receive()
        with pytest.raises(TimeoutError):
            refused.receive(timeout_s=UNHEARD_S)
    assert (frame_index, frames_received(server)) == (C - 1, C)
    np.testing.assert_allclose(forecast, expected, **TOLERANCE)


def test_a_plain_client_is_never_heard_and_the_server_keeps_serving(start_server, keys, traces, expected):
    server = start_server(open_sessions={SESSION: SESSION}, curve_server_key_file=keys / "server.key_secret")
    curve = {"server_public_key": server_key(keys)}
    assert_only_the_admitted_are_heard(server, traces, expected, unheard={}, admitted=curve)


def test_an_allow_list_lets_in_a_listed_client_and_not_an_unlisted_one_with_a_valid_pair(
    start_server, keys, traces, expected
):
    server = start_server(
        open_sessions={SESSION: SESSION},
        curve_server_key_file=keys / "server.key_secret",
        curve_clients_dir=keys / "allowed",
    )
    listed, unlisted = client_keys(keys, "rig1"), client_keys(keys, "intruder")
    assert_only_the_admitted_are_heard(server, traces, expected, unheard=unlisted, admitted=listed)


def public_only(keys: Path) -> Path:
    return keys / "server.key"  # the file meant for clients


def mismatched(keys: Path) -> Path:
    """rig1's secret certificate with the server's public key in it: two keys that are not a pair."""
    wrong = keys / "mismatched.key_secret"
    rig1_public = zmq.auth.load_certificate(keys / "rig1.key")[0].decode()
    wrong.write_text((keys / "rig1.key_secret").read_text().replace(rig1_public, server_key(keys).decode()))
    return wrong


def garbage(keys: Path) -> Path:
    path = keys / "garbage.key_secret"
    path.write_text("this is not a certificate\n")
    return path


@pytest.mark.parametrize(
    ("bad_file", "message"),
    [
        (public_only, r"server.key' holds only a public key; give the server its secret certificate"),
        (mismatched, r"mismatched.key_secret': its public-key does not belong to its secret-key; make a new pair"),
        (garbage, r"garbage.key_secret' is not a ZeroMQ certificate \(No public key found in .*\); make one with"),
    ],
    ids=["public-only", "mismatched", "garbage"],
)
def test_a_certificate_the_server_cannot_use_refuses_the_start(start_server, keys, bad_file, message):
    with pytest.raises(ValueError, match=r"curve_server_key_file='.*" + message):
        start_server(curve_server_key_file=bad_file(keys))


def test_an_allow_list_without_certificates_refuses_the_start(start_server, keys, tmp_path):
    (tmp_path / "nobody").mkdir()
    with pytest.raises(ValueError, match=r"curve_clients_dir='.*nobody' holds no client certificate \(\*.key\)"):
        start_server(curve_server_key_file=keys / "server.key_secret", curve_clients_dir=tmp_path / "nobody")


def test_poco_rt_serve_with_a_public_only_certificate_exits_with_the_reason(keys, tmp_path, caplog):
    args = ["serve", "--curve-server-key-file", str(keys / "server.key"), "--data-dir", str(tmp_path / "data"),
            "--http-port", "0", "--frame-port", "0", "--forecast-port", "0"]  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert main(args) == 2
    assert "holds only a public key; give the server its secret certificate" in caplog.text
