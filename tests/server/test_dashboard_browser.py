"""The dashboard in headless Chromium: a replay plotted live as it streams, a finished PINning job drawn,
and a new animal opened, fine-tuned and its round shown.

Needs Debian's `chromium` (/usr/bin/chromium; `.ci/run` installs it) and Playwright's Python
package (the dev extra); Playwright's own browser download is never used. Every request the page
makes is checked to go to the server under test: the page works without internet. Screenshots go
to the test's temp folder, so that running the suite leaves the tree clean; with
POCO_RT_UPDATE_DOCS_SCREENSHOTS=1 they replace docs/dashboard-*.png, which docs/server.md shows.
"""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from poco_rt.clients import connect_replay, read_session
from poco_rt.metric import ScoreAccumulator
from poco_rt.resources import demo_recording_path
from tests.helpers import P, wait_until

CHROMIUM = Path("/usr/bin/chromium")
# Off the network and fine as root: no sandbox (root), no GPU process, no QUIC, no updates, sync or
# background fetches of its own. bench/latency.py --dashboard starts it with the same flags.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
UPDATE_DOCS = os.environ.get("POCO_RT_UPDATE_DOCS_SCREENSHOTS") == "1"
REPLAY_HZ = 25.0
PINNING = {"target": "bump", "units": 60, "plastic_fraction": 0.5, "runs": 10, "free_runs": 2, "lesion_runs": 0}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """A factory: `open_page(server_url)` opens the dashboard; JS errors and requests elsewhere fail the test."""
    contexts, problems = [], []

    def open_(url: str):
        context = browser.new_context(viewport={"width": 1400, "height": 1250})
        contexts.append(context)
        own = urlsplit(url).netloc

        def only_own_server(request) -> None:  # watched, not intercepted: a routed request waits on this thread
            if urlsplit(request.url).netloc != own:
                problems.append(f"request to another host: {request.url}")

        context.on("request", only_own_server)
        page = context.new_page()
        page.on("websocket", only_own_server)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda message: unexpected(message) and problems.append(f"console: {message.text}"))
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not problems, problems


def unexpected(message) -> bool:
    """A console error, except the browser's own note of a 401 (how the page learns to ask for the token)
    and of a 409 (an action the server refused: the page shows its reason)."""
    return message.type == "error" and not any(f"status of {code}" in message.text for code in (401, 409))


def plotted(page) -> list[dict[str, int]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#plots .plot')].map((plot) => ({
            unit: Number(plot.dataset.unit), last: Number(plot.dataset.lastFrame),
            points: Number(plot.dataset.points), ahead: Number(plot.dataset.forecastPoints)}))"""
    )


def screenshot_path(tmp_path: Path, name: str) -> Path:
    return DOCS / name if UPDATE_DOCS else tmp_path / name


def test_a_replay_is_plotted_live_and_scored(start_default_server, open_page, tmp_path):
    server = start_default_server()
    session = read_session(demo_recording_path(), "sim00")
    with connect_replay(
        session.traces, session="sim00", server_url=server.url, rate_hz=REPLAY_HZ, max_frames=int(14 * REPLAY_HZ)
    ) as replay:
        streaming = threading.Thread(target=replay.run, kwargs={"tail_timeout_s": 1.0}, daemon=True)
        streaming.start()
        page = open_page(server.url)
        page.wait_for_selector(f"#plots .plot[data-forecast-points='{P + 1}']", timeout=20_000)
        before = plotted(page)
        page.wait_for_timeout(1000)  # not time.sleep: Playwright's events are handled while it waits
        after = plotted(page)
        page.wait_for_function("() => Number(document.getElementById('score-value').dataset.forecasts) >= 6")
        page.wait_for_selector("#histograms .hist[data-stage='infer']:not([data-frames='0'])", timeout=10_000)
        page.wait_for_selector("#accuracy .accuracy-summary[data-calibrated='true']", timeout=20_000)
        worst = page.eval_on_selector_all("#accuracy tbody.worst tr", "rows => rows.map(r => r.dataset.unit)")
        worst_scores = page.eval_on_selector_all(
            "#accuracy tbody.worst tr td:nth-child(2)", "cells => cells.map(c => Number(c.textContent))"
        )
        state = page.text_content("#sessions tr[data-session='sim00'] td.state")
        page.screenshot(path=screenshot_path(tmp_path, "dashboard-replay.png"), full_page=True)
        score = float(page.get_attribute("#score-value", "data-score"))
        streaming.join(30)

    assert len(before) == 4 and [p["unit"] for p in before] == [p["unit"] for p in after]  # the 4 most active
    assert all(p["points"] > P and p["ahead"] == P + 1 for p in before), before
    # A second later, at 25 Hz and a poll every 0.5 s: one or two polls' worth of new frames.
    assert all(a["last"] >= b["last"] + 10 for a, b in zip(after, before, strict=True)), (before, after)
    assert all(a["points"] >= b["points"] for a, b in zip(after, before, strict=True))
    assert state == "streaming"
    assert -1.0 < score <= 1.0
    assert len(worst) == 6 and worst_scores == sorted(worst_scores)  # the server's live accuracy, worst units first


def test_a_finished_pinning_job_shows_its_pvar_and_rates(start_default_server, open_page, tmp_path):
    server = start_default_server()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        job_id = http.post("/v1/jobs/pinning", json=PINNING).json()["id"]
        deadline = time.monotonic() + 60
        while (job := http.get(f"/v1/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"the PINning job did not finish within 60 s: {job}"
            time.sleep(0.2)
    assert job["state"] == "succeeded", job["error"]

    page = open_page(f"{server.url}/#job={job_id}")
    page.wait_for_selector("#traces-figure:not([hidden])", timeout=15_000)
    passes = page.get_attribute("#pvar-plot", "data-passes")
    units = page.get_attribute("#rates-plot", "data-units")
    heatmap = page.evaluate(
        "() => [document.getElementById('network-map').width, document.getElementById('network-map').height]"
    )
    page.locator("#jobs").screenshot(path=screenshot_path(tmp_path, "dashboard-pinning.png"))

    assert passes == str(len(job["detail"]["pvar_per_pass"])) == str(PINNING["runs"])
    assert len(units.split(",")) == 3
    assert heatmap[1] == PINNING["units"] and heatmap[0] > 1
    assert page.text_content(f"#jobs tr[data-job='{job_id}'] td.state") == "succeeded"


def test_with_a_token_the_page_asks_for_it_and_sends_it_everywhere(start_default_server, open_page):
    server = start_default_server(auth_token="s3cret")
    page = open_page(server.url)
    page.wait_for_selector("#token-form:not([hidden])", timeout=10_000)
    page.fill("#token-form input[name=token]", "s3cret")
    page.click("#token-form button")
    session = read_session(demo_recording_path(), "sim01")
    with connect_replay(session.traces, session="sim01", server_url=server.url, token="s3cret", rate_hz=100) as replay:
        replay.run(tail_timeout_s=1.0)  # 600 frames in 6 s; every route the page reads needs the token
    page.wait_for_selector(f"#plots .plot[data-forecast-points='{P + 1}']", timeout=10_000)
    page.wait_for_selector("#histograms .hist[data-stage='server']", timeout=10_000)
    assert page.is_hidden("#token-form")
    assert page.text_content("#live .session-name") == "sim01"
    assert page.text_content("#live-status") == ""  # no request of the live view was refused


def test_the_pages_score_and_npy_reader_agree_with_numpy(start_default_server, open_page):
    rng = np.random.default_rng(0)
    units, horizon = 5, 4
    forecast = rng.standard_normal((units, horizon)).astype(np.float32)  # (N, P), made after frame 10
    frames = {k: rng.standard_normal(units).astype(np.float32) for k in range(10, 10 + horizon + 1)}
    std = rng.uniform(0.5, 2.0, units).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, forecast)
    page = open_page(start_default_server().url)
    scored = page.evaluate(
        """async ([forecast, frames, std, npy]) => {
            const { forecastErrors, WindowedScore } = await import("./static/js/score.js");
            const { readFloat32Npy } = await import("./static/js/npy.js");
            const rows = new Map(Object.entries(frames).map(([k, v]) => [Number(k), Float32Array.from(v)]));
            const units = [...std.keys()];
            const errors = forecastErrors(Float32Array.from(forecast), 10, 4, (k) => rows.get(k), units, units, std);
            const score = new WindowedScore();
            score.add(0, errors.modelSq, errors.copySq, errors.count);
            const read = readFloat32Npy(Uint8Array.from(atob(npy), (c) => c.charCodeAt(0)).buffer);
            return { score: score.score, count: errors.count, shape: read.shape, values: [...read.values] };
        }""",
        [forecast.ravel().tolist(), {k: v.tolist() for k, v in frames.items()}, std.tolist(),
         base64.b64encode(buffer.getvalue()).decode()],
    )  # fmt: skip
    target = np.stack([frames[k] for k in range(11, 11 + horizon)], axis=-1)  # (N, P)
    reference = ScoreAccumulator()
    reference.add(forecast / std[:, None], target / std[:, None], frames[10] / std)
    assert scored["score"] == pytest.approx(reference.score, rel=1e-5)
    assert scored["count"] == units * horizon
    assert scored["shape"] == [units, horizon] and scored["values"] == pytest.approx(forecast.ravel().tolist())


def test_the_api_docs_render_from_the_package_alone(start_default_server, open_page):
    """/docs draws every route with Swagger UI's files from this server: no request goes anywhere else."""
    server = start_default_server()
    page = open_page(f"{server.url}/docs")
    page.wait_for_selector(".swagger-ui .opblock-summary-path[data-path='/v1/sessions']", timeout=15_000)
    assert "poco-rt" in page.text_content(".swagger-ui .info .title")
    assert httpx.get(f"{server.url}/redoc", timeout=10).status_code == 404  # ReDoc would load from a CDN


def test_a_new_animal_is_opened_from_the_page_and_its_fine_tune_round_shown(
    start_server, stream_client, open_page, tmp_path
):
    from poco_rt.models.simulator import SimulatorConfig, simulate_recording

    traces = simulate_recording(sessions=1, frames=400, seed=7, config=SimulatorConfig(network_units=40)).sessions[0]
    frames, units = traces.traces.shape
    server = start_server(job_idle_priority=False)  # on a busy test machine, SCHED_IDLE can starve the job
    page = open_page(server.url)
    page.fill("#new-animal input[name=name]", "fish7")
    page.fill("#new-animal input[name=units]", str(units))
    page.check("#new-animal input[name=adapt]")
    page.click("#new-animal button")
    page.wait_for_selector("#adaptation[data-zero-shot='true']", timeout=10_000)
    assert page.text_content("#sessions tr[data-session='fish7'] td:last-child") == "zero-shot"
    assert page.text_content("#adaptation .calibration") == "fish7.zero-shot"
    assert "auto-adapt: first round after 120 s" in page.text_content("#adaptation .auto")

    page.click("#finetune-now")  # nothing recorded yet: refused, and the page says why
    page.wait_for_function("() => document.getElementById('finetune-status').textContent.includes('needs at least')")

    client = stream_client(server, sessions=("fish7",))
    for index, values in enumerate(traces.traces):
        client.send(values, frame_index=index, session="fish7")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        deadline = time.monotonic() + 30
        while http.get("/v1/sessions/fish7").json()["frames_accepted"] < frames:
            assert time.monotonic() < deadline, "the frames were not all taken within 30 s"
            time.sleep(0.1)
        page.click("#finetune-now")

        def round_ended() -> bool:
            rounds = http.get("/v1/sessions/fish7").json()["adaptation"]["rounds"]
            return bool(rounds) and rounds[0]["state"] in ("kept", "swapped") and rounds[0]["outcome"] != "queued"

        wait_until(round_ended, "the fine-tune round ended", timeout_s=90)
        session = http.get("/v1/sessions/fish7").json()
        (round_,) = session["adaptation"]["rounds"]
        job = http.get(f"/v1/jobs/{round_['job_id']}").json()
    page.wait_for_function(
        """([outcome, calibration]) => document.querySelector('#adaptation td.outcome')?.textContent === outcome
            && document.querySelector('#adaptation .calibration').textContent === calibration""",
        arg=[round_["outcome"], session["calibration"]],
        timeout=15_000,
    )  # the page's next refresh shows the round as it ended
    cells = page.eval_on_selector_all("#adaptation tbody tr td", "(tds) => tds.map((td) => td.textContent)")
    page.locator("#live").screenshot(path=screenshot_path(tmp_path, "dashboard-new-animal.png"))
    page.click("#adaptation tbody tr")  # the round's job: its validation curve in the jobs view
    page.wait_for_selector("#validation-figure:not([hidden])", timeout=10_000)

    assert cells[1:3] == [round_["state"], str(frames)]
    assert cells[5:8] == [f"{round_['candidate_score']:.3f}", f"{round_['baseline_score']:.3f}", round_["outcome"]]
    assert page.text_content("#adaptation .calibration") == session["calibration"]
    assert page.text_content("#finetune-status") == ""
    assert page.get_attribute("#validation-plot", "data-points") == str(len(job["summary"]["validation_scores"]))
    assert page.text_content("#job-view .job-summary").startswith(job["summary"]["reason"])
    assert page.is_hidden("#pvar-figure")
