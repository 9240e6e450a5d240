"""PINning sweep jobs through the real server: trained in the job's worker, or handed to the Dask
cluster the server is configured with; the same pVar table either way, and limits at submission."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from poco_rt.models.pinning.cluster import connect
from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.sweep import sweep
from poco_rt.models.pinning.targets import bump_target
from tests.helpers import wait_for_job

SWEEP = {
    "target": "bump",
    "units": 40,
    "plastic_fractions": [0.2, 0.5],
    "seeds": [0, 1],
    "runs": 6,
    "free_runs": 1,
    "lesion_runs": 0,
}


@pytest.fixture(scope="module")
def expected_pvar() -> np.ndarray:
    base = PinningConfig(runs=6, free_runs=1, lesion_runs=0)
    return sweep(bump_target(40), SWEEP["plastic_fractions"], SWEEP["seeds"], base=base).pvar


def run_sweep_job(server) -> tuple[dict, dict, np.ndarray]:
    """Submit SWEEP, wait for it; its job record, its summary and its pVar table (result.npz)."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        submitted = client.post("/v1/jobs/pinning-sweep", json=SWEEP)
        assert submitted.status_code == 202, submitted.text
        job = wait_for_job(client, submitted.json()["id"], {"succeeded", "failed"}, timeout_s=120)
        assert job["state"] == "succeeded", job["error"]
        summary = client.get(f"/v1/jobs/{job['id']}/result").json()
        with np.load(io.BytesIO(client.get(f"/v1/jobs/{job['id']}/result.npz").content)) as arrays:
            return job, summary, arrays["pvar"]


def test_a_sweep_job_without_a_scheduler_trains_in_its_worker(start_server, expected_pvar):
    job, summary, pvar = run_sweep_job(start_server())
    np.testing.assert_array_equal(pvar, expected_pvar)
    assert summary["pvar"] == expected_pvar.tolist()
    assert [point["plastic_fraction"] for point in summary["curve"]] == [0.2, 0.5]
    assert job["progress"] == 1.0
    assert job["detail"]["scheduler"] is None
    assert job["kind"] == "pinning-sweep"


def test_a_sweep_job_goes_to_the_dask_cluster_the_server_is_given(start_server, expected_pvar):
    with connect(workers=2) as cluster:
        address = cluster.scheduler.address
        job, summary, pvar = run_sweep_job(start_server(dask_scheduler=address))
    np.testing.assert_array_equal(pvar, expected_pvar)
    assert summary["pvar"] == expected_pvar.tolist()
    assert job["detail"]["scheduler"] == address
    finished = job["detail"]["finished"]  # [p, seed, pVar] of each network as it landed
    table = {(p, seed): expected_pvar[i, j] for i, p in enumerate([0.2, 0.5]) for j, seed in enumerate([0, 1])}
    assert sorted((p, seed) for p, seed, _ in finished) == sorted(table)
    assert all(value == table[(p, seed)] for p, seed, value in finished)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"plastic_fractions": [0.1] * 2}, "plastic_fractions must be distinct"),
        ({"seeds": list(range(8)), "plastic_fractions": [i / 10 for i in range(9)]}, "72 networks"),
        ({"plastic_fractions": [1.5]}, "less than or equal to 1"),
        ({"seeds": [-1]}, "greater than or equal to 0"),
        ({"plastic_fractions": []}, "at least 1 item"),
        ({"plastic_fraction": 0.1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_sweep_parameters_are_refused_with_the_reason(start_server, params, message):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        refused = client.post("/v1/jobs/pinning-sweep", json={**SWEEP, **params})
    assert refused.status_code == 422
    assert message in refused.text


def test_a_dask_scheduler_setting_must_be_an_address():
    from pydantic import ValidationError

    from poco_rt.server.settings import ServerSettings

    with pytest.raises(ValidationError, match="dask_scheduler"):
        ServerSettings(dask_scheduler="localhost:8786")
