"""The server's memory under each hostile attacker alone: does an attack leave memory behind?

    python bench/hostile_memory.py --seconds 360 [--attacks bodies silent multipart]

For each attacker of bench/hostile.py, and for none (the baseline), a fresh `poco-rt serve` with a
token, the embedded bundle and no stream, attacked for --seconds while its resident memory is
sampled every --sample-s. Printed per run: RSS at the start, after the first minute, at the end,
the lowest and highest, and the least-squares slope after the first minute. A slope that stays
near the baseline's says the attack's memory comes and goes; a steady climb says it stays.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from live_server import Server
from soak import ProcessMemory

from poco_rt.resources import default_bundle_path

HOSTILE = Path(__file__).parent / "hostile.py"
TOKEN = "hostile-memory-token"  # the hostile client never sends it
WARM_UP_S = 60.0


def sample_rss(memory: ProcessMemory, every_s: float, stop: threading.Event, into: list[tuple[float, float]]) -> None:
    started = time.monotonic()
    while not stop.wait(every_s):
        into.append((time.monotonic() - started, memory.rss_mib()))


def one_run(attack: str | None, seconds: float, sample_s: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(default_bundle_path(), Path(folder), engine_flags=[], sessions=(), token=TOKEN)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        memory = ProcessMemory(server.process.pid)
        sampler = threading.Thread(target=sample_rss, args=(memory, sample_s, stop, samples))
        try:
            start_mib = memory.rss_mib()
            sampler.start()
            if attack is None:
                time.sleep(seconds)
                seen: dict = {}
            else:
                out = Path(folder) / "hostile.json"
                command = [sys.executable, str(HOSTILE), "--url", server.url, "--seconds", str(seconds)]
                command += ["--frame-endpoint", server.info["frame_endpoint"], "--out", str(out), "--attacks", attack]
                subprocess.run(command, check=True, timeout=seconds + 120)
                seen = json.loads(out.read_text())
        finally:
            stop.set()
            sampler.join()
            server.stop()
    times = np.array([t for t, _ in samples])
    rss = np.array([m for _, m in samples])
    after = times >= WARM_UP_S
    slope = float(np.polyfit(times[after] / 60, rss[after], 1)[0]) if after.sum() >= 2 else float("nan")
    return {
        "attack": attack or "none",
        "start_mib": start_mib,
        "after_warm_up_mib": float(rss[after][0]) if after.any() else float("nan"),
        "end_mib": float(rss[-1]),
        "min_mib": float(rss.min()),
        "max_mib": float(rss.max()),
        "slope_mib_per_min": slope,
        "seen": seen,
        "samples_s_mib": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=360.0, help="attack time per run")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between two RSS samples")
    parser.add_argument("--attacks", nargs="+", default=["bodies", "silent", "multipart"], help="bench/hostile.py's")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = [one_run(attack, args.seconds, args.sample_s) for attack in [None, *args.attacks]]
    print(f"| attack | RSS start | after {WARM_UP_S:.0f} s | end | min / max | slope after warm-up |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['attack']} | {r['start_mib']:.1f} | {r['after_warm_up_mib']:.1f} | {r['end_mib']:.1f} | "
            f"{r['min_mib']:.1f} / {r['max_mib']:.1f} | {r['slope_mib_per_min']:+.3f} MiB/min |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
