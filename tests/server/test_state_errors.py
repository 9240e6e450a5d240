"""Bad state on disk: a malformed bundle, a broken job table, an unusable data directory.

Each is refused with a message naming the problem: `BundleError` / `JobStoreUnavailable` /
`DataDirUnusable` in the library, a JSON 4xx or 503 over REST, exit status 2 and no traceback from
`poco-rt serve`; a bad row never stops the job runner.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from poco_rt.bundle import load_bundle, rewrite_manifest
from poco_rt.errors import BundleError, DataDirUnusable, JobStoreUnavailable
from poco_rt.resources import default_bundle_path
from poco_rt.server.engine import Engine
from poco_rt.server.jobs.store import JobState, JobStore
from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.recorder import Recorder
from tests.helpers import QUICK


def bundle_copy(tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(default_bundle_path(), copy)
    return copy


def edit_manifest(bundle: Path, edit) -> Path:
    manifest = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps(edit(manifest)))
    return bundle


def malformed_bundles(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Bundles the server must refuse, each with the words its refusal must hold."""
    listed = bundle_copy(tmp_path, "a-list")
    (listed / "bundle.json").write_text("[1, 2]")
    latin1 = bundle_copy(tmp_path, "not-utf8")
    (latin1 / "bundle.json").write_bytes(b'{"format_version": 1, "note": "caf\xe9"}')
    no_hashes = edit_manifest(
        bundle_copy(tmp_path, "no-hashes"), lambda m: {k: v for k, v in m.items() if k != "hashes"}
    )
    climbing = edit_manifest(bundle_copy(tmp_path, "climbing"), lambda m: m | {"sessions": ["../../escape"]})
    outside = edit_manifest(
        bundle_copy(tmp_path, "outside"), lambda m: m | {"hashes": m["hashes"] | {"/etc/hostname": "0" * 64}}
    )
    garbage = bundle_copy(tmp_path, "garbage-onnx")
    (garbage / "model.onnx").write_bytes(b"\x08\x07 this is not a network " * 40)
    rewrite_manifest(garbage, json.loads((garbage / "bundle.json").read_text()))  # its hash matches the garbage
    return {
        "list": (listed, "must hold a JSON object, not a list"),
        "not-utf8": (latin1, "not UTF-8 text"),
        "no-hashes": (no_hashes, "hashes must be an object of file -> sha256, not NoneType"),
        "climbing": (climbing, "session name '../../escape' must be 1-128 of [A-Za-z0-9._-]"),
        "outside": (outside, "hashes lists '/etc/hostname', which is not a bundle file"),
        "garbage-onnx": (garbage, "model.onnx: onnxruntime cannot load it as a network"),
    }


def test_each_malformed_bundle_is_a_bundle_error_naming_the_problem(tmp_path):
    for name, (bundle, words) in malformed_bundles(tmp_path).items():
        with pytest.raises(BundleError) as refused:
            Engine(load_bundle(bundle))
        assert words in str(refused.value), name


def test_loading_a_malformed_bundle_over_rest_is_a_422_and_the_server_serves_on(start_server, tmp_path):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for name, (bundle, words) in malformed_bundles(tmp_path).items():
            response = http.post("/v1/bundles", json={"path": str(bundle)})
            assert response.status_code == 422, (name, response.text)
            assert words in response.json()["detail"], name
        assert len(http.get("/v1/bundles").json()) == 1
        assert http.get("/readyz").status_code == 200


def serve_refused(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poco_rt.cli.main", "serve", "--http-port", "0", "--frame-port", "0",
         "--forecast-port", "0", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_poco_rt_serve_refuses_a_bad_bundle_or_job_table_with_status_2_and_no_traceback(tmp_path):
    listed = bundle_copy(tmp_path, "a-list")
    (listed / "bundle.json").write_text("[1, 2]")
    refused = serve_refused("--bundle", str(listed), "--data-dir", str(tmp_path / "data1"))
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "the server cannot start: " in refused.stderr and "must hold a JSON object, not a list" in refused.stderr
    assert "Traceback" not in refused.stderr

    data = tmp_path / "data2"
    data.mkdir()
    (data / "jobs.sqlite").write_bytes(b"not a database, just bytes " * 200)
    refused = serve_refused("--data-dir", str(data))
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"the job table {data / 'jobs.sqlite'} cannot be" in refused.stderr
    assert "file is not a database" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_locked_job_table_is_job_store_unavailable_naming_the_lock(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite", busy_timeout_ms=100)
    holder = sqlite3.connect(tmp_path / "jobs.sqlite")
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        with pytest.raises(JobStoreUnavailable, match=r"jobs\.sqlite cannot be used: database is locked"):
            store.submit("pinning", QUICK, max_queued=10)
    finally:
        holder.rollback()
        holder.close()
    assert store.submit("pinning", QUICK, max_queued=10).state is JobState.QUEUED  # the lock gone, it works
    store.close()


def test_a_queued_row_with_unreadable_parameters_fails_and_the_next_job_runs(start_server, tmp_path):
    store = JobStore(tmp_path / "data" / "jobs.sqlite")
    bad = store.submit("pinning", QUICK, max_queued=10)
    good = store.submit("pinning", QUICK, max_queued=10)
    store.close()
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite") as connection:
        connection.execute("UPDATE jobs SET params = '{not json' WHERE id = ?", (bad.id,))
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        deadline = time.monotonic() + 60
        while http.get(f"/v1/jobs/{good.id}").json()["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the good job did not finish"
            time.sleep(0.1)
        assert http.get(f"/v1/jobs/{good.id}").json()["state"] == "succeeded"
        failed = http.get(f"/v1/jobs/{bad.id}").json()
        assert (failed["state"], failed["params"]) == ("failed", {})
        assert "parameters in the job table are not a JSON object" in failed["error"]
        assert http.get("/readyz").status_code == 200  # the runner thread lives on


def mount_tmpfs(mount_point: Path, options: str) -> None:
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip() or mounted.returncode}")


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs mount privileges; skipped without them), unmounted after the test."""
    mount_point = tmp_path / "small-disk"
    mount_tmpfs(mount_point, "size=1m")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


@pytest.fixture
def read_only_disk(tmp_path):
    mount_point = tmp_path / "read-only"
    mount_tmpfs(mount_point, "ro,size=64k")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_read_only_data_dir_is_refused_naming_the_folder(read_only_disk):
    recorder = Recorder(root=read_only_disk / "recordings", chunk_frames=4, queue_frames=4, metrics=ServerMetrics())
    with pytest.raises(DataDirUnusable, match=r"cannot create the recordings folder .*: Read-only file system"):
        recorder.start()
    with pytest.raises(JobStoreUnavailable, match=r"jobs\.sqlite cannot be opened: .*Read-only file system"):
        JobStore(read_only_disk / "jobs.sqlite")


def test_a_full_data_dir_answers_job_submissions_and_session_opens_with_503(start_server, small_disk):
    server = start_server(data_dir=small_disk)
    filler = small_disk / "filler"
    with filler.open("wb") as f, pytest.raises(OSError, match="No space left"):
        while True:
            f.write(bytes(64 * 1024))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        job = http.post("/v1/jobs/pinning", json=QUICK)
        assert job.status_code == 503, job.text
        assert "jobs.sqlite cannot be used" in job.json()["detail"]
        session = http.post("/v1/sessions", json={"name": "sim00"})
        assert session.status_code == 503, session.text
        assert "cannot start a recording of session 'sim00'" in session.json()["detail"]
        filler.unlink()  # room again: both work
        assert http.post("/v1/jobs/pinning", json=QUICK).status_code == 202
        assert http.post("/v1/sessions", json={"name": "sim00"}).status_code == 201


def test_the_job_runner_outlives_a_full_disk_and_records_what_happened_once_there_is_room(start_server, small_disk):
    import os
    import signal

    from tests.helpers import SLOW, wait_for_job, worker_pids

    server = start_server(data_dir=small_disk, job_workers=1)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        job_id = http.post("/v1/jobs/pinning", json=SLOW).json()["id"]
        wait_for_job(http, job_id, {"running"})
        filler = small_disk / "filler"
        with filler.open("wb") as f, pytest.raises(OSError, match="No space left"):
            while True:
                f.write(bytes(64 * 1024))
        for pid in worker_pids(job_id):
            os.kill(pid, signal.SIGKILL)  # its end cannot be written down while the disk is full
        time.sleep(1.0)  # several runner turns fail to record it
        assert http.get("/readyz").status_code == 200  # the runner thread lives on
        assert http.get(f"/v1/jobs/{job_id}").json()["state"] == "running"
        filler.unlink()
        failed = wait_for_job(http, job_id, {"failed"}, timeout_s=10)
        assert "killed by SIGKILL" in failed["error"]


def test_poco_rt_serve_refuses_a_read_only_data_dir_with_status_2_naming_it(read_only_disk):
    refused = serve_refused("--data-dir", str(read_only_disk))
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"cannot create the recordings folder {read_only_disk / 'recordings'}: Read-only file system" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr
