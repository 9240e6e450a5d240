"""New animals from the command line: `poco-rt serve --session NAME:UNITS --adapt`, and
`poco-rt recording finetune` on the recording such a stream leaves behind."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from poco_rt.cli.main import build_parser, main
from poco_rt.cli.serve import settings_from


def test_serve_session_name_colon_units_opens_a_new_animal_and_adapt_sets_auto_adapt():
    args = build_parser().parse_args(
        ["serve", "--session", "fish7:312", "--session", "rig1=sim00", "--session", "sim01", "--adapt"]
    )
    settings = settings_from(args)
    assert settings.new_animals == {"fish7": 312}
    assert settings.open_sessions == {"rig1": "sim00", "sim01": "sim01"}
    assert settings.auto_adapt is True
    assert settings_from(build_parser().parse_args(["serve"])).auto_adapt is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fish7:many", "after the colon comes the new animal's unit count, like fish7:312"),
        ("fish7:0", "new_animals['fish7'] = 0 units; it must be 1..max_units"),
    ],
)
def test_serve_refuses_a_new_animal_without_a_whole_unit_count(spec: str, message: str, caplog):
    assert main(["serve", "--session", spec]) == 2
    assert message in caplog.text


def test_poco_rt_serve_opens_a_new_animal_zero_shot_with_automatic_rounds(serve_process, served_bundle, tmp_path):
    server = serve_process(
        "--bundle", str(served_bundle), "--data-dir", str(tmp_path / "data"),
        "--http-port", "0", "--frame-port", "0", "--forecast-port", "0",
        "--session", "fish7:5", "--session", "rig1=sim00", "--adapt",
    )  # fmt: skip
    fish = httpx.get(f"{server.url}/v1/sessions/fish7", timeout=10).raise_for_status().json()
    assert (fish["zero_shot"], fish["calibration"], fish["unit_count"]) == (True, "fish7.zero-shot", 5)
    assert fish["adaptation"]["auto"]["after_s"] == 120.0
    assert fish["adaptation"]["rounds"] == []
    rig = httpx.get(f"{server.url}/v1/sessions/rig1", timeout=10).raise_for_status().json()
    assert (rig["zero_shot"], rig["calibration"], rig["adaptation"]) == (False, "sim00", None)


NEW_ANIMAL_FRAMES = 400  # more than the tiny bundle's minimum for the three parts (C + P = 64 frames each)


@pytest.fixture(scope="module")
def new_animal_traces():
    """An animal the tiny bundle has never seen: another simulated network, (T, N) raw traces."""
    from poco_rt.models.simulator import SimulatorConfig, simulate_recording

    recording = simulate_recording(
        sessions=1, frames=NEW_ANIMAL_FRAMES, seed=7, config=SimulatorConfig(network_units=40)
    )
    return recording.sessions[0].traces


def test_recording_finetune_adapts_a_new_animal_from_the_folder_a_real_server_recorded(
    start_server, stream_client, served_bundle, new_animal_traces, tmp_path, caplog
):
    from poco_rt.bundle import load_bundle
    from poco_rt.clients import ForecastClient
    from poco_rt.normalisation import normalisation_of
    from tests.helpers import wait_until

    frames, units = new_animal_traces.shape
    server = start_server(new_animals={"fish7": units})
    client = stream_client(server, sessions=("fish7",))
    for index, values in enumerate(new_animal_traces):
        client.send(values, frame_index=index, session="fish7")
    with ForecastClient(server.url, timeout_s=10) as rest:
        wait_until(lambda: rest.session("fish7")["frames_accepted"] == frames, "every frame recorded")
        rest.close_session("fish7")
    (recording_dir,) = (tmp_path / "data" / "recordings" / "fish7").iterdir()
    bundle_before = load_bundle(served_bundle).manifest["hashes"]

    out = tmp_path / "fish7-bundle"
    argv = ["recording", "finetune", str(recording_dir), "--out", str(out), "--max-steps", "20", "--patience", "2"]
    with caplog.at_level("INFO"):
        assert main(argv) == 0

    name = f"fish7.{recording_dir.name}"
    assert f"held-out frames 320..{frames}" in caplog.text
    assert f"{name} " in caplog.text and "fish7.zero-shot " in caplog.text  # both scores, by calibration
    adapted = load_bundle(out)
    assert sorted(adapted.sessions) == sorted([*load_bundle(served_bundle).sessions, name])
    calibration = adapted.session(name)
    mean, std = normalisation_of(new_animal_traces)  # every frame of the round, as the server recorded them
    assert calibration.num_units == units
    np.testing.assert_allclose(calibration.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(calibration.std, std, rtol=1e-6)
    assert load_bundle(served_bundle).manifest["hashes"] == bundle_before  # the old version is left as it was

    assert main(argv) == 2  # the same --out again: not a new directory
    assert f"{out} is not an empty directory" in caplog.text
