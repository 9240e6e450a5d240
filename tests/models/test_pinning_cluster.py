"""PINning sweeps on Dask: a 2-worker LocalCluster gives the in-process sweep's numbers exactly, a worker
killed mid-sweep loses no network and counts none twice, and `--scheduler` reaches a running cluster."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from poco_rt.cli.main import main
from poco_rt.models.pinning.cluster import connect, sweep_on_cluster
from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.sweep import SweepResult, sweep
from poco_rt.models.pinning.targets import bump_target

BASE = PinningConfig(runs=6, free_runs=1, lesion_runs=0)
FRACTIONS, SEEDS = (0.2, 0.5), (0, 1, 2, 3)
TARGET = bump_target(40)


@pytest.fixture(scope="module")
def client() -> Iterator:
    """The default cluster of `poco-rt pinning sweep`, with 2 workers: a LocalCluster on 127.0.0.1."""
    with connect(workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def in_process() -> SweepResult:
    return sweep(TARGET, FRACTIONS, SEEDS, base=BASE)


def network_keys(networks) -> list[tuple[float, int]]:
    return [(n["config"]["plastic_fraction"], n["config"]["seed"]) for n in networks]


def without_timing(network: dict) -> dict:
    return {name: value for name, value in network.items() if name != "seconds"}


def test_a_sweep_on_a_two_worker_local_cluster_gives_the_in_process_numbers_exactly(client, in_process):
    landed = []
    result = sweep_on_cluster(client, TARGET, FRACTIONS, SEEDS, base=BASE, on_network=landed.append)
    np.testing.assert_array_equal(result.pvar, in_process.pvar)
    assert [without_timing(n) for n in result.networks] == [without_timing(n) for n in in_process.networks]
    assert sorted(network_keys(landed)) == sorted(itertools.product(FRACTIONS, SEEDS))  # each once, as it lands


def test_the_local_cluster_listens_on_loopback_only(client):
    workers = client.scheduler_info()["workers"]
    addresses = [client.scheduler.address, *workers, *(w["nanny"] for w in workers.values())]
    assert len(workers) == 2
    assert all(address.startswith("tcp://127.0.0.1:") for address in addresses), addresses


def test_a_worker_killed_mid_sweep_has_its_networks_re_run_and_every_result_comes_once(in_process):
    landed, killed = [], []
    with connect(workers=2) as client:
        pids = client.run(os.getpid)  # {worker address: its process id}

        def kill_a_busy_worker_once(network: dict) -> None:
            landed.append(network)
            if not killed:
                busy = [address for address, keys in client.processing().items() if keys]
                killed.append((busy[0], client.processing()[busy[0]]))
                os.kill(pids[busy[0]], signal.SIGKILL)

        result = sweep_on_cluster(client, TARGET, FRACTIONS, SEEDS, base=BASE, on_network=kill_a_busy_worker_once)
    ((victim, running),) = killed
    assert running, f"worker {victim} was idle when killed: the test did not kill mid-network"
    assert sorted(network_keys(landed)) == sorted(itertools.product(FRACTIONS, SEEDS))
    np.testing.assert_array_equal(result.pvar, in_process.pvar)


def test_pinning_sweep_sends_its_networks_to_the_scheduler_it_is_given(client, in_process, tmp_path: Path):
    args = ["pinning", "sweep", "--target", "bump", "--units", "40", "--p", "0.2,0.5", "--seeds", "4"]
    fast = ["--runs", "6", "--free-runs", "1", "--lesion-runs", "0", "--quiet"]
    assert main([*args, *fast, "--scheduler", client.scheduler.address, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert [n["pvar"] for n in summary["networks"]] == in_process.pvar.ravel().tolist()


def test_a_sweep_without_dask_installed_names_the_extra_that_brings_it(tmp_path: Path):
    code = """
import importlib.abc, sys
class NoDask(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NoDask())
from poco_rt.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
    args = ["pinning", "sweep", "--units", "20", "--p", "0.5", "--seeds", "1", "--runs", "3", "--free-runs", "1"]
    result = subprocess.run(
        [sys.executable, "-c", code, *args, "--quiet", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "pip install 'poco-rt[cluster]'" in result.stderr
    assert "--scheduler none" in result.stderr
