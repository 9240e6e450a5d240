"""The server's parts on their own: context ring, frame-order policy, settings, rate-limited log, WebSocket slots."""

from __future__ import annotations

import asyncio
import logging
import re

import numpy as np
import pytest

from poco_rt.server.hub import ForecastHub
from poco_rt.server.memory_guard import MemoryGuard
from poco_rt.server.metrics import ServerMetrics
from poco_rt.server.policy import FrameOrder, StrayRun, classify_frame, stray_run_after
from poco_rt.server.ratelog import RateLimitedLog
from poco_rt.server.ring import ContextRing
from poco_rt.server.settings import FrameSocketKind, ServerSettings
from poco_rt.wire import pack_parts, unpack_parts

# --- context ring ------------------------------------------------------------------------------------


def pushed_ring(frames: np.ndarray, context_frames: int) -> ContextRing:
    ring = ContextRing(context_frames=context_frames, num_units=frames.shape[1])
    zeros, ones = np.zeros(frames.shape[1], np.float32), np.ones(frames.shape[1], np.float32)
    for frame in frames:
        assert ring.stage(frame, zeros, ones)
        ring.push_staged()
    return ring


@pytest.mark.parametrize("pushed", [4, 5, 7, 13])
def test_the_ring_gives_the_last_c_frames_oldest_first_as_n_by_c(pushed):
    frames = np.arange(pushed * 3, dtype=np.float32).reshape(pushed, 3)  # (T, N = 3)
    ring = pushed_ring(frames, context_frames=4)
    out = np.empty((3, 4), dtype=np.float32)
    assert ring.context_into(out) is out
    np.testing.assert_array_equal(out, frames[-4:].T)


def test_the_ring_normalises_as_the_engine_does():
    rng = np.random.default_rng(0)
    raw, mean, std = (rng.normal(size=5).astype(np.float32) for _ in range(3))
    std = np.abs(std) + 0.5
    ring = ContextRing(context_frames=2, num_units=5)
    assert ring.stage(raw, mean, std)
    assert ring.filled == 0  # staged, not yet in the context
    ring.push_staged()
    np.testing.assert_array_equal(ring.frames[0], (raw - mean) / std)
    assert (ring.filled, ring.full) == (1, False)


def test_a_frame_that_overflows_once_normalised_is_refused_by_the_ring_before_it_changes():
    ring = pushed_ring(np.ones((2, 3), dtype=np.float32), context_frames=2)
    before = ring.frames.copy()
    raw = np.array([1.0, 3e38, -3e38], dtype=np.float32)  # finite as sent
    assert not ring.stage(raw, np.array([0.0, -1e38, 0.0], np.float32), np.full(3, 0.5, np.float32))
    assert ring.first_overflowing_unit() == 1
    np.testing.assert_array_equal(ring.frames, before)


def test_holding_repeats_the_last_frame_and_reset_empties_the_ring():
    frames = np.arange(6, dtype=np.float32).reshape(3, 2)
    ring = pushed_ring(frames, context_frames=5)
    ring.hold_last(2)
    out = np.empty((2, 5), dtype=np.float32)
    np.testing.assert_array_equal(ring.context_into(out), np.stack([*frames, frames[-1], frames[-1]]).T)
    ring.reset()
    assert (ring.filled, ring.full) == (0, False)


def test_renormalising_keeps_the_raw_values():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(3, 4)).astype(np.float32)
    old_mean, old_std = np.zeros(4, np.float32), np.ones(4, np.float32)
    new_mean, new_std = np.full(4, 0.5, np.float32), np.full(4, 2.0, np.float32)
    ring = pushed_ring(frames, context_frames=3)
    ring.renormalise(old_mean=old_mean, old_std=old_std, new_mean=new_mean, new_std=new_std)
    np.testing.assert_allclose(ring.frames * new_std + new_mean, frames, rtol=1e-6)


def test_a_ring_needs_at_least_one_frame_and_unit():
    with pytest.raises(ValueError, match="context_frames=0 and num_units=3 must both be >= 1"):
        ContextRing(context_frames=0, num_units=3)


# --- frame order policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "index", "expected"),
    [
        (None, 17, (FrameOrder.FIRST, 0)),
        (5, 6, (FrameOrder.NEXT, 0)),
        (5, 7, (FrameOrder.GAP_FILLED, 1)),
        (5, 9, (FrameOrder.GAP_FILLED, 3)),
        (5, 10, (FrameOrder.GAP_RESET, 4)),
        (5, 5, (FrameOrder.DUPLICATE, 0)),
        (5, 2, (FrameOrder.OUT_OF_ORDER, 0)),
    ],
)
def test_frame_order_policy(last, index, expected):
    times = {"last_acquisition_time_ns": None if last is None else 1_000, "acquisition_time_ns": 500}  # a late frame
    assert classify_frame(last, index, max_gap_fill_frames=3, **times) == expected


@pytest.mark.parametrize(
    ("index", "acquired_ns", "expected"),
    [
        (0, 2_000, FrameOrder.RESTART),  # counting from 0 again, later: the acquisition restarted
        (96, 2_000, FrameOrder.RESTART),  # more than max_gap_fill_frames back
        (97, 2_000, FrameOrder.OUT_OF_ORDER),  # a few frames back is a late frame, whatever its stamp
        (0, 1_000, FrameOrder.OUT_OF_ORDER),  # acquired no later: a late frame
        (0, 0, FrameOrder.OUT_OF_ORDER),  # a publisher that stamps no time cannot restart a session
        (100, 2_000, FrameOrder.DUPLICATE),
    ],
)
def test_an_index_far_behind_with_a_later_acquisition_time_restarts_the_session(index, acquired_ns, expected):
    order, missing = classify_frame(
        100, index, max_gap_fill_frames=3, last_acquisition_time_ns=1_000, acquisition_time_ns=acquired_ns
    )
    assert (order, missing) == (expected, 0)
    assert order.taken == (expected is FrameOrder.RESTART) and order.resets == (expected is FrameOrder.RESTART)


def test_no_gap_is_filled_when_the_limit_is_zero():
    order = classify_frame(5, 7, max_gap_fill_frames=0, last_acquisition_time_ns=0, acquisition_time_ns=1)
    assert order == (FrameOrder.GAP_RESET, 1)


FAR_AHEAD = 1_000_100  # a stray frame 10^6 ahead of frame 100 became the last taken one
INT64_MAX = 2**63 - 1


def follow(indices: list[int], *, last: int = FAR_AHEAD, resync_after_frames: int = 4) -> list[FrameOrder]:
    """Each frame's order as the pipeline sees them in turn; the last taken one stamped INT64_MAX."""
    orders, run, last_time = [], None, INT64_MAX
    for index in indices:
        order, _ = classify_frame(
            last, index, max_gap_fill_frames=3, last_acquisition_time_ns=last_time, acquisition_time_ns=1_000 + index,
            stray_run=run, resync_after_frames=resync_after_frames,
        )  # fmt: skip
        run = stray_run_after(run, order, last, index, max_gap_fill_frames=3) if not order.taken else None
        if order.taken:
            last, last_time = index, 1_000 + index
        orders.append(order)
    return orders


DROP, NEXT, RESYNC = FrameOrder.OUT_OF_ORDER, FrameOrder.NEXT, FrameOrder.RESYNC


@pytest.mark.parametrize(
    ("indices", "expected"),
    [
        ([101, 102, 103, 104, 105], [DROP, DROP, DROP, RESYNC, NEXT]),  # the stream goes on: back after R = 4
        ([101, 103, 107, 108], [DROP, DROP, DROP, RESYNC]),  # gaps the gap policy would fill keep the run
        ([101, 102, 110, 111, 112, 113], [DROP, DROP, DROP, DROP, DROP, RESYNC]),  # a longer jump starts it again
        ([101, 102, 102, 103], [DROP, DROP, DROP, DROP]),  # a repeat is not a stream that goes on
        ([101, 102, 103, FAR_AHEAD - 2], [DROP, DROP, DROP, DROP]),  # a late frame (a few back) ends the run
    ],
)
def test_frames_that_agree_with_each_other_resync_a_session_a_stray_frame_got_ahead_of(indices, expected):
    assert follow(indices) == expected


def test_one_stray_frame_far_behind_cannot_move_a_session_back():
    assert follow([5, 101, 102, 103, 104], last=100) == [DROP, FrameOrder.NEXT, NEXT, NEXT, NEXT]


def test_a_resync_resets_the_session_and_the_stray_run_follows_only_frames_far_behind():
    assert FrameOrder.RESYNC.taken and FrameOrder.RESYNC.resets
    assert stray_run_after(None, DROP, 100, 98, max_gap_fill_frames=3) is None  # a few back: a late frame
    assert stray_run_after(None, DROP, 100, 50, max_gap_fill_frames=3) == StrayRun(last_index=50, frames=1)
    assert stray_run_after(StrayRun(50, 1), DROP, 100, 51, max_gap_fill_frames=3) == StrayRun(last_index=51, frames=2)
    assert stray_run_after(StrayRun(50, 1), FrameOrder.DUPLICATE, 100, 100, max_gap_fill_frames=3) is None


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "rig-pc.local"])
def test_a_reachable_bind_without_a_token_is_refused(host):
    with pytest.raises(ValueError, match=rf"host='{re.escape(host)}' is reachable from other machines but auth_token"):
        ServerSettings(host=host)
    assert ServerSettings(host=host, auth_token="t").auth_token.get_secret_value() == "t"
    assert ServerSettings(host=host, allow_unauthenticated_remote=True).host == host
    assert ServerSettings(host="::1").host == "::1" and ServerSettings(host="localhost").host == "localhost"


def test_settings_come_from_flags_then_environment_then_file(tmp_path, monkeypatch):
    config = tmp_path / "server.toml"
    config.write_text('http_port = 9000\nframe_port = 9001\nframe_socket = "sub"\n[open_sessions]\nrig1 = "sim00"\n')
    monkeypatch.setenv("POCO_RT_FRAME_PORT", "9101")
    monkeypatch.setenv("POCO_RT_CONFIG_FILE", str(config))
    settings = ServerSettings(http_port=9200)
    assert (settings.http_port, settings.frame_port, settings.frame_socket) == (9200, 9101, FrameSocketKind.SUB)
    assert settings.open_sessions == {"rig1": "sim00"}


def test_settings_name_the_field_and_a_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="http_port"):
        ServerSettings(http_port=70000)
    with pytest.raises(ValueError, match=r"config_file='.*nope\.toml' does not exist"):
        ServerSettings(config_file=tmp_path / "nope.toml")
    with pytest.raises(ValueError, match="max_sessions=1"):
        ServerSettings(open_sessions={"a": "a", "b": "b"}, max_sessions=1)


# --- memory guard ------------------------------------------------------------------------------------


def test_the_memory_guard_resets_once_and_holds_off_while_the_memory_is_held_elsewhere(caplog):
    now = [0.0]
    over = MemoryGuard(max_memory_mb=1, clock=lambda: now[0])  # this process is always past 1 MiB
    seen = []
    with caplog.at_level(logging.ERROR, logger="poco_rt.server.memory_guard"):
        for now[0] in (0.0, 0.05, 0.5, 1.2, 5.0, 60.0):
            seen.append(over.frame_socket_should_reset())
    assert seen == [True, False, False, False, False, False]
    assert "dropping every frame connection" in caplog.records[0].getMessage()
    assert "the memory is held elsewhere" in caplog.records[1].getMessage() and len(caplog.records) == 2
    assert not MemoryGuard(max_memory_mb=10**7).frame_socket_should_reset()
    assert not MemoryGuard(max_memory_mb=0).frame_socket_should_reset()  # 0: no guard


# --- rate-limited log --------------------------------------------------------------------------------


def test_one_line_per_reason_per_interval_with_the_count_held_back(caplog):
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.ratelog"), interval_s=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for _ in range(10):
            log.warning("nan", "bad frame %d", 1)
        log.warning("dtype", "other reason")
        now[0] = 6.0
        log.warning("nan", "bad frame %d", 2)
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame 1",
        "other reason",
        "bad frame 2 (9 more like it in the last 5 s not logged)",
    ]


# --- WebSocket fan-out -------------------------------------------------------------------------------


class FakeForecast:
    def __init__(self, index: int) -> None:
        self.index = index


def test_a_slow_subscriber_gets_the_newest_forecast_and_counts_the_skipped():
    async def scenario() -> tuple[list[int], int, int]:
        metrics = ServerMetrics()
        hub = ForecastHub(metrics)
        slow, fast = hub.subscribe("rig1"), hub.subscribe("rig1")
        fast_seen = []
        for index in range(5):
            for subscriber in (slow, fast):
                subscriber.offer(FakeForecast(index))
            fast_seen.append((await fast.next()).index)  # fast takes each as it comes
        newest = (await slow.next()).index  # slow wakes up once, after all five
        return fast_seen, newest, slow.skipped

    fast_seen, newest, skipped = asyncio.run(scenario())
    assert (fast_seen, newest, skipped) == ([0, 1, 2, 3, 4], 4, 4)


def test_a_closed_subscription_ends_its_wait():
    async def scenario():
        hub = ForecastHub(ServerMetrics())
        subscriber = hub.subscribe("rig1")
        waiting = asyncio.create_task(subscriber.next())
        await asyncio.sleep(0)
        hub.close_session("rig1")
        return await asyncio.wait_for(waiting, timeout=5)

    assert asyncio.run(scenario()) is None


def test_websocket_binary_messages_carry_the_wire_parts():
    parts = (b"rig1\x00", b"header bytes", memoryview(np.arange(3, dtype=np.float32)).cast("B"))
    assert unpack_parts(pack_parts(parts)) == [bytes(part) for part in parts]
