"""New animals from the command line: `poco-rt serve --session NAME:UNITS --adapt`, and
`poco-rt recording finetune` on the recording such a stream leaves behind."""

from __future__ import annotations

import httpx
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
