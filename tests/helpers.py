"""Helpers the test modules share: constants, the tiny model, waiting, ports, metrics. Fixtures are in conftest.py.

Metrics are read one way per situation, each by (sample name, labels) to the value or None: what a scraper
sees over HTTP (the server may be another process) with `scraped_metric`; in process, the registry itself,
with `server.runtime.metric_value`, or on a bare ServerMetrics with `metrics.registry.get_sample_value`,
the prometheus_client call that metric_value makes.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from poco_rt.bundle import load_bundle, write_bundle
from poco_rt.models.config import ModelConfig, TrainConfig
from poco_rt.models.recording import Recording

if TYPE_CHECKING:
    from poco_rt.models.poco import Poco

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


def scraped_metric(source: httpx.Client | str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample of /metrics as a Prometheus scraper parses it; None if the scrape has no such sample.

    `source` is an httpx client with the server's base URL, scraped now, or the text of one scrape, so
    that several reads see the same moment. `name` and `labels` as for `ServerRuntime.metric_value`:
    the sample's full name (`..._total`, `..._count`) and every one of its labels."""
    text = source if isinstance(source, str) else source.get("/metrics").raise_for_status().text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == (labels or {}):
                return sample.value
    return None


# --- models and bundles ----------------------------------------------------------------------------------

ONNX_TOLERANCE = 1e-4  # max abs difference, normalised units (measured ~1e-6)
FOLD_TOLERANCE = 1e-5  # max abs difference, normalised units: only the order of float sums changes


def opened_model(config: ModelConfig) -> Poco:
    """A POCO whose every weight is random, the zero-initialised FiLM gate included (imports torch)."""
    import torch

    from poco_rt.models.config import SessionLayout, SessionSpec
    from poco_rt.models.poco import Poco

    torch.manual_seed(0)
    model = Poco(config, SessionLayout((SessionSpec("d", "s", 4),))).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    return model


def rewritten_bundle(source: Path, out: Path, *, scale_weights: float = 1.0, shift_sim00: float = 0.0) -> Path:
    """A copy of `source` with one weight matrix scaled (a new network) and/or sim00's calibration moved."""
    import onnx
    from onnx import numpy_helper

    bundle = load_bundle(source)
    model = onnx.load(str(bundle.model_path))
    if scale_weights != 1.0:
        initializer = max(model.graph.initializer, key=lambda tensor: numpy_helper.to_array(tensor).size)
        scaled = numpy_helper.to_array(initializer) * scale_weights
        initializer.CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), initializer.name))
    sessions = list(bundle.sessions.values())
    if shift_sim00:
        old = bundle.sessions["sim00"]
        new = type(old)(
            name="sim00",
            unit_ids=old.unit_ids,
            unit_embeddings=(old.unit_embeddings + shift_sim00).astype(np.float32),
            mean=(old.mean + shift_sim00).astype(np.float32),
            std=(old.std * (1 + shift_sim00)).astype(np.float32),
        )
        sessions = [new if s.name == "sim00" else s for s in sessions]
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("hashes", "sessions", "format_version")}
    return write_bundle(out, model_onnx=model.SerializeToString(), sessions=sessions, manifest=manifest).path


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
