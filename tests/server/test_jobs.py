"""PINning jobs through the real server: worker processes, the SQLite job table, cancel, limits, recovery."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.targets import bump_target
from poco_rt.models.pinning.trainer import run_schedule, train_networks
from poco_rt.server.jobs.store import JobState, JobStore
from tests.helpers import QUICK, SLOW, wait_for_job, worker_pids


def wait_for_training(client: httpx.Client, job_id: str, timeout_s: float = 30.0) -> list[int]:
    """Wait until the job's worker has finished a pass (so its limits are in force); its pids."""
    deadline = time.monotonic() + timeout_s
    while client.get(f"/v1/jobs/{job_id}").json()["progress"] == 0:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} did not report a pass within {timeout_s} s")
        time.sleep(0.05)
    pids = worker_pids(job_id)
    assert pids, f"job {job_id} reports progress but has no worker process"
    return pids


def test_a_pinning_job_runs_in_a_worker_and_matches_training_in_process(start_server):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        submitted = client.post("/v1/jobs/pinning", json=QUICK)
        assert submitted.status_code == 202
        job = wait_for_job(client, submitted.json()["id"], {"succeeded", "failed"})
        assert job["state"] == "succeeded", job["error"]
        summary = client.get(f"/v1/jobs/{job['id']}/result").json()
        arrays = np.load(io.BytesIO(client.get(f"/v1/jobs/{job['id']}/result.npz").content))

    config = PinningConfig(plastic_fraction=0.5, runs=6, free_runs=1, lesion_runs=1)
    (expected,) = train_networks(bump_target(40), [config])
    assert summary["pvar"] == pytest.approx(expected.pvar, abs=1e-6)
    np.testing.assert_allclose(arrays["weights"], expected.weights, atol=1e-6)
    passes = len(run_schedule(config, 1))
    assert job["progress"] == 1.0
    reported = job["detail"]["pvar_per_pass"]  # every pass, lesion passes included
    assert len(reported) == len(job["detail"]["phase_per_pass"]) == passes
    assert reported[: len(expected.run_pvar)] == pytest.approx(expected.run_pvar.tolist(), abs=1e-6)
    assert job["attempt"] == 1


def test_cancelling_a_running_job_stops_its_worker_and_keeps_it_cancelled(start_server):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        job_id = client.post("/v1/jobs/pinning", json=SLOW).json()["id"]
        (pid,) = wait_for_training(client, job_id)
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        assert os.sched_getaffinity(pid) == set(server.runtime.settings.job_cores())
        cancelled = client.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"
        assert worker_pids(job_id) == []
        time.sleep(0.5)  # a runner turn: it must not mark the killed worker's job failed
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "cancelled"
        again = client.delete(f"/v1/jobs/{job_id}")
        assert again.status_code == 409
        assert "already cancelled" in again.json()["detail"]
        result = client.get(f"/v1/jobs/{job_id}/result")
        assert result.status_code == 409
        assert "not succeeded" in result.json()["detail"]


def test_a_worker_killed_from_outside_marks_its_job_failed_with_the_signal(start_server):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        job_id = client.post("/v1/jobs/pinning", json=SLOW).json()["id"]
        os.kill(wait_for_training(client, job_id)[0], signal.SIGKILL)  # what the kernel's OOM killer does
        job = wait_for_job(client, job_id, {"failed"})
        assert "killed by SIGKILL" in job["error"]
        assert client.get("/readyz").status_code == 200


def test_a_job_over_its_memory_cap_fails_with_memory_error_and_the_server_serves_on(start_server):
    server = start_server(job_memory_mb=600)  # the worker's interpreter fits (~300 MB); an N = 2000 network does not
    with httpx.Client(base_url=server.url, timeout=10) as client:
        params = {"target": "bump", "units": 2000, "runs": 2, "free_runs": 1, "lesion_runs": 0}
        job = wait_for_job(client, client.post("/v1/jobs/pinning", json=params).json()["id"], {"failed", "succeeded"})
        assert job["state"] == "failed"
        assert job["error"].startswith("MemoryError: Unable to allocate")
        assert client.get("/readyz").status_code == 200


def test_queued_jobs_are_limited_and_run_in_order(start_server):
    server = start_server(job_workers=1, max_queued_jobs=1)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        running = client.post("/v1/jobs/pinning", json=SLOW).json()["id"]
        wait_for_job(client, running, {"running"})
        queued = client.post("/v1/jobs/pinning", json=QUICK).json()["id"]
        refused = client.post("/v1/jobs/pinning", json=QUICK)
        assert refused.status_code == 429
        assert "max_queued_jobs=1" in refused.json()["detail"]
        assert client.get(f"/v1/jobs/{queued}").json()["state"] == "queued"
        client.delete(f"/v1/jobs/{running}")
        assert wait_for_job(client, queued, {"succeeded", "failed"})["state"] == "succeeded"
        listed = [job["id"] for job in client.get("/v1/jobs").json()]
        assert listed == [queued, running]  # newest first


def test_a_retry_waits_in_the_same_bounded_queue_as_a_new_job(start_server):
    server = start_server(job_workers=1, max_queued_jobs=1)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        running = client.post("/v1/jobs/pinning", json=SLOW).json()["id"]
        wait_for_job(client, running, {"running"})
        cancelled = client.post("/v1/jobs/pinning", json=QUICK).json()["id"]
        client.delete(f"/v1/jobs/{cancelled}")
        queued = client.post("/v1/jobs/pinning", json=QUICK).json()["id"]
        refused = client.post(f"/v1/jobs/{cancelled}/retry")
        assert refused.status_code == 429
        assert "max_queued_jobs=1" in refused.json()["detail"]
        assert client.get(f"/v1/jobs/{cancelled}").json()["state"] == "cancelled"
        client.delete(f"/v1/jobs/{queued}")
        assert client.post(f"/v1/jobs/{cancelled}/retry").status_code == 202  # a place came free
        client.delete(f"/v1/jobs/{running}")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"runs": 0}, "greater than or equal to 1"),
        ({"units": 100_000}, "less than or equal to 2000"),
        ({"target": "recorded-session"}, "give 'session' exactly when target is 'recorded-session'"),
        ({"plastic_fraction": 1.5}, "less than or equal to 1"),
        ({"free_runs": 9, "runs": 5}, "free_runs (9) must not exceed runs (5)"),
        ({"learning_rate": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_job_parameters_are_refused_with_the_reason(start_server, params, message):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.post("/v1/jobs/pinning", json=params)
        assert response.status_code == 422
        assert message in response.text
        assert client.get("/v1/jobs").json() == []


def test_unknown_jobs_and_unrecorded_sessions_are_404(start_server):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/v1/jobs/0123456789abcdef").status_code == 404
        missing = client.post("/v1/jobs/pinning", json={"target": "recorded-session", "session": "nobody"})
        assert missing.status_code == 404
        assert "no recording of session 'nobody'" in missing.json()["detail"]


def test_a_job_can_fit_frames_the_server_recorded(start_server, stream_client, tiny_recording):
    server = start_server()
    httpx.post(f"{server.url}/v1/sessions", json={"name": "rig1", "calibration": "sim00"}).raise_for_status()
    client = stream_client(server, sessions=("rig1",))
    traces = tiny_recording.session("sim00").traces[:80]
    for index, frame in enumerate(traces):
        client.send(frame, frame_index=index, session="rig1", acquisition_time_ns=index * 100_000_000)  # 10 Hz
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/v1/sessions/rig1").json()["frames_accepted"] < len(traces):
        assert time.monotonic() < deadline, "frames were not accepted"
        time.sleep(0.02)
    httpx.delete(f"{server.url}/v1/sessions/rig1").raise_for_status()  # closes (and flushes) the recording
    params = {**QUICK, "target": "recorded-session", "session": "rig1", "unit_indices": [0, 1, 2, 3, 4, 5]}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        job = wait_for_job(http, http.post("/v1/jobs/pinning", json=params).json()["id"], {"succeeded", "failed"})
        assert job["state"] == "succeeded", job["error"]
        arrays = np.load(io.BytesIO(http.get(f"/v1/jobs/{job['id']}/result.npz").content))
    assert job["summary"]["target"].startswith("rig1/")
    assert arrays["target_rates"].shape == (1, len(traces), 6)  # 80 frames at the recorded 10 Hz, 6 units


def test_a_restart_marks_lost_jobs_interrupted_runs_queued_ones_and_a_retry_reruns(start_server, tmp_path):
    store = JobStore(tmp_path / "data" / "jobs.sqlite")  # the table a server that died left behind
    lost = store.submit("pinning", QUICK, max_queued=10)
    store.claim_next()  # it was running when the server died
    waiting = store.submit("pinning", QUICK, max_queued=10)
    store.close()

    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert wait_for_job(client, waiting.id, {"succeeded", "failed"})["state"] == "succeeded"
        interrupted = client.get(f"/v1/jobs/{lost.id}").json()
        assert interrupted["state"] == "interrupted"
        assert "retry" in interrupted["error"]
        assert client.post(f"/v1/jobs/{waiting.id}/retry").status_code == 409  # succeeded: nothing to re-run
        assert client.post(f"/v1/jobs/{lost.id}/retry").status_code == 202
        rerun = wait_for_job(client, lost.id, {"succeeded", "failed"})
    assert rerun["state"] == "succeeded"
    assert rerun["attempt"] == 2


def test_stopping_the_server_interrupts_running_jobs_and_leaves_no_worker(start_server, tmp_path):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        job_id = client.post("/v1/jobs/pinning", json=SLOW).json()["id"]
        wait_for_job(client, job_id, {"running"})
    server.stop()
    assert worker_pids(job_id) == []
    store = JobStore(tmp_path / "data" / "jobs.sqlite")
    job = store.get(job_id)
    store.close()
    assert job.state is JobState.INTERRUPTED
    assert "shut down" in (job.error or "")


def test_stale_worker_reports_change_nothing(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.submit("pinning", QUICK, max_queued=10)
    claimed = store.claim_next()
    store.cancel(job.id)
    assert not store.report_progress(job.id, claimed.attempt, 0.5, {})
    assert not store.succeed(job.id, claimed.attempt, {"pvar": 1.0})
    assert store.get(job.id).state is JobState.CANCELLED
    store.requeue(job.id, max_queued=10)
    again = store.claim_next()
    assert not store.succeed(job.id, claimed.attempt, {"pvar": 1.0})  # the first attempt's late report
    assert store.succeed(job.id, again.attempt, {"pvar": 0.5})
    assert store.get(job.id).summary == {"pvar": 0.5}
    store.close()


def test_jobs_and_the_ingest_thread_get_different_cores_where_there_are_several():
    from poco_rt.server.settings import ServerSettings, available_cores

    settings = ServerSettings()
    cores = available_cores()
    if len(cores) == 1:
        assert settings.job_cores() == settings.realtime_cores() == cores
    else:
        assert settings.job_cores() == cores[1:]
        assert settings.realtime_cores() == cores[:1]
    assert ServerSettings(job_cpus=cores).realtime_cores() == cores  # jobs everywhere: ingest may run anywhere too
    if len(cores) > 1:
        assert not set(settings.io_cores()) & set(settings.realtime_cores())
    assert ServerSettings(job_cpus=cores).io_cores() == cores


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread affinities from Linux's /proc")
def test_zeromq_io_threads_of_poco_rt_serve_run_off_the_ingest_threads_core(serve_process, served_bundle, tmp_path):
    from poco_rt.server.settings import ServerSettings

    server = serve_process("--bundle", str(served_bundle), "--data-dir", str(tmp_path / "data"), "--http-port", "0",
                           "--frame-port", "0", "--forecast-port", "0")  # fmt: skip
    threads = Path(f"/proc/{server.process.pid}/task").iterdir()
    io_threads = [thread for thread in threads if (thread / "comm").read_text().startswith("ZMQbg/IO")]
    assert io_threads  # libzmq's I/O thread, started with the ingest thread's first socket
    for thread in io_threads:
        assert os.sched_getaffinity(int(thread.name)) == set(ServerSettings().io_cores())
