// Latency per stage from the server's own /metrics (Prometheus text, server/metrics.py): the
// histogram poco_rt_stage_latency_seconds{stage} with fixed buckets. Buckets are cumulative counts
// since the server started, so the page keeps the scrapes of the last minute and draws the
// difference between the newest and the oldest: the frames of the last minute, not of all time.

import { api } from "./api.js";

const HISTOGRAM = "poco_rt_stage_latency_seconds";
const STAGES = ["decode", "infer", "publish", "server"]; // server = frame received to forecast sent
const WINDOW_MS = 60_000;

/** { stage: [{ le, count }] } (cumulative, ascending le) from Prometheus text. */
export function parseStageBuckets(text) {
  const buckets = {};
  const pattern = new RegExp(`^${HISTOGRAM}_bucket\\{([^}]*)\\} (\\S+)`);
  for (const line of text.split("\n")) {
    const match = pattern.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...match[1].matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
    (buckets[labels.stage] ??= []).push({ le, count: Number(match[2]) });
  }
  for (const list of Object.values(buckets)) list.sort((a, b) => a.le - b.le);
  return buckets;
}

function seconds(value) {
  if (!Number.isFinite(value)) return "+Inf";
  if (value < 1e-3) return `${Math.round(value * 1e6)} µs`;
  return value < 1 ? `${+(value * 1e3).toPrecision(3)} ms` : `${value} s`;
}

/** The upper edge of the bucket holding quantile q: what a histogram with these buckets can tell. */
function quantile(cumulative, q) {
  const total = cumulative.at(-1).count;
  const bucket = cumulative.find((entry) => entry.count >= q * total);
  return `≤ ${seconds(bucket.le)}`;
}

export class LatencyView {
  constructor(element) {
    this.element = element;
    this.scrapes = []; // { atMs, buckets }
  }

  async refresh() {
    const buckets = parseStageBuckets(await api("metrics", { as: "text" }));
    const now = performance.now();
    this.scrapes.push({ atMs: now, buckets });
    while (this.scrapes.length > 2 && this.scrapes[1].atMs < now - WINDOW_MS) this.scrapes.shift();
    this.render();
  }

  render() {
    const newest = this.scrapes.at(-1).buckets;
    const oldest = this.scrapes.length > 1 ? this.scrapes[0].buckets : {};
    const rows = STAGES.filter((stage) => newest[stage]).map((stage) => {
      const cumulative = newest[stage].map((entry, i) => ({
        le: entry.le,
        count: entry.count - (oldest[stage]?.[i]?.count ?? 0),
      }));
      return this.row(stage, cumulative);
    });
    const drawn = rows.map((row) => row.dataset.counts).join(" ");
    if (drawn === this.drawn) return; // no frame since the last scrape: nothing to repaint
    this.drawn = drawn;
    this.element.replaceChildren(...rows);
  }

  row(stage, cumulative) {
    const counts = cumulative.map((entry, i) => entry.count - (i ? cumulative[i - 1].count : 0));
    const most = Math.max(1, ...counts);
    const total = cumulative.at(-1).count;
    const row = document.createElement("div");
    row.className = "hist";
    row.dataset.stage = stage;
    row.dataset.frames = String(total);
    row.dataset.counts = counts.join(",");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = stage;
    const bars = document.createElement("div");
    bars.className = "bars";
    counts.forEach((count, i) => {
      const bar = document.createElement("span");
      bar.style.height = `${(100 * count) / most}%`;
      bar.title = `${count} frames ≤ ${seconds(cumulative[i].le)}`;
      bars.append(bar);
    });
    const quantiles = document.createElement("span");
    quantiles.className = "quantiles";
    quantiles.textContent = total ? `p50 ${quantile(cumulative, 0.5)}, p99 ${quantile(cumulative, 0.99)}` : "no frames";
    const axis = document.createElement("div");
    axis.className = "axis";
    for (const entry of [cumulative[0], cumulative[Math.floor(cumulative.length / 2)], cumulative.at(-2)]) {
      const label = document.createElement("span");
      label.textContent = seconds(entry.le);
      axis.append(label);
    }
    row.append(name, bars, quantiles, axis);
    return row;
  }
}
