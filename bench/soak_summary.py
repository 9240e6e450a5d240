"""What a soak run adds up to: summary.json (every figure, and the checks that must hold) and its printed table.

Apart from bench/soak.py, which gathers the samples, so that each reads on its own; the summary
reads the run's Soak object after the server has stopped.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poco_rt.server.jobs.store import JobState

if TYPE_CHECKING:
    from soak import Soak, SubscriberLog

# A leak of one 200-byte object per frame at 4 x 30 Hz grows 1.4 MiB/min; allocator noise at steady load is far less.
RSS_SLOPE_BOUND_MIB_PER_MIN = 1.0


def recorded_frames(recordings_dir: Path, session: str) -> dict[str, int]:
    """The frames of `session` on disk (every recording of it) and how many distinct frame indices they hold."""
    from poco_rt.server.recording_files import read_recorded_frames, session_recordings

    indices = [read_recorded_frames(directory).frame_index for directory in session_recordings(recordings_dir, session)]
    every = np.concatenate(indices) if indices else np.empty(0, np.uint64)
    return {"records": len(every), "distinct_frame_indices": len(np.unique(every))}


def distribution(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"count": 0}
    p50, p99 = np.percentile(values, [50, 99])
    return {"count": len(values), "p50": float(p50), "p99": float(p99), "max": float(values.max())}


def timings(logs: list[SubscriberLog], field: str) -> np.ndarray:
    parts = [np.frombuffer(getattr(log, field), dtype=np.float64) for log in logs]
    return np.concatenate(parts) if parts else np.empty(0)


def summarise(soak: Soak, final: dict[str, Any], on_disk: dict[str, dict[str, int]], **run: Any) -> dict[str, Any]:
    """Everything the run found, as summary.json holds it; `checks` are what must hold absolutely."""
    args, timeline, metrics, last = soak.args, soak.timeline, final["metrics"], soak.total_frames - 1
    per_session = {}
    for name in soak.sessions:
        stats, info = soak.streams.stats[name], soak.final_sessions[name]
        per_session[name] = {
            "sent": stats.sent + stats.dropped,
            "publisher_dropped": stats.dropped,
            "accepted": info["frames_accepted"],
            "recorded_on_disk": on_disk[name]["records"],
            "distinct_frames_on_disk": on_disk[name]["distinct_frame_indices"],
            **{key: info[key] for key in ("frames_gap_filled", "resets", "frames_dropped", "frames_rejected")},
            "forecasts": info["forecasts"],
        }
    total = {key: sum(session[key] for session in per_session.values()) for key in next(iter(per_session.values()))}
    subscribers = [
        {
            "session": log.session,
            "received": log.received,
            "frames_spanned": 0 if log.first_index is None else log.last_index - log.first_index + 1,
            "first_frame_index": log.first_index,
            "last_frame_index": log.last_index,
            "max_gap_s": round(log.max_gap_s, 3),
            "error": log.error,
        }
        for log in soak.soak_logs
    ]
    fractions = [sub["received"] / max(1, sub["frames_spanned"]) for sub in subscribers]
    idle_e2e, soak_e2e = timings(soak.idle_logs, "end_to_end_ms"), timings(soak.soak_logs, "end_to_end_ms")
    idle_latency, soak_latency = distribution(idle_e2e), distribution(soak_e2e)
    fitted_from_s = timeline.idle_s + timeline.warm_up_s
    post = [sample for sample in soak.samples if sample["t_s"] >= fitted_from_s]
    minutes, rss = np.array([s["t_s"] / 60 for s in post]), np.array([s["rss_mib"] for s in post])
    slope = float(np.polyfit(minutes, rss, 1)[0]) if len(post) >= 3 else None
    jobs = soak.jobs.jobs if soak.jobs is not None else []
    idle_end = next(sample["metrics"] for sample in reversed(soak.samples) if sample["phase"] == "idle")
    rest_ms = np.array([sample["rest_ms"] for sample in soak.samples])
    serving = {
        "rest_ms": {"p50": float(np.median(rest_ms)), "max": float(rest_ms.max())},
        "ready_at_every_sample": all(sample["ready"] for sample in soak.samples),
        "samples_with_a_stalled_session": sum(
            "stalled" in sample["session_states"].values() for sample in soak.samples if sample["phase"] != "end"
        ),
        "recorder_dropped_frames": int(metrics["recorder_dropped_frames_total"]),
        "recorder_write_errors": int(metrics["recorder_write_errors_total"]),
        "publisher_max_late_ms": round(soak.streams.max_late_ms, 2),
    }
    frames_ok = total["sent"] == total["accepted"] == total["recorded_on_disk"] == total["distinct_frames_on_disk"]
    return {
        "command": " ".join(run["argv"]),
        "code": run["code"],
        "machine": {"cpus": os.cpu_count(), "load_average_1min": run["load_average"]},
        "config": {
            **{key: getattr(args, key) for key in ("minutes", "sessions", "units", "rate_hz", "subscribers")},
            **{key: getattr(args, key) for key in ("sample_s", "engine_threads")},
            "job": run["job"],
            "timeline_s": dataclasses.asdict(timeline),
        },
        "samples": len(soak.samples),
        "frames": {**total, "dropped": total["sent"] - total["accepted"], "per_session": per_session},
        "forecasts": {
            "made": int(metrics["forecasts_total"]),
            "made_per_frame": {  # below 1: the engine cannot forecast every session's every frame (coalesced)
                "idle": idle_end["forecasts_total"] / idle_end["frames_accepted_total"],
                "soak": (metrics["forecasts_total"] - idle_end["forecasts_total"])
                / (metrics["frames_accepted_total"] - idle_end["frames_accepted_total"]),
            },
            "frames_coalesced": int(metrics["forecasts_coalesced_total"]),
            "websocket_sent": int(metrics["websocket_forecasts_sent_total"]),
            "websocket_skipped": int(metrics["websocket_forecasts_skipped_total"]),
            "subscribers": len(subscribers),
            "received_fraction_of_frames_spanned": {
                "min": min(fractions),
                "median": float(np.median(fractions)),
                "max": max(fractions),
            },
            "every_subscriber_got_the_last_frame": all(sub["last_frame_index"] == last for sub in subscribers),
            "subscriber_errors": [sub["error"] for sub in subscribers if sub["error"]],
            "max_gap_s": max(sub["max_gap_s"] for sub in subscribers),
            "per_subscriber": subscribers,
        },
        "latency_ms": {
            "end_to_end": {"idle": idle_latency, "soak": soak_latency},
            "p99_soak_over_idle": soak_latency.get("p99", np.nan) / idle_latency.get("p99", np.nan),
            "server": {
                "idle": distribution(timings(soak.idle_logs, "server_ms")),
                "soak": distribution(timings(soak.soak_logs, "server_ms")),
            },
        },
        "memory": {
            "rss_mib": {
                "start": soak.rss_start_mib,
                "after_warm_up": post[0]["rss_mib"] if post else None,
                "end": final["rss_mib"],
                "max": max(sample["rss_mib"] for sample in soak.samples),
            },
            "slope_mib_per_min": slope,
            "slope_bound_mib_per_min": RSS_SLOPE_BOUND_MIB_PER_MIN,
            "fitted_from_s": fitted_from_s,
            "post_warm_up_samples": len(post),
            "job_workers_rss_mib_max": max((s["job_workers_rss_mib"] or 0.0) for s in soak.samples),
        },
        "jobs": [
            {key: job[key] for key in ("id", "state", "progress", "error", "started_at", "finished_at")}
            | {"pvar": (job.get("summary") or {}).get("pvar")}
            for job in jobs
        ],
        "serving": serving,
        "checks": {
            "zero_frames_dropped": frames_ok and total["publisher_dropped"] == 0,
            "every_subscriber_to_the_end": soak.drained and not any(sub["error"] for sub in subscribers),
            "serving_undisturbed": serving["ready_at_every_sample"]
            and not any(total[key] for key in ("frames_gap_filled", "resets", "frames_dropped", "frames_rejected"))
            and not serving["recorder_write_errors"],
            "rss_slope_within_bound": slope is not None and slope <= RSS_SLOPE_BOUND_MIB_PER_MIN,
            "no_job_failed": not any(job["state"] == JobState.FAILED for job in jobs),
        },
    }


def report(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    frames, forecasts, latency, memory = (summary[key] for key in ("frames", "forecasts", "latency_ms", "memory"))
    e2e, server, rss = latency["end_to_end"], latency["server"], memory["rss_mib"]
    fraction = forecasts["received_fraction_of_frames_spanned"]
    jobs, serving = summary["jobs"], summary["serving"]
    states = ", ".join(f"{sum(job['state'] == s for job in jobs)} {s}" for s in sorted({job["state"] for job in jobs}))

    def timing(d: dict[str, float]) -> str:
        return f"{d['p50']:7.2f} {d['p99']:7.2f} {d['max']:8.1f}  ({d['count']} forecasts)" if d["count"] else "-"

    slope = memory["slope_mib_per_min"]
    lines = [
        f"frames      sent {frames['sent']}, accepted {frames['accepted']}, on disk {frames['recorded_on_disk']}"
        f"  -> dropped {frames['dropped']}, not recorded {frames['accepted'] - frames['recorded_on_disk']} (recorder"
        f" queue full: {summary['serving']['recorder_dropped_frames']}), rejected {frames['frames_rejected']}",
        f"forecasts   made {forecasts['made']} ({forecasts['made_per_frame']['idle']:.2f} per frame idle, "
        f"{forecasts['made_per_frame']['soak']:.2f} in the soak; the rest coalesced into a later frame's); "
        f"WebSocket sent {forecasts['websocket_sent']}, skipped {forecasts['websocket_skipped']} (latest-wins)",
        f"            per subscriber: {fraction['min']:.0%} / {fraction['median']:.0%} / {fraction['max']:.0%} "
        f"(min / median / max) of the frames it spanned; every one got the last frame: "
        f"{forecasts['every_subscriber_got_the_last_frame']}; longest wait {forecasts['max_gap_s']:.2f} s",
        "latency ms              p50     p99      max",
        f"  end to end, idle  {timing(e2e['idle'])}",
        f"  end to end, soak  {timing(e2e['soak'])}   p99 soak / idle {latency['p99_soak_over_idle']:.2f}x",
        f"  in server, idle   {timing(server['idle'])}",
        f"  in server, soak   {timing(server['soak'])}",
        f"memory      server RSS {rss['start']:.1f} MiB at start, {rss['after_warm_up'] or float('nan'):.1f} after "
        f"warm-up, {rss['end']:.1f} at the end (max {rss['max']:.1f}); slope "
        f"{float('nan') if slope is None else slope:+.3f} MiB/min over {memory['post_warm_up_samples']} samples "
        f"(bound {memory['slope_bound_mib_per_min']:g})",
        f"jobs        {len(jobs)} PINning jobs: {states or 'none'}",
        f"serving     GET /v1/sessions took {serving['rest_ms']['p50']:.0f} ms (median), "
        f"{serving['rest_ms']['max']:.0f} ms at most; samples with a stalled session "
        f"{serving['samples_with_a_stalled_session']}; publisher at most {serving['publisher_max_late_ms']:.1f} ms"
        " late",
        "checks      " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in summary["checks"].items()),
    ]
    return "\n".join(lines)
