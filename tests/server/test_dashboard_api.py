"""What the dashboard reads beyond the existing API: the page's own files, a session's context, PINning rates."""

from __future__ import annotations

import io
import re
import time

import httpx
import numpy as np
import pytest

from poco_rt.bundle import load_bundle
from poco_rt.server.api.dashboard import STATIC_DIR
from tests.helpers import C, wait_for_job

PINNING = {"target": "bump", "units": 30, "plastic_fraction": 0.5, "runs": 4, "free_runs": 2, "lesion_runs": 0}


def wait_for_frames(http: httpx.Client, session: str, accepted: int, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while (info := http.get(f"/v1/sessions/{session}").json())["frames_accepted"] < accepted:
        if time.monotonic() > deadline:
            pytest.fail(f"{session} took {info['frames_accepted']} of {accepted} frames within {timeout_s} s")
        time.sleep(0.02)
    return info


def test_the_page_and_its_files_need_no_token_but_the_api_does(start_server):
    server = start_server(auth_token="s3cret")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        page = http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<title>poco-rt dashboard</title>" in page.text
        for path, media_type in (
            ("/static/vendor/uPlot.iife.min.js", "text/javascript"),
            ("/static/vendor/uPlot.min.css", "text/css"),
            ("/static/js/main.js", "text/javascript"),
        ):
            reply = http.get(path)
            assert (reply.status_code, reply.headers["content-type"].split(";")[0]) == (200, media_type), path
        assert http.get("/static/../settings.py").status_code == 404
        assert http.get("/v1/sessions").status_code == 401  # what makes the page ask for the token


def test_the_page_loads_only_files_of_its_own():
    html = (STATIC_DIR / "index.html").read_text()
    assets = [asset for asset in re.findall(r'(?:src|href)="([^"]+)"', html) if asset != "data:,"]  # no favicon
    assert assets and all(asset.startswith("static/") for asset in assets), assets
    for asset in assets:
        assert (STATIC_DIR / asset.removeprefix("static/")).is_file(), asset
    for module in (STATIC_DIR / "js").glob("*.js"):
        for imported in re.findall(r'from "([^"]+)"', module.read_text()):
            assert imported.startswith("./") and (module.parent / imported).is_file(), (module.name, imported)
        assert "http://" not in module.read_text() and "https://" not in module.read_text(), module.name


def test_the_context_is_the_last_frames_taken_in_raw_units(start_server, stream_client, tiny_recording, served_bundle):
    server = start_server(open_sessions={"sim00": "sim00"})
    client = stream_client(server)
    traces = tiny_recording.session("sim00").traces  # (T, N) raw
    calibration = load_bundle(served_bundle).session("sim00")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        empty = http.get("/v1/sessions/sim00/context").json()
        assert (empty["frame_index_last"], empty["values"]) == (None, [[] for _ in range(14)])
        for index in range(60):
            client.send(traces[index], frame_index=index)
        wait_for_frames(http, "sim00", 60)
        whole = http.get("/v1/sessions/sim00/context").json()
        some = http.get("/v1/sessions/sim00/context", params={"units": "5,0", "after": 56}).json()
        nothing_new = http.get("/v1/sessions/sim00/context", params={"units": "5", "after": 59}).json()

    assert whole["frame_index_last"] == 59
    assert whole["unit_ids"] == list(calibration.unit_ids)
    np.testing.assert_allclose(whole["std"], calibration.std)
    np.testing.assert_allclose(np.array(whole["values"]), traces[60 - C : 60].T, rtol=1e-5, atol=1e-5)  # (N, C)
    assert (some["frame_index_last"], some["unit_indices"]) == (59, [5, 0])
    assert some["unit_ids"] == [calibration.unit_ids[5], calibration.unit_ids[0]]
    np.testing.assert_allclose(np.array(some["values"]), traces[57:60][:, [5, 0]].T, rtol=1e-5, atol=1e-5)
    assert (nothing_new["frame_index_last"], nothing_new["values"]) == (59, [[]])


def test_after_a_reset_the_context_holds_only_the_frames_since(start_server, stream_client, tiny_recording):
    server = start_server(open_sessions={"sim00": "sim00"}, max_gap_fill_frames=3)
    client = stream_client(server)
    traces = tiny_recording.session("sim00").traces
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for index in [*range(10), *range(100, 105)]:  # a gap of 90 frames: the session resets
            client.send(traces[index], frame_index=index)
        wait_for_frames(http, "sim00", 15)
        context = http.get("/v1/sessions/sim00/context", params={"units": "1"}).json()
    assert context["frame_index_last"] == 104
    np.testing.assert_allclose(context["values"], [traces[100:105, 1]], rtol=1e-5, atol=1e-5)


def test_context_refusals_say_why(start_server):
    server = start_server(open_sessions={"sim00": "sim00"})
    with httpx.Client(base_url=server.url, timeout=10) as http:
        outside = http.get("/v1/sessions/sim00/context", params={"units": "3,14"})
        assert (outside.status_code, outside.json()["detail"]) == (
            422,
            "unit 14 is out of range: there are 14 units, 0..13",
        )
        assert http.get("/v1/sessions/sim00/context", params={"units": "1,,2"}).status_code == 422
        assert http.get("/v1/sessions/sim00/context", params={"after": -1}).status_code == 422
        assert http.get("/v1/sessions/nope/context").status_code == 404


def test_pinning_rates_are_the_results_target_and_last_free_run(start_server):
    server = start_server()  # one job worker: the second job waits behind the first
    with httpx.Client(base_url=server.url, timeout=10) as http:
        slow_id = http.post("/v1/jobs/pinning", json={**PINNING, "units": 400, "runs": 1000}).json()["id"]
        job_id = http.post("/v1/jobs/pinning", json=PINNING).json()["id"]
        queued = http.get(f"/v1/jobs/{job_id}/result/rates")
        http.delete(f"/v1/jobs/{slow_id}").raise_for_status()
        job = wait_for_job(http, job_id)
        assert job["state"] == "succeeded", job["error"]
        some = http.get(f"/v1/jobs/{job_id}/result/rates", params={"units": "7,2"}).json()
        every = http.get(f"/v1/jobs/{job_id}/result/rates").json()
        outside = http.get(f"/v1/jobs/{job_id}/result/rates", params={"units": "30"})
        arrays = np.load(io.BytesIO(http.get(f"/v1/jobs/{job_id}/result.npz").content))

    assert (queued.status_code, queued.json()["detail"]) == (
        409,
        f"job {job_id} is queued, not succeeded: it has no result (see its 'error')",
    )
    condition = int(arrays["free_conditions"][-1])
    assert (some["condition"], some["units"]) == (condition, [7, 2])
    assert some["pvar"] == pytest.approx(float(arrays["run_pvar"][-1]))
    assert some["peak_order"] == arrays["peak_order"].tolist()
    np.testing.assert_allclose(some["target"], arrays["target_rates"][condition][:, [7, 2]].T, atol=1e-7)
    np.testing.assert_allclose(some["network"], arrays["free_rates"][-1][:, [7, 2]].T, atol=1e-7)
    assert every["units"] == list(range(30)) and np.array(every["network"]).shape == (30, arrays["free_rates"].shape[1])
    assert (outside.status_code, outside.json()["detail"]) == (
        422,
        "unit 30 is out of range: there are 30 units, 0..29",
    )
