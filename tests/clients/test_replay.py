"""Replay: recorded frames on an absolute schedule, scored as forecasts come back; `poco-rt replay` against a server."""

from __future__ import annotations

import re
import sys
import time

import numpy as np
import pytest

from poco_rt.cli.main import main
from poco_rt.clients import (
    ForecastClient,
    ForecastTiming,
    ForecastUpdate,
    Replay,
    RequestRefused,
    connect_replay,
    read_session,
)
from poco_rt.resources import demo_recording_path
from tests.helpers import C, P


class RecordingPublisher:
    """Stands in for FramePublisher: remembers when each frame went out; frame `slow_at` takes `delay_s`."""

    def __init__(self, *, slow_at: int = -1, delay_s: float = 0.0) -> None:
        self.sent: list[tuple[int, float]] = []
        self.frames: list[np.ndarray] = []
        self.slow_at, self.delay_s = slow_at, delay_s

    def send(self, frame: np.ndarray, index: int) -> bool:
        if index == self.slow_at:
            time.sleep(self.delay_s)
        self.sent.append((index, time.monotonic()))
        self.frames.append(frame)
        return True


class LateSubscriber:
    """Stands in for a subscriber whose forecasts all arrive after the last frame has gone out."""

    def __init__(self, publisher: RecordingPublisher, frames: int, forecasts: dict[int, np.ndarray]) -> None:
        self.publisher, self.frames = publisher, frames
        self.waiting = [
            ForecastUpdate(k, forecast, ForecastTiming(acquisition_time_ns=0, received_ns=0, inferred_ns=0,
                                                       sent_ns=0, delivered_ns=0))
            for k, forecast in sorted(forecasts.items())
        ]  # fmt: skip

    def receive(self, timeout_s: float | None) -> ForecastUpdate:
        if len(self.publisher.sent) < self.frames or not self.waiting:
            time.sleep(min(timeout_s or 0.0, 0.001))
            raise TimeoutError
        return self.waiting.pop(0)


@pytest.fixture(scope="module")
def traces() -> np.ndarray:
    return read_session(demo_recording_path(), "sim02").traces[:120]  # (T, N) raw


def test_a_late_frame_does_not_delay_the_ones_after_it(traces):
    """At 10 Hz, so that a busy machine's scheduling (milliseconds) stays well inside the 40 ms tolerance."""
    publisher = RecordingPublisher(slow_at=2, delay_s=0.4)
    replay = Replay(
        traces, session="sim02", publisher=publisher, subscriber=LateSubscriber(publisher, 10**9, {}),
        context_frames=C, horizon=P, rate_hz=10, max_frames=12,
    )  # fmt: skip
    replay.run(tail_timeout_s=0.01)
    started = publisher.sent[0][1]
    offsets_ms = [(at - started) * 1e3 for _, at in publisher.sent]
    assert [index for index, _ in publisher.sent] == list(range(12))
    assert offsets_ms[3] > 375  # frames 2..5 were late behind the slow one ...
    for k in range(6, 12):  # ... and the schedule after them is the original one: no drift
        assert offsets_ms[k] == pytest.approx(k * 100, abs=40)


@pytest.mark.parametrize(("loop", "sent_rows"), [(False, list(range(10))), (True, [*range(10), *range(10), *range(5)])])
def test_a_replay_stops_at_the_end_of_the_file_unless_it_loops(traces, loop, sent_rows):
    publisher = RecordingPublisher()
    replay = Replay(
        traces[:10], session="sim02", publisher=publisher, subscriber=LateSubscriber(publisher, 10**9, {}),
        context_frames=C, horizon=P, rate_hz=0, first_index=100, loop=loop, max_frames=25,
    )  # fmt: skip
    status = replay.run(tail_timeout_s=0.01)
    assert [index for index, _ in publisher.sent] == [100 + k for k in range(len(sent_rows))]  # indices never repeat
    np.testing.assert_array_equal(np.stack(publisher.frames), traces[sent_rows])
    assert status.frames_sent == len(sent_rows)


@pytest.mark.parametrize(("forecaster", "score"), [("perfect", 1.0), ("copy_last", 0.0)])
def test_forecasts_that_arrive_late_are_still_scored_against_their_targets(traces, forecaster, score):
    frames = len(traces)
    forecasts = {
        k: traces[k + 1 : k + 1 + P].T if forecaster == "perfect" else np.repeat(traces[k][:, None], P, axis=1)
        for k in range(C - 1, frames - P)
    }
    publisher = RecordingPublisher()
    replay = Replay(
        traces, session="sim02", publisher=publisher, subscriber=LateSubscriber(publisher, frames, forecasts),
        context_frames=C, horizon=P, rate_hz=0,
    )  # fmt: skip
    status = replay.run(tail_timeout_s=0.5)
    assert status.frames_sent == frames and status.forecasts_received == len(forecasts)
    assert status.scored_forecasts == len(forecasts)
    assert status.score == pytest.approx(score, abs=1e-6)


def test_replay_command_opens_the_stream_streams_the_file_and_scores_it(start_default_server, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich's width when output is not a terminal: one line per summary
    server = start_default_server()
    argv = ["replay", str(demo_recording_path()), "--session", "sim01", "--rate", "100", "--seconds", "8"]
    assert main([*argv, "--server", server.url, "--via", "websocket"]) == 0
    out = capsys.readouterr().out
    session = server.runtime.session_status("sim01")
    assert (session.frames_accepted, session.calibration) == (80, "sim01")
    summary = re.search(r"(\d+) forecasts over 80 frames in [\d.]+ s; live score ([+-]\d\.\d+) against copy-last", out)
    assert summary is not None, out
    assert 0 < int(summary[1]) <= 80 - C + 1
    assert float(summary[2]) > 0  # beats copy-last on frames the bundle never saw


def test_a_second_replay_resets_the_stream_instead_of_mixing_contexts(start_default_server, traces):
    server = start_default_server(open_sessions={"sim02": "sim02"})
    for _ in range(2):
        with connect_replay(traces, session="sim02", server_url=server.url, rate_hz=0, max_frames=60) as replay:
            status = replay.run()
        assert status.frames_sent == 60 and status.forecasts_received >= 1  # flat out, the server coalesces
    session = server.runtime.session_status("sim02")
    gap = server.settings.max_gap_fill_frames + 1
    assert (session.frames_accepted, session.resets, session.last_frame_index) == (120, 1, 59 + gap + 60)


def test_a_replay_that_does_not_fit_its_calibration_leaves_no_stream_open(start_default_server, traces):
    server = start_default_server()
    wider = np.concatenate([traces, traces[:, :1]], axis=1)  # one unit more than calibration sim00 has
    replay = connect_replay(wider, session="sim00", server_url=server.url, rate_hz=0, max_frames=5)
    with pytest.raises(ValueError, match="units but stream 'sim00'"), replay:
        pass
    with ForecastClient(server.url) as client, pytest.raises(RequestRefused) as refused:
        client.session("sim00")
    assert refused.value.status_code == 404


def test_an_hdf5_recording_without_h5py_names_the_extra_to_install(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "h5py", None)  # as in the serving install
    (tmp_path / "worm.h5").write_bytes(b"")
    assert main(["replay", str(tmp_path / "worm.h5")]) == 2
    assert "reading HDF5 recordings needs h5py" in caplog.text
    assert "pip install 'poco-rt[train]'" in caplog.text
