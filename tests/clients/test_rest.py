"""ForecastClient and AsyncForecastClient against a real server: sessions, forecasts, bundles, jobs, errors, tokens."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from poco_rt.bundle import load_bundle
from poco_rt.clients import (
    AsyncForecastClient,
    ForecastClient,
    FramePublisher,
    RequestRefused,
    SubscriptionClosed,
    WebSocketForecastSubscriber,
)
from poco_rt.models.recording import load_recording
from poco_rt.resources import default_bundle_path, demo_recording_path
from poco_rt.server.engine import Engine
from tests.helpers import C, wait_for_job


@pytest.fixture(scope="module")
def traces() -> np.ndarray:
    return load_recording(demo_recording_path()).session("sim01").traces[:C]  # (C, N = 63) raw


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_bundle(default_bundle_path()))


def test_sessions_the_latest_forecast_and_a_stateless_one_over_rest(start_default_server, traces, engine):
    server = start_default_server()
    with ForecastClient(server.url, timeout_s=10) as client:
        assert client.ready() is True
        endpoints = client.endpoints()
        assert (endpoints.frames, endpoints.forecasts) == (
            server.runtime.endpoints.frames,
            server.runtime.endpoints.forecasts,
        )
        opened = client.open_session("rig1", calibration="sim01")
        assert (opened["name"], opened["calibration"], opened["unit_count"], opened["state"]) == (
            "rig1",
            "sim01",
            63,
            "warming_up",
        )
        assert [session["name"] for session in client.sessions()] == ["rig1"]
        with pytest.raises(RequestRefused, match="has made no forecast yet") as refused:
            client.latest_forecast("rig1")
        assert refused.value.status_code == 404
        with FramePublisher(endpoints.frames, session="rig1", linger_s=0) as publisher:
            for frame in traces:
                publisher.send(frame)
            latest = wait_for_latest(client, "rig1", frame_index=C - 1)
        expected = engine.forecast("sim01", traces)
        np.testing.assert_allclose(latest.forecast, expected, rtol=1e-5, atol=1e-5)
        assert latest.forecast.dtype == np.float32 and latest.model_version == engine.bundle.version
        stateless = client.forecast("sim01", traces)
        np.testing.assert_array_equal(stateless, expected.astype(np.float32))  # JSON carries float32 exactly
        (bundle,) = client.bundles()
        assert (bundle["version"], bundle["active"], bundle["context_frames"]) == (engine.bundle.version, True, C)
        assert client.server_info()["model_version"] == engine.bundle.version
        client.close_session("rig1")
        with pytest.raises(RequestRefused, match="404: no open session 'rig1'"):
            client.session("rig1")


def wait_for_latest(client: ForecastClient, session: str, *, frame_index: int, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            latest = client.latest_forecast(session)
        except RequestRefused:
            latest = None
        if latest is not None and latest.frame_index == frame_index:
            return latest
        time.sleep(0.02)
    pytest.fail(f"no forecast for frame {frame_index} within {timeout_s} s")


def test_refusals_carry_the_status_and_the_servers_own_message(start_default_server, traces):
    server = start_default_server(open_sessions={"sim00": "sim00"})
    with ForecastClient(server.url) as client:
        cases = [
            (lambda: client.open_session("sim00"), 409, "POST /v1/sessions -> 409: .*already open"),
            (lambda: client.open_session("rig 1"), 422, "body.name: String should match pattern"),
            (lambda: client.forecast("sim01", traces[:10]), 422, r"needs \(C, N\) = \(48, 63\)"),
            (lambda: client.activate_bundle("nope"), 404, "nope"),
        ]
        for call, status_code, message in cases:
            with pytest.raises(RequestRefused, match=message) as refused:
                call()
            assert refused.value.status_code == status_code
        with pytest.raises(ValueError, match=r"give \(C, N\)"):
            client.forecast("sim01", traces[0])  # refused before anything is sent


def test_the_async_client_sends_the_same_calls(start_default_server, traces, engine):
    server = start_default_server()

    async def use() -> tuple[dict, np.ndarray, int]:
        async with AsyncForecastClient(server.url) as client:
            opened = await client.open_session("rig2", calibration="sim01")
            values = await client.forecast("sim01", traces)
            with pytest.raises(RequestRefused) as refused:
                await client.latest_forecast("rig2")
            return opened, values, refused.value.status_code

    opened, values, status_code = asyncio.run(use())
    assert (opened["name"], opened["calibration"], status_code) == ("rig2", "sim01", 404)
    np.testing.assert_array_equal(values, engine.forecast("sim01", traces).astype(np.float32))


def test_with_a_token_configured_every_client_needs_it(start_default_server):
    server = start_default_server(open_sessions={"sim00": "sim00"}, auth_token="s3cret")
    with ForecastClient(server.url) as anonymous:
        assert anonymous.ready() is True  # probes stay open
        with pytest.raises(RequestRefused, match="401: missing or wrong bearer token"):
            anonymous.sessions()
    with ForecastClient(server.url, token="s3cret") as client:
        assert [session["name"] for session in client.sessions()] == ["sim00"]
    with (
        WebSocketForecastSubscriber(server.url, session="sim00") as forecasts,
        pytest.raises(SubscriptionClosed, match="code 1008: missing or wrong token"),
    ):
        forecasts.receive()
    with (
        WebSocketForecastSubscriber(server.url, session="sim00", token="s3cret") as forecasts,
        pytest.raises(TimeoutError),
    ):
        forecasts.receive(timeout_s=0.2)  # accepted; no forecast yet


QUICK_PINNING = {"target": "bump", "units": 40, "plastic_fraction": 0.5, "runs": 6, "free_runs": 1, "lesion_runs": 1}


def test_jobs_are_submitted_watched_fetched_cancelled_and_rerun_through_the_client(start_default_server):
    import io

    server = start_default_server()
    with ForecastClient(server.url, timeout_s=10) as client:
        submitted = client.submit_pinning_job(QUICK_PINNING)
        assert submitted["state"] in ("queued", "running") and submitted["kind"] == "pinning"
        done = wait_for_job(client, submitted["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded", done["error"]
        summary = client.job_result(done["id"])
        arrays = np.load(io.BytesIO(client.job_result_npz(done["id"])))
        assert summary["pvar"] == pytest.approx(done["summary"]["pvar"])
        assert arrays["weights"].shape == (40, 40)
        slow = client.submit_pinning_job({"target": "bump", "units": 400, "runs": 1000})
        wait_for_job(client, slow["id"], {"running"})
        assert client.cancel_job(slow["id"])["state"] == "cancelled"
        assert [job["id"] for job in client.list_jobs()] == [slow["id"], done["id"]]
        with pytest.raises(RequestRefused, match=r"409: .*not succeeded") as refused:
            client.job_result(slow["id"])
        assert refused.value.status_code == 409
        assert client.retry_job(slow["id"])["state"] == "queued"
        client.cancel_job(slow["id"])


class ClosesIdleConnections:
    """An HTTP/1.1 peer that answers each connection's first request, keeps it alive, then closes it
    unanswered when the next request comes on it: the race of a server's keep-alive timeout expiring
    as the client reuses the connection, which a real server only loses by timing."""

    BODY = b"[]"

    def __init__(self) -> None:
        import socket
        import threading

        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer_once, args=(connection,), daemon=True).start()

    def _answer_once(self, connection) -> None:
        with connection:
            self.requests.append(connection.recv(65536).split(b"\r\n", 1)[0])
            head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(self.BODY)}\r\n\r\n"
            connection.sendall(head.encode() + self.BODY)
            self.requests.append(connection.recv(65536).split(b"\r\n", 1)[0])  # the reuse: closed unanswered

    def close(self) -> None:
        self._listener.close()


def test_a_get_on_a_connection_the_server_just_closed_is_sent_again_and_a_post_is_not():
    import httpx

    peer = ClosesIdleConnections()
    try:
        with ForecastClient(peer.url, timeout_s=5) as client:
            assert client.sessions() == []
            assert client.sessions() == []  # its kept-alive connection closed unanswered: sent again, once
            assert peer.requests.count(b"GET /v1/sessions HTTP/1.1") == 3
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                client.open_session("rig1")  # not idempotent: the caller decides whether to send it again

        async def twice() -> list:
            async with AsyncForecastClient(peer.url, timeout_s=5) as client:
                return [await client.sessions(), await client.sessions()]

        assert asyncio.run(twice()) == [[], []]
    finally:
        peer.close()
