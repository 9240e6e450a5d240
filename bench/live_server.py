"""A real `poco-rt serve` for the benchmarks: its own process, OS-picked ports, and the bundle it serves.

The benchmarks measure the server as it runs on a rig, so it is a separate process (its own GIL,
its own memory), not the demo's in-process BackgroundServer. `bench_bundle` gives the embedded
bundle a calibration of any unit count (the embedded animals have 63-117 units), so that N is a
free parameter of every benchmark. Shared by bench/latency.py and bench/soak.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from poco_rt.bundle import NETWORK_FILES, SESSIONS_DIR, SessionCalibration, load_bundle, rewrite_manifest

SESSION = "bench"


def bench_bundle(source: Path, out: Path, units: int, seed: int = 0) -> Path:
    """A copy of `source` (every network file it has) with one more session, `bench`, of `units` units (numpy only)."""
    bundle = load_bundle(source)
    first = next(iter(bundle.sessions.values()))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, first.num_units, size=units)
    embeddings = first.unit_embeddings[picks] + 0.01 * rng.standard_normal((units, bundle.embedding_dim))
    session = SessionCalibration(
        name=SESSION,
        unit_ids=tuple(f"u{i}" for i in range(units)),
        unit_embeddings=embeddings.astype(np.float32),
        mean=np.zeros(units, np.float32),
        std=np.ones(units, np.float32),
    )
    (out / SESSIONS_DIR).mkdir(parents=True)
    for name in NETWORK_FILES:
        if (bundle.path / name).exists():
            shutil.copyfile(bundle.path / name, out / name)
    for calibration in [*bundle.sessions.values(), session]:
        calibration.save(out / SESSIONS_DIR / f"{calibration.name}.npz")
    return rewrite_manifest(out, bundle.manifest).path


class Server:
    """`poco-rt serve` in its own process, on OS-picked ports, found through its log and GET /v1/server.

    `sessions` are `--session` values (`NAME` or `NAME=CALIBRATION`), opened at start; `log`, if
    given, receives the server's log (else it is read and discarded, so that the pipe never fills);
    `token`, if given, is the server's `--auth-token`.
    """

    def __init__(
        self,
        bundle: Path,
        data_dir: Path,
        *,
        job_workers: int = 1,
        engine_flags: list[str],
        sessions: Sequence[str] = (SESSION,),
        log: Path | None = None,
        token: str | None = None,
    ) -> None:
        command = [sys.executable, "-m", "poco_rt.cli.main", "serve", "--bundle", str(bundle), "--data-dir"]
        command += [str(data_dir), "--http-port", "0", "--frame-port", "0", "--forecast-port", "0"]
        for session in sessions:
            command += ["--session", session]
        command += ["--job-workers", str(job_workers), *engine_flags]
        command += ["--auth-token", token] if token else []  # a bench's own token: `ps` may show it
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self._log = log.open("a") if log is not None else None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            self._write_log(line)
            if not line and self.process.poll() is not None:
                raise RuntimeError("the server exited before it started")
            found = re.search(r"HTTP on (http://\S+)", line)
            url = found.group(1) if found else None
        threading.Thread(target=self._drain_log, daemon=True).start()
        if url is None:
            raise RuntimeError("the server did not log its HTTP address within 60 s")
        self.url = url
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready within 60 s")
            time.sleep(0.1)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.info = httpx.get(f"{url}/v1/server", headers=headers, timeout=5).raise_for_status().json()

    def _write_log(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line)
            self._log.flush()

    def _drain_log(self) -> None:
        for line in self.process.stderr:
            self._write_log(line)  # the log is not part of any measurement; kept only when asked for

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)

    def start_pinning_jobs(self, count: int, *, seconds: float) -> list[str]:
        """Submit `count` PINning jobs long enough to outlast `seconds`, and wait until all of them run."""
        runs = max(20, int(seconds * 5))  # a pass of an N = 500 network takes well over 0.2 s here
        params = {"target": "bump", "units": 500, "plastic_fraction": 0.1, "runs": runs, "free_runs": 5}
        ids = [httpx.post(f"{self.url}/v1/jobs/pinning", json=params, timeout=5).json()["id"] for _ in range(count)]
        deadline = time.monotonic() + 60
        while any(self.job(i)["state"] != "running" or self.job(i)["progress"] == 0 for i in ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the PINning jobs did not start training within 60 s: {[self.job(i) for i in ids]}")
            time.sleep(0.2)
        return ids

    def reopen_session(self) -> None:
        """A fresh stream for the next measurement: it counts frames from 0 again and warms up again."""
        httpx.delete(f"{self.url}/v1/sessions/{SESSION}", timeout=5).raise_for_status()
        httpx.post(f"{self.url}/v1/sessions", json={"name": SESSION}, timeout=5).raise_for_status()

    def job(self, job_id: str) -> dict:
        return httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=5).json()
