// Live accuracy of the chosen session, as the server measures it on every forecast (GET
// .../accuracy, docs/server.md "Live accuracy and intervals"): how many forecasts have been scored,
// whether the intervals are calibrated and what share of targets they covered, and which units are
// forecast worst and best right now (POCO's score against copy-last over the recent frames, the
// forecast's RMSE in units of each unit's std, and each level's coverage for that unit).
// Computed by the server for every forecast anyway, so the page only reads a copy every 2 s.
// Clicking a unit plots it in the live view.

import { api } from "./api.js";
import { updateRows } from "./table.js";

const POLL_MS = 2000;
const LISTED = 6; // units listed at each end: the worst forecast and the best

function percent(value) {
  return value === null ? "–" : `${(100 * value).toFixed(1)} %`;
}

function number(value, digits = 2) {
  return value === null ? "–" : value.toFixed(digits);
}

export class AccuracyView {
  constructor(section, { onUnit }) {
    this.section = section;
    this.onUnit = onUnit;
    this.summary = section.querySelector(".accuracy-summary");
    this.name = null;
  }

  open(name) {
    this.close();
    this.name = name;
    this.section.querySelector(".session-name").textContent = name;
    this.section.hidden = false;
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
  }

  close() {
    clearInterval(this.timer);
    this.name = null;
    this.section.hidden = true;
  }

  async poll() {
    const name = this.name;
    if (!name) return;
    try {
      const accuracy = await api(`v1/sessions/${encodeURIComponent(name)}/accuracy`);
      if (name === this.name) this.render(accuracy);
    } catch (error) {
      // 409: live accuracy is off on this server; 404: the session closed between two polls
      this.summary.textContent = String(error.message ?? error);
    }
  }

  render(accuracy) {
    const levels = accuracy.levels;
    const coverage = levels.map((level) => `${Math.round(100 * level.level)} %: ${percent(level.coverage)}`);
    this.summary.textContent =
      `${accuracy.scored_frames} frames scored · ` +
      (accuracy.calibrated ? `intervals served, coverage ${coverage.join(", ")}` : "intervals warming up");
    this.summary.dataset.scoredFrames = accuracy.scored_frames;
    this.summary.dataset.calibrated = accuracy.calibrated;
    for (const head of this.section.querySelectorAll("thead")) {
      head.querySelectorAll("th.level").forEach((th, i) => {
        th.textContent = levels[i] ? `${Math.round(100 * levels[i].level)} % cov.` : "";
      });
    }
    const scored = accuracy.unit_score
      .map((score, unit) => ({ unit, score }))
      .filter((row) => row.score !== null)
      .sort((a, b) => a.score - b.score);
    const worst = scored.slice(0, LISTED);
    const best = scored.slice(Math.max(LISTED, scored.length - LISTED)).reverse();
    for (const [list, rows] of [["worst", worst], ["best", best]]) {
      const tbody = this.section.querySelector(`tbody.${list}`);
      updateRows(tbody, rows.map(({ unit, score }) => this.row(accuracy, unit, score)), "unit");
    }
  }

  row(accuracy, unit, score) {
    const cells = [
      String(unit),
      number(score, 3),
      number(accuracy.unit_rmse[unit]),
      ...accuracy.levels.map((level) => percent(level.unit_coverage[unit])),
    ];
    return { key: String(unit), cells: cells.map((text) => ({ text })), onClick: () => this.onUnit(unit) };
  }
}
