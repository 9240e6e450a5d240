// The jobs table (GET /v1/jobs) with progress bars, and the view of one job: pVar after every pass
// from the job's own progress report (detail.pvar_per_pass, live while it trains) and, once a
// PINning job has succeeded, its target and network rates (GET /v1/jobs/{id}/result/rates):
// both as heatmaps with units in sequence order, as in Rajan, Harvey & Tank (2016), and three
// units as traces. A fine-tune job shows its validation score every 10 steps instead
// (detail.validation_scores while it trains, the summary's once it has ended) and its verdict.

import { api } from "./api.js";
import { updateRows } from "./table.js";

const TRACE_UNITS = 3;
const TRACE_COLOURS = ["#1c7ed6", "#d9480f", "#2b8a3e"];

/** A PINning job's pVar: the result's (the mean over the free runs) once there is one, else the last pass's. */
function pvarOf(job) {
  if (job.kind !== "pinning") return ""; // a sweep's pVar is one per network: its view lists them
  const pvar = job.summary?.pvar ?? job.detail?.pvar_per_pass?.at(-1);
  return typeof pvar === "number" ? pvar.toFixed(3) : "";
}

/** One line about a finished job: PINning's scores, or any other kind's numeric summary fields. */
function summaryOf(job) {
  const summary = job.summary;
  if (!summary) return job.error ?? "";
  if (job.kind === "finetune") return `${summary.reason} (best step ${summary.best_step} of ${summary.steps})`;
  if (job.kind !== "pinning") {
    return Object.entries(summary)
      .filter(([, value]) => typeof value === "number")
      .map(([name, value]) => `${name} ${+value.toPrecision(4)}`)
      .join(", ");
  }
  const lesion = summary.lesion_input_pvar === null ? "" : `; with h = 0: pVar ${summary.lesion_input_pvar.toFixed(3)}`;
  return (
    `pVar ${summary.pvar.toFixed(3)} over the free runs; ${summary.plastic_units} of ${summary.units} units plastic; ` +
    `‖J − J₀‖ / ‖J₀‖ = ${summary.connectivity_change.toFixed(2)}${lesion}`
  );
}

/** Rates in [0, 1] as an image, one row per unit (in `order`), one column per data frame. */
function drawHeatmap(canvas, rows, order) {
  const frames = rows[0].length;
  canvas.width = frames;
  canvas.height = order.length;
  const context = canvas.getContext("2d");
  const image = context.createImageData(frames, order.length);
  order.forEach((unit, row) => {
    rows[unit].forEach((rate, frame) => {
      // white (0) to dark blue (1): the shape of the sequence reads at a glance
      const shade = Math.max(0, Math.min(1, rate));
      const at = 4 * (row * frames + frame);
      image.data[at] = 255 - 230 * shade;
      image.data[at + 1] = 255 - 180 * shade;
      image.data[at + 2] = 255 - 80 * shade;
      image.data[at + 3] = 255;
    });
  });
  context.putImageData(image, 0, 0);
}

export class JobsView {
  constructor(section) {
    this.section = section;
    this.body = section.querySelector("tbody");
    this.view = section.querySelector("#job-view");
    this.chosen = null;
    this.drawnRatesFor = null;
  }

  async refresh() {
    const jobs = await api("v1/jobs");
    this.section.querySelector(".empty").hidden = jobs.length > 0;
    updateRows(this.body, jobs.map((job) => this.row(job)), "job");
    const chosen = jobs.find((job) => job.id === this.chosen);
    if (chosen) await this.renderJob(chosen);
  }

  row(job) {
    const submitted = new Date(job.created_at * 1000).toLocaleTimeString();
    return {
      key: job.id,
      chosen: job.id === this.chosen,
      cells: [
        { text: job.id.slice(0, 8) },
        { text: job.kind },
        { text: job.state, className: `state ${job.state}` },
        { text: ` ${Math.round(100 * job.progress)} %`, progress: job.progress },
        { text: pvarOf(job) },
        { text: submitted },
      ],
      onClick: () => this.choose(job),
    };
  }

  async choose(job) {
    this.chosen = job.id;
    this.drawnRatesFor = null;
    this.drawn = null;
    for (const tr of this.body.children) tr.classList.toggle("chosen", tr.dataset.job === job.id);
    await this.renderJob(job);
  }

  async renderJob(job) {
    const drawn = `${job.id} ${job.state} ${job.progress}`;
    if (this.drawn === drawn) return; // nothing new since the last refresh: nothing to repaint
    this.drawn = drawn;
    this.view.hidden = false;
    this.view.dataset.job = job.id;
    this.view.dataset.state = job.state;
    this.view.querySelector(".job-id").textContent = job.id;
    this.view.querySelector(".job-title").textContent =
      `${job.kind}, ${job.detail?.target ?? job.params.target ?? job.params.session ?? ""}, ${job.state}`;
    this.view.querySelector(".job-summary").textContent = summaryOf(job);
    const finetune = job.kind === "finetune";
    this.view.querySelector("#pvar-figure").hidden = finetune;
    this.view.querySelector("#validation-figure").hidden = !finetune;
    if (finetune) {
      this.view.querySelector("#rates-figure").hidden = true; // a PINning job's, shown before
      this.view.querySelector("#traces-figure").hidden = true;
      this.drawValidation(job.summary?.validation_scores ?? job.detail?.validation_scores ?? []);
    } else {
      this.drawPvar(job.detail?.pvar_per_pass ?? [], job.detail?.phase_per_pass ?? []);
    }
    if (job.kind === "pinning" && job.state === "succeeded" && this.drawnRatesFor !== job.id) {
      this.drawnRatesFor = job.id;
      await this.drawRates(job);
    }
  }

  drawPvar(pvar, phases) {
    const passes = pvar.map((_, i) => i + 1);
    // One series per phase (models/pinning/trainer.py): passes that learned, the free ones that the
    // reported pVar averages, and the lesions (h = 0, then J[:, C] reset) that test what it learned.
    const only = (wanted) => pvar.map((value, i) => (wanted(phases[i]) ? value : null));
    const data = [passes, only((p) => p === "train"), only((p) => p === "free"), only((p) => p?.startsWith("lesion"))];
    if (!this.pvarPlot) {
      this.pvarPlot = new uPlot(
        {
          width: 420,
          height: 200,
          legend: { live: false },
          scales: { x: { time: false } },
          axes: [{ label: "pass" }, { label: "pVar" }],
          series: [
            { label: "pass" },
            { label: "training", stroke: "#1c7ed6", width: 1.5 },
            { label: "free", stroke: "#d9480f", width: 2 },
            { label: "lesions", stroke: "#868e96", width: 2 },
          ],
        },
        data,
        this.view.querySelector("#pvar-plot"),
      );
    } else {
      this.pvarPlot.setData(data);
    }
    this.view.querySelector("#pvar-plot").dataset.passes = String(pvar.length);
  }

  drawValidation(points) {
    const data = [points.map(([step]) => step), points.map(([, score]) => score)];
    if (!this.validationPlot) {
      this.validationPlot = new uPlot(
        {
          width: 420,
          height: 200,
          legend: { live: false },
          scales: { x: { time: false } },
          axes: [{ label: "step" }, { label: "validation score" }],
          series: [{ label: "step" }, { label: "validation", stroke: "#1c7ed6", width: 2 }],
        },
        data,
        this.view.querySelector("#validation-plot"),
      );
    } else {
      this.validationPlot.setData(data);
    }
    this.view.querySelector("#validation-plot").dataset.points = String(points.length);
  }

  async drawRates(job) {
    const rates = await api(`v1/jobs/${job.id}/result/rates`);
    const byUnit = new Map(rates.units.map((unit, row) => [unit, row]));
    const rowsInOrder = rates.peak_order.map((unit) => byUnit.get(unit));
    drawHeatmap(this.view.querySelector("#target-map"), rates.target, rowsInOrder);
    drawHeatmap(this.view.querySelector("#network-map"), rates.network, rowsInOrder);
    this.view.querySelector("#rates-figure").hidden = false;
    // Three units spread along the sequence, so their peaks fall early, midway and late.
    const picks = [...Array(TRACE_UNITS).keys()].map(
      (i) => rowsInOrder[Math.floor(((i + 0.5) * rowsInOrder.length) / TRACE_UNITS)],
    );
    const frames = [...rates.target[0].keys()];
    const series = [{ label: "frame" }];
    const data = [frames];
    picks.forEach((row, i) => {
      const unit = rates.units[row];
      series.push({ label: `target ${unit}`, stroke: TRACE_COLOURS[i], width: 1.5, dash: [5, 4] });
      series.push({ label: `network ${unit}`, stroke: TRACE_COLOURS[i], width: 2 });
      data.push(rates.target[row], rates.network[row]);
    });
    const element = this.view.querySelector("#rates-plot");
    this.ratesPlot?.destroy();
    this.ratesPlot = new uPlot(
      {
        width: 460,
        height: 220,
        legend: { show: false },
        scales: { x: { time: false }, y: { range: [0, 1] } },
        axes: [{ label: "data frame" }, { label: "rate" }],
        series,
      },
      data,
      element,
    );
    element.dataset.units = picks.map((row) => rates.units[row]).join(",");
    this.view.querySelector("#traces-figure").hidden = false;
  }
}
