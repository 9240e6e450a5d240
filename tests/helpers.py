"""Helpers the test modules share: constants, the tiny model, waiting, ports. Fixtures are in conftest.py."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from poco_rt.models.config import ModelConfig, TrainConfig
from poco_rt.models.recording import Recording

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FLAVELL = SHARED_DATA / "flavell_dag2023"

C, P = ModelConfig().context_frames, ModelConfig().horizon  # every bundle the tests serve: the embedded one, the tiny
TINY_MODEL = ModelConfig(dim=32, head_dim=16, self_attention_heads=2, ffn_hidden=32, mlp_hidden=64, rotary_dims=8)
TINY_TRAIN = TrainConfig(steps=30, batch_windows=16, eval_every=10, seed=0, threads=1)


def train_tiny(
    recording: Recording, run: Path, *, model_config: ModelConfig = TINY_MODEL, train_config: TrainConfig = TINY_TRAIN
) -> None:
    from poco_rt.models.training import train

    train(
        [recording],
        str(run),
        model_config=model_config,
        train_config=train_config,
        sources=["tiny"],
        show_progress=False,
    )


def needs_flavell() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not FLAVELL.exists(), reason=f"real recordings not present at {FLAVELL}")


def wait_until(condition, what: str, timeout_s: float = 20.0) -> None:
    """Poll `condition` until it holds; a failed test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)


def free_port() -> int:
    """A port no one listens on now, for a server that must come back on the same address after a restart."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- jobs ------------------------------------------------------------------------------------------------

QUICK = {"target": "bump", "units": 40, "plastic_fraction": 0.5, "runs": 6, "free_runs": 1, "lesion_runs": 1}
SLOW = {"target": "bump", "units": 400, "runs": 1000}  # minutes of work: cancelled or interrupted long before


class JobReader(Protocol):
    def job(self, job_id: str) -> dict: ...


def wait_for_job(
    source: httpx.Client | JobReader, job_id: str, states: set[str] | None = None, timeout_s: float = 60.0
) -> dict:
    """Poll job `job_id` (over an httpx client with the server's base URL, or a ForecastClient) until its
    state is one of `states`, or, without `states`, until it has left queued and running."""

    def read() -> dict:
        return source.get(f"/v1/jobs/{job_id}").json() if isinstance(source, httpx.Client) else source.job(job_id)

    deadline = time.monotonic() + timeout_s
    while True:
        job = read()
        if (job["state"] in states) if states else job["state"] not in ("queued", "running"):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['state']} after {timeout_s} s (waiting for {states or 'its end'})")
        time.sleep(0.05)


def worker_pids(job_id: str) -> list[int]:
    """The job worker processes running `job_id` (their command line names the worker module and the job)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue  # not a process, or it ended while we looked
        if b"poco_rt.server.jobs.worker" in command and job_id.encode() in command:
            pids.append(int(entry.name))
    return pids
