// The dashboard's wiring: the server line, the sessions table (and the form that opens a new
// animal), and the refresh timers of each view.
// A session is chosen by clicking its row, or by the address (#session=NAME); without either, the
// first open session is shown. A job is chosen by its row, or by #job=ID.

import { AccuracyView } from "./accuracy.js";
import { AdaptationView, bindNewAnimalForm } from "./adapt.js";
import { api } from "./api.js";
import { JobsView } from "./jobs.js";
import { LiveView } from "./live.js";
import { LatencyView } from "./metrics.js";
import { updateRows } from "./table.js";

const SESSIONS_MS = 1000;
const METRICS_MS = 5000; // a histogram of the last minute changes slowly; each scrape costs the server a little
const JOBS_MS = 3000;

const live = new LiveView(document.getElementById("live"));
const accuracy = new AccuracyView(document.getElementById("accuracy"), { onUnit: (unit) => live.show([unit]) });
const latency = new LatencyView(document.getElementById("histograms"));
const jobs = new JobsView(document.getElementById("jobs"));
const adaptation = new AdaptationView(document.getElementById("adaptation"), async (id) => {
  await jobs.choose(await api(`v1/jobs/${encodeURIComponent(id)}`));
  document.getElementById("job-view").scrollIntoView();
});
const rates = new Map(); // session -> { frames, atMs, hz }: frame rate from two polls of frames_accepted

function fromAddress(key) {
  return new URLSearchParams(location.hash.slice(1)).get(key);
}

function frameRate(session) {
  const now = performance.now();
  const before = rates.get(session.name);
  let hz = before?.hz ?? null;
  if (before && now > before.atMs) {
    const measured = ((session.frames_accepted - before.frames) * 1000) / (now - before.atMs);
    hz = hz === null ? measured : 0.5 * hz + 0.5 * measured; // smoothed: polls are not exactly a second apart
  }
  rates.set(session.name, { frames: session.frames_accepted, atMs: now, hz });
  return hz;
}

function sessionRow(session) {
  const hz = frameRate(session);
  const texts = [
    session.name,
    session.state.replace("_", " "),
    session.unit_count,
    hz === null ? "–" : `${hz.toFixed(1)} Hz`,
    session.frames_accepted,
    session.frames_gap_filled,
    session.resets,
    session.frames_dropped,
    session.frames_rejected,
    session.forecasts,
    `${session.model_version}/${session.calibration}`,
    session.zero_shot ? "zero-shot" : session.calibration,
  ];
  return {
    key: session.name,
    chosen: session.name === live.name,
    cells: texts.map((text, i) => ({ text: String(text), className: i === 1 ? `state ${session.state}` : "" })),
    onClick: () => choose(session.name),
  };
}

async function choose(name) {
  history.replaceState(null, "", `#session=${encodeURIComponent(name)}`);
  accuracy.open(name);
  await live.open(name);
}

async function refreshSessions() {
  const sessions = await api("v1/sessions");
  const section = document.getElementById("sessions");
  updateRows(section.querySelector("tbody"), sessions.map(sessionRow), "session");
  section.querySelector(".empty").hidden = sessions.length > 0;
  sessions.forEach((session) => live.update(session));
  await adaptation.update(sessions.find((session) => session.name === live.name));
  const names = sessions.map((session) => session.name);
  if (live.name && !names.includes(live.name)) {
    live.close(); // closed on the server
    accuracy.close();
  }
  if (!live.name && names.length && !live.opening) {
    const wanted = fromAddress("session");
    live.opening = true;
    try {
      const name = names.includes(wanted) ? wanted : names[0];
      accuracy.open(name);
      await live.open(name);
    } finally {
      live.opening = false;
    }
  }
}

/** Run `refresh` now and every `ms`, never two at once; a failure shows in the header and is retried. */
function every(ms, refresh) {
  const status = document.getElementById("server-status");
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      await refresh();
      status.textContent = "";
    } catch (error) {
      status.textContent = String(error.message ?? error);
    } finally {
      busy = false;
    }
  };
  tick();
  setInterval(tick, ms);
}

async function start() {
  const info = await api("v1/server");
  document.getElementById("server-info").textContent =
    `v${info.poco_rt_version} · bundle ${info.active_bundle} · C = ${info.context_frames}, P = ${info.horizon} · ` +
    `frames in on ${info.frame_endpoint}`;
  bindNewAnimalForm(document.getElementById("new-animal"), choose);
  every(SESSIONS_MS, refreshSessions);
  every(METRICS_MS, () => latency.refresh());
  every(JOBS_MS, async () => {
    await jobs.refresh();
    const wanted = fromAddress("job");
    if (wanted && jobs.chosen !== wanted) {
      const job = await api(`v1/jobs/${encodeURIComponent(wanted)}`);
      await jobs.choose(job);
    }
  });
}

start().catch((error) => {
  document.getElementById("server-status").textContent = String(error.message ?? error);
});
