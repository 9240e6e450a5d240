"""The live readout `poco-rt replay` and `poco-rt demo` share: one rich table, redrawn as forecasts arrive."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table

from poco_rt.clients.replay import ReplayStatus


def status_table(status: ReplayStatus, *, title: str) -> Table:
    """Latency is end to end: the publisher's acquisition stamp to the forecast's arrival here."""
    table = Table(title=title, show_header=False)
    table.add_row("frames sent", f"{status.frames_sent}  ({status.frames_dropped} dropped)")
    received = f"{status.forecasts_received} of {status.possible_forecasts} possible  "
    received += f"({status.scored_forecasts} scored)"
    if status.forecasts_received < status.possible_forecasts:
        received += "\nframes sent faster than the server forecasts are coalesced: it forecasts the newest"
    table.add_row("forecasts received", received)
    table.add_row("score vs copy-last", f"{status.score:+.3f}  (0 = copy-last, 1 = perfect)")
    for label, samples in (("end-to-end latency", status.latencies_ms), ("in the server", status.server_ms)):
        table.add_row(
            label, f"median {status.percentile(samples, 50):.2f} ms, p99 {status.percentile(samples, 99):.2f} ms"
        )
    return table


@contextlib.contextmanager
def live_status(console: Console, *, title: str) -> Iterator[Callable[[ReplayStatus], None]]:
    """A callback that redraws the table; the last drawing stays on screen (and is what a pipe receives)."""
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        yield lambda status: live.update(status_table(status, title=title))
    if not console.is_terminal:
        console.line()  # Live ends its last drawing with a newline only on a terminal


def summary(status: ReplayStatus) -> str:
    """The final lines: counts and score, then how long the score has stayed above copy-last."""
    line = (
        f"{status.forecasts_received} forecasts over {status.frames_sent} frames in {status.elapsed_s:.1f} s; "
        f"live score {status.score:+.3f} against copy-last"
    )
    since = status.above_copy_last_since_s
    return line if since is None else f"{line}\nabove copy-last since {since:.1f} s into the replay"
