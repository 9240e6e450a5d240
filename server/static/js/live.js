// The live view of one session: for each unit shown, its last C frames, the current P-step
// forecast drawn ahead of them, and, over the frames, the forecasts that had been drawn ahead of
// them before they arrived, so the operator sees how good the forecasts are; plus POCO's score
// over the last minute.
//
// Both come from polling, twice a second: the latest forecast (GET .../forecast as .npy, every
// unit) and the frames after the newest one held (GET .../context?after=, only the units tracked
// here: those shown and those scored), so each frame comes once and none is missed. Polling rather
// than the forecast WebSocket: the socket pushes every forecast (N x P values at the frame rate),
// and taking 30 messages a second cost the browser and the server more than everything else the
// page does together (bench/README.md). The score is then over the forecasts the page took, an
// unbiased sample of all of them.

import { api, ApiError } from "./api.js";
import { readFloat32Npy } from "./npy.js";
import { forecastErrors, WindowedScore } from "./score.js";

const POLL_MS = 500; // twice a second: the plots stay live and the server answers 4 small requests/s
const SCORE_UNITS = 256; // scored: every unit up to this many, else this many spread evenly (cheap at any N)
const SHOWN_UNITS = 4; // how many of the most active units are plotted when a session is chosen

function spread(count, most) {
  if (count <= most) return [...Array(count).keys()];
  return [...Array(most).keys()].map((i) => Math.floor((i * count) / most));
}

function plotOptions(width) {
  return {
    width,
    height: 170,
    legend: { show: false },
    cursor: { show: false },
    scales: { x: { time: false } },
    axes: [{ size: 30 }, { size: 56 }],
    series: [
      { label: "frame" },
      { label: "frames", stroke: "#1d2430", width: 1.5, points: { show: false } },
      { label: "forecast made for them", stroke: "#1c7ed6", width: 1.5, dash: [5, 4], points: { show: false } },
      { label: "current forecast", stroke: "#d9480f", width: 2, points: { show: false } },
    ],
  };
}

export class LiveView {
  constructor(section) {
    this.section = section;
    this.plotsElement = section.querySelector("#plots");
    this.status = section.querySelector("#live-status");
    this.picker = section.querySelector("#unit-picker");
    this.name = null;
    section.querySelector("#show-units").addEventListener("click", () => this.showPicked());
    this.picker.addEventListener("keydown", (event) => event.key === "Enter" && this.showPicked());
    section.querySelector("#most-active").addEventListener("click", async () => this.show(await this.mostActive()));
    new ResizeObserver(() => this.resize()).observe(this.plotsElement);
  }

  async open(name) {
    this.close();
    const info = await api(`v1/sessions/${encodeURIComponent(name)}`);
    this.name = name;
    this.C = info.context_frames;
    this.P = info.horizon;
    this.N = info.unit_count;
    this.hasForecast = info.forecasts > 0; // until then GET .../forecast is a 404, which the browser logs as an error
    this.scoreUnits = spread(this.N, SCORE_UNITS);
    this.score = new WindowedScore();
    this.forgetFrames();
    this.section.querySelector(".session-name").textContent = name;
    this.section.hidden = false;
    this.show(await this.mostActive());
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  close() {
    clearInterval(this.timer);
    this.name = null;
    for (const plot of this.plots ?? []) plot.uplot.destroy();
    this.plots = [];
    this.section.hidden = true;
  }

  /** The session's row from the sessions poll: whether it has made a forecast to fetch yet. */
  update(info) {
    if (info.name === this.name) this.hasForecast = info.forecasts > 0;
  }

  forgetFrames() {
    this.frames = new Map(); // frame index -> Float32Array of the tracked units' raw values
    this.forecasts = new Map(); // frame index it follows -> Float32Array (N * P, unit by unit), every unit
    this.pending = []; // forecasts waiting for their P target frames, oldest first
    this.seen = null; // newest frame index held; null: fetch a whole context next
  }

  // --- units ------------------------------------------------------------------------------------

  /** The units whose last C frames vary most in units of their calibration std: what moves now. */
  async mostActive() {
    const context = await api(`v1/sessions/${encodeURIComponent(this.name)}/context`);
    this.unitIds = context.unit_ids;
    const activity = context.values.map((row, unit) => {
      if (row.length < 2) return 0;
      const mean = row.reduce((sum, value) => sum + value, 0) / row.length;
      const variance = row.reduce((sum, value) => sum + (value - mean) ** 2, 0) / row.length;
      return Math.sqrt(variance) / context.std[unit];
    });
    const order = [...activity.keys()].sort((a, b) => activity[b] - activity[a]);
    return order.slice(0, SHOWN_UNITS).sort((a, b) => a - b);
  }

  showPicked() {
    const units = this.picker.value
      .split(/[\s,]+/)
      .filter(Boolean)
      .map((text) => (/^\d+$/.test(text) ? Number(text) : this.unitIds.indexOf(text)))
      .filter((unit) => unit >= 0 && unit < this.N);
    if (units.length) this.show([...new Set(units)]);
    else this.status.textContent = `no such unit: give indices 0..${this.N - 1} or unit ids`;
  }

  show(units) {
    this.shown = units;
    this.picker.value = units.map((unit) => this.unitIds[unit]).join(", ");
    this.status.textContent = "";
    this.tracked = [...new Set([...units, ...this.scoreUnits])];
    this.position = new Map(this.tracked.map((unit, position) => [unit, position]));
    this.frames = new Map(); // positions changed: the next poll fetches a whole context again
    this.seen = null;
    for (const plot of this.plots ?? []) plot.uplot.destroy();
    this.plotsElement.replaceChildren();
    this.plots = units.map((unit) => {
      const element = document.createElement("div");
      element.className = "plot";
      element.dataset.unit = String(unit);
      const title = document.createElement("h4");
      title.textContent = `unit ${this.unitIds[unit]} (#${unit})`;
      element.append(title);
      this.plotsElement.append(element);
      const uplot = new uPlot(plotOptions(this.plotWidth()), [[], [], [], []], element);
      return { unit, element, uplot };
    });
  }

  plotWidth() {
    const columns = Math.max(1, Math.floor(this.plotsElement.clientWidth / 420));
    return Math.max(300, Math.floor(this.plotsElement.clientWidth / columns) - 12);
  }

  resize() {
    for (const plot of this.plots ?? []) plot.uplot.setSize({ width: this.plotWidth(), height: 170 });
  }

  // --- polling -----------------------------------------------------------------------------------

  async poll() {
    if (this.polling || !this.name) return; // a slow answer is waited for, never stacked up
    this.polling = true;
    const path = `v1/sessions/${encodeURIComponent(this.name)}`;
    try {
      // The forecast first: the frames fetched after it then include the one it follows.
      const forecast = this.hasForecast ? await this.latestForecast(path) : null;
      const after = this.seen === null ? "" : `&after=${this.seen}`;
      const context = await api(`${path}/context?units=${this.tracked.join(",")}${after}`);
      if (context.frame_index_last !== null) this.takeFrames(context);
      if (forecast) this.takeForecast(forecast);
      this.scorePending();
      this.render();
    } catch (error) {
      this.status.textContent = String(error.message ?? error);
    } finally {
      this.polling = false;
    }
  }

  async latestForecast(path) {
    let response;
    try {
      response = await api(`${path}/forecast`, { as: "response", accept: "application/x-npy" });
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null; // reopened since the sessions poll
      throw error;
    }
    const frameIndex = Number(response.headers.get("X-Poco-Frame-Index"));
    this.modelVersion = response.headers.get("X-Poco-Model-Version");
    return { frameIndex, values: readFloat32Npy(await response.arrayBuffer()).values };
  }

  takeFrames(context) {
    const last = context.frame_index_last;
    if (this.seen !== null && last < this.seen) {
      this.forgetFrames(); // reopened: frame indices start again, and the next poll fetches a whole context
      return;
    }
    const count = context.values[0].length;
    for (let column = 0; column < count; column += 1) {
      this.frames.set(last - count + 1 + column, Float32Array.from(context.values, (row) => row[column]));
    }
    this.std = context.std;
    this.seen = last;
    const keepFrom = last - this.C - 2 * this.P;
    for (const index of this.frames.keys()) if (index < keepFrom) this.frames.delete(index);
  }

  takeForecast(forecast) {
    if (this.seen === null || this.forecasts.has(forecast.frameIndex)) return; // reset just now, or no new one
    this.forecasts.set(forecast.frameIndex, forecast.values);
    this.pending.push(forecast.frameIndex);
    const keepFrom = this.seen - this.C - 2 * this.P;
    for (const index of this.forecasts.keys()) if (index < keepFrom) this.forecasts.delete(index);
  }

  scorePending() {
    const positions = this.scoreUnits.map((unit) => this.position.get(unit));
    while (this.pending.length && this.pending[0] + this.P <= this.seen) {
      const madeAt = this.pending.shift();
      const forecast = this.forecasts.get(madeAt);
      let complete = forecast !== undefined;
      for (let index = madeAt; complete && index <= madeAt + this.P; index += 1) complete = this.frames.has(index);
      if (!complete) continue; // a missing frame leaves it unscored, as core/live_score.py does
      const frame = (index) => this.frames.get(index);
      const errors = forecastErrors(forecast, madeAt, this.P, frame, this.tracked, positions, this.std);
      this.score.add(performance.now(), errors.modelSq, errors.copySq, errors.count);
    }
    this.score.trim(performance.now());
  }

  // --- drawing ---------------------------------------------------------------------------------------

  render() {
    if (this.seen === null) {
      this.status.textContent = "waiting for the first frame";
      return;
    }
    const newest = this.seen;
    const made = [...this.forecasts.keys()].sort((a, b) => a - b);
    const current = made.at(-1); // the forecast drawn ahead; the older ones lie over the frames now
    const x = [];
    const end = Math.max(newest, current ?? newest) + this.P;
    for (let index = newest - this.C + 1; index <= end; index += 1) x.push(index);
    // For each frame, the newest forecast made before it (within P): the one the page had shown ahead of it.
    const shownAhead = new Map();
    for (const index of x) {
      const before = made.filter((t) => t < index && index - t <= this.P && t < current).at(-1);
      if (before !== undefined && index <= current) shownAhead.set(index, before);
    }
    for (const plot of this.plots) {
      const position = this.position.get(plot.unit);
      const offset = plot.unit * this.P;
      const data = x.map((index) => (index <= newest ? this.frames.get(index)?.[position] ?? null : null));
      const past = x.map((index) => {
        const t = shownAhead.get(index);
        return t === undefined ? null : this.forecasts.get(t)[offset + index - t - 1];
      });
      const ahead = x.map((index) => {
        if (current === undefined || index < current || index > current + this.P) return null;
        if (index === current) return this.frames.get(current)?.[position] ?? null; // joins the frames' line
        return this.forecasts.get(current)[offset + index - current - 1];
      });
      plot.uplot.setData([x, data, past, ahead]);
      plot.element.dataset.lastFrame = String(newest);
      plot.element.dataset.points = String(data.filter((value) => value !== null).length);
      plot.element.dataset.forecastPoints = String(ahead.filter((value) => value !== null).length);
    }
    this.renderScore();
    this.status.textContent = current === undefined ? "warming up: no forecast yet" : "";
  }

  renderScore() {
    const score = this.score.score;
    const value = this.section.querySelector("#score-value");
    value.textContent = Number.isNaN(score) ? "–" : `${score >= 0 ? "+" : ""}${score.toFixed(3)}`;
    value.dataset.score = Number.isNaN(score) ? "" : String(score);
    value.dataset.forecasts = String(this.score.forecasts);
    const scored = this.scoreUnits.length;
    const units = scored === this.N ? `all ${this.N} units` : `${scored} of ${this.N} units`;
    const model = this.modelVersion ?? "?";
    this.section.querySelector("#score-detail").textContent =
      `(0 = copy-last, 1 = perfect; ${this.score.forecasts} forecasts sampled, ${units}, model ${model})`;
  }
}
