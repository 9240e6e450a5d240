"""Faults from outside the server: `poco-rt serve` killed outright mid-stream and mid-job, a recording folder lost.

SIGKILL is what the out-of-memory killer, a power button held down or `docker kill` do: no
shutdown code runs. What must survive is what the server had acknowledged: every frame it
reported recorded is on disk, in order and bit-exact, and the jobs in its SQLite table are
neither lost nor run twice. The publisher, which never restarts, must reach the restarted server.
A disk that fails under the recorder must cost the recording, counted, never the forecasts.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from poco_rt.clients import FramePublisher
from poco_rt.server.recording_files import read_recorded_frames, session_recordings
from tests.helpers import QUICK, SLOW, free_port, scraped_metric, wait_for_job, wait_until, worker_pids

CHUNK_FRAMES = 32
ACKNOWLEDGED_FRAMES = 100  # streamed and reported recorded before the kill; more follow until it


def test_a_killed_server_keeps_every_acknowledged_frame_and_its_restart_recovers_sessions_and_jobs(
    serve_process, served_bundle: Path, tiny_recording, tmp_path: Path
):
    data_dir = tmp_path / "data"
    http_port, frame_port, forecast_port = free_port(), free_port(), free_port()
    args = ["--bundle", str(served_bundle), "--data-dir", str(data_dir), "--http-port", str(http_port),
            "--frame-port", str(frame_port), "--forecast-port", str(forecast_port), "--session", "sim00",
            "--recorder-chunk-frames", str(CHUNK_FRAMES), "--job-workers", "1"]  # fmt: skip
    traces = tiny_recording.session("sim00").traces
    server = serve_process(*args)
    streaming = threading.Event()
    with (
        httpx.Client(base_url=server.url, timeout=10) as http,
        FramePublisher(f"tcp://127.0.0.1:{frame_port}", session="sim00") as publisher,
    ):
        running = http.post("/v1/jobs/pinning", json=SLOW).json()["id"]
        wait_for_job(http, running, {"running"})
        queued = http.post("/v1/jobs/pinning", json=QUICK).json()["id"]
        orphan_candidates = worker_pids(running)
        assert orphan_candidates

        for frame in traces[:ACKNOWLEDGED_FRAMES]:
            publisher.send(frame)
            time.sleep(0.002)
        wait_until(
            lambda: scraped_metric(http, "poco_rt_recorded_frames_total") >= ACKNOWLEDGED_FRAMES, "frames recorded"
        )

        def stream_on() -> None:  # the rig does not stop because the server did: 200 Hz, through the restart
            for frame in traces[ACKNOWLEDGED_FRAMES:]:
                if not streaming.is_set():
                    return
                publisher.send(frame)
                time.sleep(0.005)

        streaming.set()
        streamer = threading.Thread(target=stream_on, daemon=True)
        streamer.start()
        time.sleep(0.3)
        assert server.signal(signal.SIGKILL) == -signal.SIGKILL
        wait_until(lambda: worker_pids(running) == [], "the dead server's job worker exits", timeout_s=10)

        restarted = serve_process(*args)
        assert restarted.url == server.url
        wait_until(lambda: http.get("/v1/sessions/sim00").json()["frames_accepted"] > 0, "the publisher's frames")
        streaming.clear()
        streamer.join(10)

        jobs = {job["id"]: job for job in http.get("/v1/jobs").json()}
        assert set(jobs) == {running, queued}  # nothing lost, nothing duplicated
        assert jobs[running]["state"] == "interrupted" and "retry" in jobs[running]["error"]
        assert wait_for_job(http, queued, {"succeeded", "failed"})["state"] == "succeeded"
        assert http.get(f"/v1/jobs/{queued}").json()["attempt"] == 1

    killed, reopened = session_recordings(data_dir / "recordings", "sim00")
    recorded = read_recorded_frames(killed)
    count = len(recorded.frame_index)
    assert count >= ACKNOWLEDGED_FRAMES
    np.testing.assert_array_equal(recorded.frame_index, np.arange(count))
    np.testing.assert_array_equal(recorded.values, traces[:count].astype(np.float32))
    complete = read_recorded_frames(killed, include_partial=False)
    assert len(complete.frame_index) == count // CHUNK_FRAMES * CHUNK_FRAMES  # every full chunk was made complete
    assert len(read_recorded_frames(reopened).frame_index) > 0


def test_a_recording_folder_that_vanishes_mid_stream_is_counted_and_forecasting_goes_on(
    start_server, stream_client, tiny_recording
):
    import shutil

    server = start_server(recorder_chunk_frames=8)
    traces = tiny_recording.session("sim00").traces
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        client = stream_client(server)
        for index, frame in enumerate(traces[:60]):
            client.send(frame, frame_index=index)
        wait_until(lambda: scraped_metric(http, "poco_rt_recorded_frames_total") >= 60, "the first frames recorded")
        (recording,) = session_recordings(server.settings.recordings_dir, "sim00")
        shutil.rmtree(recording)  # the disk, or an operator, takes the folder away while the server writes
        for index, frame in enumerate(traces[60:120], start=60):
            client.send(frame, frame_index=index)
        wait_until(lambda: http.get("/v1/sessions/sim00").json()["frames_accepted"] == 120, "frames after the loss")
        wait_until(
            lambda: scraped_metric(http, "poco_rt_recorder_write_errors_total") >= 1, "the failed writes counted"
        )
        last = None
        while not client.nothing_within(0.5):
            last = client.receive()
        assert last is not None and last.header.frame_index == 119  # forecasting never stopped
        assert http.get("/readyz").status_code == 200


def test_a_publisher_that_restarts_its_count_mid_stream_resets_the_session_and_loses_no_frame(
    start_server, stream_client, tiny_recording
):
    server = start_server()
    context_frames = 48
    traces = tiny_recording.session("sim00").traces
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/sessions", json={"name": "sim00"}).raise_for_status()
        watcher = stream_client(server)
        for run in range(2):  # the acquisition software, started, stopped, started again: indices from 0 twice
            with FramePublisher(server.frame_endpoint, session="sim00", linger_s=2) as publisher:
                for frame in traces[run * 60 : (run + 1) * 60]:
                    publisher.send(frame)
            wait_until(lambda n=(run + 1) * 60: http.get("/v1/sessions/sim00").json()["frames_accepted"] == n,
                       f"run {run}'s frames")  # fmt: skip
        session = http.get("/v1/sessions/sim00").json()
        assert (session["resets"], session["frames_dropped"], session["state"]) == (1, 0, "streaming")
        indices = []
        while not watcher.nothing_within(0.5):
            indices.append(watcher.receive().header.frame_index)
        second_run = indices[indices.index(59) + 1 :]  # a backlog is forecast once, from its newest frame
        assert second_run[-1] == 59 and min(second_run) >= context_frames - 1  # warmed up again on the new count
        http.delete("/v1/sessions/sim00").raise_for_status()
    (recording,) = session_recordings(server.settings.recordings_dir, "sim00")
    # The recorder thread completes a closed session's last chunk after DELETE returns (the ingest thread never
    # waits for the disk): read the recording once it has.
    wait_until(lambda: len(read_recorded_frames(recording, include_partial=False).frame_index) == 120,
               "the recording's last chunk completed")  # fmt: skip
    recorded = read_recorded_frames(recording, include_partial=False)
    np.testing.assert_array_equal(recorded.frame_index, np.concatenate([np.arange(60), np.arange(60)]))
    np.testing.assert_array_equal(recorded.values, traces[:120].astype(np.float32))
