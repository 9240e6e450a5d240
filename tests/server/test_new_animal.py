"""A new animal on a real server: zero-shot from its first full context, fine-tuned live, swapped between frames."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from poco_rt.bundle import SessionCalibration, add_calibration, load_bundle, rewrite_manifest
from poco_rt.errors import IncompatibleSwap, RequestRefused, UnknownSession
from poco_rt.frame_split import minimum_frames
from poco_rt.metric import ScoreAccumulator
from poco_rt.models.simulator import SimulatorConfig, simulate_recording
from poco_rt.normalisation import STREAM_WINDOW_CONTEXTS, floored_std, normalisation_of, stream_estimate_span
from poco_rt.server.adaptation import STREAMS_DIR
from poco_rt.server.engine import Engine
from tests.helpers import TINY_TRAIN, C, P, scraped_metric, train_tiny, wait_until, worker_pids


@pytest.fixture(scope="module")
def adaptable_bundle(tiny_recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained long enough (400 steps) for its unit embeddings to matter, as a bundle."""
    from poco_rt.models.export import export_bundle

    run = tmp_path_factory.mktemp("runs") / "adaptable"
    train_tiny(tiny_recording, run, train_config=dataclasses.replace(TINY_TRAIN, steps=400, eval_every=50))
    return export_bundle(run, tmp_path_factory.mktemp("adaptable") / "bundle").path


@pytest.fixture(scope="module")
def new_animal() -> np.ndarray:
    """(T, N) raw frames of a simulated animal the tiny bundle never saw (another seed)."""
    return (
        simulate_recording(sessions=1, frames=700, seed=7, config=SimulatorConfig(network_units=40)).sessions[0].traces
    )


def stream(client, frames: np.ndarray, *, session: str, first: int = 0, pace_s: float = 0.0) -> None:
    for offset, frame in enumerate(frames):
        index = first + offset
        client.send(frame, frame_index=index, session=session, acquisition_time_ns=1_000_000_000 * (index + 1))
        if pace_s:
            time.sleep(pace_s)


def collect(client, count: int, timeout_s: float = 20.0) -> list:
    return [client.receive(timeout_s) for _ in range(count)]


def drain(client) -> None:
    """Read forecasts until none comes for half a second (a burst of frames coalesces some of them)."""
    while not client.nothing_within(0.5):
        client.receive()


def open_new(server, name: str, units: int, **extra) -> dict:
    response = httpx.post(f"{server.url}/v1/sessions", json={"name": name, "units": units, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def session_info(server, name: str) -> dict:
    return httpx.get(f"{server.url}/v1/sessions/{name}").json()


def test_a_new_animal_forecasts_zero_shot_from_its_first_full_context(start_server, stream_client, new_animal):
    server = start_server()
    units = new_animal.shape[1]
    opened = open_new(server, "fish7", units, unit_ids=[f"roi{i}" for i in range(units)])
    assert (opened["calibration"], opened["zero_shot"], opened["unit_count"]) == ("fish7.zero-shot", True, units)
    client = stream_client(server, sessions=("fish7",))

    stream(client, new_animal[: C - 1], session="fish7")
    assert client.nothing_within(1.0)
    stream(client, new_animal[C - 1 : C], session="fish7", first=C - 1)
    forecast = client.receive()
    assert forecast.header.frame_index == C - 1 and forecast.values.shape == (units, P)
    assert np.all(np.isfinite(forecast.values))

    info = session_info(server, "fish7")
    mean, std = new_animal[:C].mean(axis=0), new_animal[:C].std(axis=0)
    calibration = server.runtime.calibration("fish7")
    np.testing.assert_allclose(calibration.mean, mean, rtol=1e-5, atol=1e-6)  # estimated from its own C frames
    np.testing.assert_allclose(calibration.std, np.maximum(std, 0.01 * np.median(std)), rtol=1e-4)
    assert info["calibration_hash"] != opened["calibration_hash"]  # the estimate was swapped in before the forecast
    latest = httpx.get(f"{server.url}/v1/sessions/fish7/forecast").json()
    assert latest["calibration_hash"] == info["calibration_hash"]


def test_a_new_animals_normalisation_follows_its_recent_frames_through_a_drift(start_server, stream_client, new_animal):
    """Its baseline steps up after 2C frames: from the estimate at 6C frames on, the normalisation is that of the
    last STREAM_WINDOW_CONTEXTS x C frames, all after the step, not of every frame since the stream opened."""
    server = start_server(record_frames=False)
    units = new_animal.shape[1]
    frames = new_animal[: (2 + STREAM_WINDOW_CONTEXTS) * C].copy()
    frames[2 * C :] += 5.0 * new_animal.std(axis=0)
    open_new(server, "fish7", units)
    client = stream_client(server, sessions=("fish7",))
    stream(client, frames, session="fish7")
    recent = frames[2 * C :]
    wait_until(  # the estimate at the last frame is swapped in once that frame's forecast is out
        lambda: np.allclose(server.runtime.calibration("fish7").mean, recent.mean(axis=0), rtol=1e-5, atol=1e-5),
        "the estimate of the recent frames",
    )
    calibration = server.runtime.calibration("fish7")
    np.testing.assert_allclose(calibration.mean, recent.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(calibration.std, floored_std(recent.std(axis=0)), rtol=1e-4)


def test_each_zero_shot_forecast_is_normalised_over_the_frames_stream_estimate_span_names(
    start_server, stream_client, new_animal, served_bundle
):
    """Frame by frame through 6C frames: every forecast is the network's on the context normalised by the
    estimate of exactly the frames `stream_estimate_span` names, mapped back by it: the schedule training
    reproduces for its streamed windows (poco_rt.models.data) is the server's."""
    server = start_server(record_frames=False)
    frames = new_animal[: 6 * C]
    units = frames.shape[1]
    open_new(server, "fish7", units)
    bundle = load_bundle(served_bundle)
    embeddings = np.tile(bundle.unseen_unit_embedding(), (units, 1))
    client = stream_client(server, sessions=("fish7",))
    assert_each_forecast_normalised_over_its_own_frames(client, "fish7", frames, Engine(bundle), embeddings)


def assert_each_forecast_normalised_over_its_own_frames(
    client, session: str, frames: np.ndarray, engine: Engine, embeddings: np.ndarray
) -> None:
    """Stream `frames` one by one into a just-opened new animal: each forecast from the first full context on
    is `engine`'s with `embeddings`, on the context normalised by the estimate of the frames
    `stream_estimate_span` names and mapped back by it."""
    stream(client, frames[: C - 1], session=session)
    for seen in range(C, len(frames) + 1):
        stream(client, frames[seen - 1 : seen], session=session, first=seen - 1)
        forecast = client.receive()
        assert forecast.header.frame_index == seen - 1
        mean, std = normalisation_of(frames[slice(*stream_estimate_span(seen, C))])
        context = np.ascontiguousarray(((frames[seen - C : seen] - mean) / std).T, dtype=np.float32)
        expected = engine.forecast_normalised(context, embeddings) * std[:, None] + mean[:, None]
        np.testing.assert_allclose(forecast.values, expected, rtol=1e-4, atol=1e-4 * float(std.max()))


def test_frames_with_another_unit_count_are_refused_and_counted(start_server, stream_client, new_animal):
    server = start_server()
    units = new_animal.shape[1]
    open_new(server, "fish7", units)
    client = stream_client(server, sessions=("fish7",))
    client.send(np.zeros(units + 1, dtype=np.float32), frame_index=0, session="fish7")
    wait_until(lambda: session_info(server, "fish7")["frames_rejected"] == 1, "the wrong-width frame counted")
    metrics = httpx.get(f"{server.url}/metrics").text
    assert scraped_metric(metrics, "poco_rt_frames_rejected_total", {"reason": "unit_count_mismatch"}) == 1
    assert session_info(server, "fish7")["frames_accepted"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "fish7", "units": 5, "calibration": "sim00"}, "not both"),
        ({"name": "fish7", "units": 5, "unit_ids": ["a", "b"]}, "units=5 but 2 unit_ids"),
        ({"name": "fish7", "units": 10**9}, "max_units"),
        ({"name": "fish7", "calibration": "sim00", "adapt": {}}, "adapt is for new animals"),
    ],
)
def test_contradicting_open_options_are_refused(start_server, body, message):
    server = start_server()
    response = httpx.post(f"{server.url}/v1/sessions", json=body)
    assert response.status_code == 422 and message in response.text
    assert httpx.get(f"{server.url}/v1/sessions").json() == []


def test_finetune_before_enough_frames_says_how_many_are_needed(start_server, stream_client, new_animal):
    server = start_server()
    open_new(server, "fish7", new_animal.shape[1])
    client = stream_client(server, sessions=("fish7",))
    stream(client, new_animal[:10], session="fish7")
    wait_until(lambda: session_info(server, "fish7")["frames_accepted"] == 10, "10 frames taken")
    response = httpx.post(f"{server.url}/v1/sessions/fish7/finetune", json={})
    needed = minimum_frames(C, P)
    assert response.status_code == 409
    assert f"recorded 10 frames; fine-tuning needs at least {needed} ({needed - 10} more)" in response.json()["detail"]
    assert httpx.get(f"{server.url}/v1/jobs").json() == []


def forecast_score(forecasts: list, frames: np.ndarray, std: np.ndarray) -> float:
    """POCO's score of received forecasts whose targets are all in `frames` (indexed from 0), in z-units."""
    accumulator = ScoreAccumulator()
    for forecast in forecasts:
        t = forecast.header.frame_index
        if t + P < len(frames):
            target = frames[t + 1 : t + P + 1].T / std[:, None]
            accumulator.add(forecast.values / std[:, None], target, frames[t] / std)
    return accumulator.score


def test_a_finetune_swaps_between_frames_and_beats_zero_shot(start_server, stream_client, new_animal, adaptable_bundle):
    """Two streams of the same frames: `control` stays zero-shot, `fish7` is fine-tuned and swapped
    mid-stream. Every frame is taken, every forecast arrives, and after the swap fish7 scores higher."""
    server = start_server(bundle=adaptable_bundle)
    units = new_animal.shape[1]
    for name in ("control", "fish7"):
        open_new(server, name, units)
    client = stream_client(server, sessions=("control", "fish7"))
    recorded = 420
    for index in range(recorded):
        for name in ("control", "fish7"):
            stream(client, new_animal[index : index + 1], session=name, first=index)
        if index % 20 == 0:
            time.sleep(0.02)  # the recorder's queue (256 frames) is not a test of its own here
    for name in ("control", "fish7"):
        wait_until(lambda name=name: session_info(server, name)["frames_accepted"] == recorded, "every frame taken")
    drain(client)
    zero_shot_hash = session_info(server, "fish7")["calibration_hash"]
    zero_shot = server.runtime.calibration("fish7")

    job = httpx.post(f"{server.url}/v1/sessions/fish7/finetune", json={"max_steps": 300}).json()
    assert job["kind"] == "finetune" and job["params"]["frames"] == recorded
    busy = httpx.post(f"{server.url}/v1/sessions/fish7/finetune", json={})
    assert busy.status_code == 409 and job["id"] in busy.json()["detail"]
    wait_until(lambda: session_info(server, "fish7")["calibration"] == "fish7.adapted-1", "the swap", timeout_s=120)

    info = session_info(server, "fish7")
    (round_,) = info["adaptation"]["rounds"]
    assert round_["swapped"] and round_["candidate_score"] > round_["baseline_score"]
    assert info["calibration_hash"] != zero_shot_hash and not info["zero_shot"]
    finished = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()
    version = load_bundle(finished["summary"]["bundle"])
    assert "fish7.adapted-1" in version.sessions and version.version == server.runtime.active_bundle.version
    now = server.runtime.calibration("fish7")  # the new embeddings, the normalisation of the stream's own frames
    np.testing.assert_array_equal(now.unit_embeddings, version.session("fish7.adapted-1").unit_embeddings)
    np.testing.assert_array_equal(now.mean, zero_shot.mean)
    np.testing.assert_array_equal(now.std, zero_shot.std)
    load_bundle(server.runtime.active_bundle.path)  # the bundle it came from is as it was

    after = new_animal[recorded:]
    received: dict[str, list] = {"control": [], "fish7": []}
    for offset in range(len(after)):
        for name in ("control", "fish7"):
            stream(client, after[offset : offset + 1], session=name, first=recorded + offset)
        for forecast in collect(client, 2):
            received[forecast.header.session].append(forecast)
    for name in ("control", "fish7"):
        assert [f.header.frame_index for f in received[name]] == list(range(recorded, len(new_animal)))
        assert session_info(server, name)["frames_accepted"] == len(new_animal)
    std = new_animal.std(axis=0)
    assert forecast_score(received["fish7"], new_animal, std) > forecast_score(received["control"], new_animal, std)


def test_a_bundle_without_torch_weights_refuses_a_finetune_before_any_job(start_server, served_bundle, tmp_path):
    without_torch_weights = tmp_path / "bundle"
    bundle = load_bundle(served_bundle)
    for relative in bundle.manifest["hashes"]:
        if relative != "network.pt":
            (without_torch_weights / relative).parent.mkdir(parents=True, exist_ok=True)
            (without_torch_weights / relative).write_bytes((served_bundle / relative).read_bytes())
    rewrite_manifest(without_torch_weights, bundle.manifest)
    server = start_server(bundle=without_torch_weights)
    open_new(server, "fish7", 5)
    response = httpx.post(f"{server.url}/v1/sessions/fish7/finetune", json={})
    assert response.status_code == 422 and "has no network.pt" in response.json()["detail"]
    assert httpx.get(f"{server.url}/v1/jobs").json() == []


def test_a_killed_finetune_leaves_the_stream_on_its_calibration(start_server, stream_client, new_animal):
    server = start_server(job_idle_priority=False)
    open_new(server, "fish7", new_animal.shape[1])
    client = stream_client(server, sessions=("fish7",))
    needed = minimum_frames(C, P)
    stream(client, new_animal[:needed], session="fish7")
    wait_until(lambda: session_info(server, "fish7")["frames_accepted"] == needed, "every frame taken")
    drain(client)
    before = session_info(server, "fish7")["calibration_hash"]

    job = httpx.post(f"{server.url}/v1/sessions/fish7/finetune", json={}).json()
    wait_until(lambda: worker_pids(job["id"]), "the job's worker to start")
    for pid in worker_pids(job["id"]):
        os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    wait_until(
        lambda: session_info(server, "fish7")["adaptation"]["rounds"][0]["state"] == "failed",
        "the round to fail",
        timeout_s=60,
    )
    outcome = session_info(server, "fish7")["adaptation"]["rounds"][0]["outcome"]
    assert "killed by SIGKILL" in outcome and "keeps its calibration" in outcome
    stream(client, new_animal[needed : needed + 1], session="fish7", first=needed)
    assert client.receive().header.frame_index == needed
    info = session_info(server, "fish7")
    assert (info["calibration"], info["calibration_hash"]) == ("fish7.zero-shot", before)


def adapted_version(
    served_bundle: Path, out: Path, *, name: str, units: int, mean: float = 0.0, std: float = 1.0
) -> Path:
    """A bundle version holding calibration `name` for `units` units (random embeddings, the normalisation
    `mean` and `std` for every unit), as a fine-tune job writes one."""
    bundle = load_bundle(served_bundle)
    rng = np.random.default_rng(0)
    calibration = SessionCalibration(
        name=name,
        unit_ids=tuple(str(i) for i in range(units)),
        unit_embeddings=rng.normal(0, 0.02, (units, bundle.embedding_dim)).astype(np.float32),
        mean=np.full(units, mean, dtype=np.float32),
        std=np.full(units, std, dtype=np.float32),
    )
    return add_calibration(bundle, calibration, out).path


def remember_last_good(data_dir: Path, stream: str, version: Path, calibration: str, units: int) -> None:
    """Write what an earlier run of the server leaves for a stream it adapted (its last good calibration)."""
    streams = data_dir / STREAMS_DIR
    streams.mkdir(parents=True)
    record = {"bundle": str(version), "calibration": calibration, "units": units}
    (streams / f"{stream}.json").write_text(json.dumps(record))


def test_an_adapted_stream_reopens_with_its_last_good_calibration(start_server, served_bundle, tmp_path):
    version = adapted_version(served_bundle, tmp_path / "v2", name="fish7.adapted-1", units=9)
    remember_last_good(tmp_path / "data", "fish7", version, "fish7.adapted-1", 9)

    server = start_server(new_animals={"fish7": 9, "fish8": 9})
    assert session_info(server, "fish7")["calibration"] == "fish7.adapted-1"
    assert session_info(server, "fish8")["zero_shot"]
    httpx.delete(f"{server.url}/v1/sessions/fish7").raise_for_status()
    assert open_new(server, "fish7", 9, fresh=True)["zero_shot"]  # fresh: zero-shot whatever came before
    httpx.delete(f"{server.url}/v1/sessions/fish7").raise_for_status()
    assert open_new(server, "fish7", 10)["zero_shot"]  # another unit count: not the same animal


def test_a_reopened_stream_takes_its_calibrations_embeddings_and_normalises_over_its_own_frames(
    start_server, stream_client, new_animal, served_bundle, tmp_path
):
    """The remembered calibration's normalisation (here far off the frames) is never forecast with: it was
    fitted to the frames of the round that made it, which a drifting recording has since left."""
    frames = new_animal[: 3 * C]
    units = frames.shape[1]
    name = "fish7.adapted-1"
    version = adapted_version(served_bundle, tmp_path / "v2", name=name, units=units, mean=1e3, std=1e-3)
    remember_last_good(tmp_path / "data", "fish7", version, name, units)

    server = start_server(record_frames=False, new_animals={"fish7": units})
    assert session_info(server, "fish7")["calibration"] == name
    client = stream_client(server, sessions=("fish7",))
    bundle = load_bundle(version)
    embeddings = bundle.session(name).unit_embeddings
    assert_each_forecast_normalised_over_its_own_frames(client, "fish7", frames, Engine(bundle), embeddings)


def test_a_swap_for_a_closed_or_already_swapped_stream_is_refused(start_server, served_bundle, tmp_path):
    version = adapted_version(served_bundle, tmp_path / "v2", name="fish7.adapted-1", units=9)
    server = start_server()
    runtime = server.runtime
    loaded = runtime.load_bundle(version)
    first = runtime.open_session("fish7", units=9)
    runtime.close_session("fish7")
    runtime.open_session("fish7", units=9)
    with pytest.raises(UnknownSession, match="closed \\(or reopened\\) before the swap"):
        runtime.swap_session("fish7", calibration="fish7.adapted-1", bundle_id=loaded.id, expect_session=first)
    with pytest.raises(IncompatibleSwap, match=re.escape("now forecasts with 'fish7.zero-shot', not 'fish7.other'")):
        runtime.swap_session(
            "fish7", calibration="fish7.adapted-1", bundle_id=loaded.id, expect_calibration="fish7.other"
        )
    assert runtime.session_status("fish7").zero_shot


def test_auto_adapt_runs_a_round_by_itself(start_server, stream_client, new_animal):
    server = start_server()
    adapt = {"after_s": 300, "max_rounds": 1, "max_steps": 30}
    open_new(server, "fish7", new_animal.shape[1], adapt=adapt)
    client = stream_client(server, sessions=("fish7",))
    stream(client, new_animal[:290], session="fish7")  # 289 s of acquisition: not yet
    wait_until(lambda: session_info(server, "fish7")["frames_accepted"] == 290, "every frame taken")
    time.sleep(1.0)
    assert session_info(server, "fish7")["adaptation"]["rounds"] == []
    stream(client, new_animal[290:330], session="fish7", first=290)
    wait_until(lambda: session_info(server, "fish7")["adaptation"]["rounds"], "the first round to start")
    wait_until(
        lambda: session_info(server, "fish7")["adaptation"]["rounds"][0]["state"] in ("swapped", "kept"),
        "the round to end",
        timeout_s=120,
    )
    adaptation = session_info(server, "fish7")["adaptation"]
    assert adaptation["rounds"][0]["frames"] >= 300 and adaptation["auto"]["max_rounds"] == 1
    stream(client, new_animal[330:700], session="fish7", first=330)
    wait_until(lambda: session_info(server, "fish7")["adaptation"]["stopped"], "automatic rounds to stop")
    assert "max_rounds" in session_info(server, "fish7")["adaptation"]["stopped"]


def test_the_client_opens_and_finetunes_a_new_animal(start_server):
    from poco_rt.clients import ForecastClient

    server = start_server()
    with ForecastClient(server.url) as client:
        opened = client.open_new_animal("fish7", units=4, adapt={"after_s": 60})
        assert opened["zero_shot"] and opened["adaptation"]["auto"]["after_s"] == 60
        with pytest.raises(RequestRefused, match=r"409.*fine-tuning needs at least"):
            client.finetune_session("fish7")
