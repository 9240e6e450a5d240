// New animals: the form that opens one (POST /v1/sessions with its unit count, and automatic
// fine-tuning if ticked), and, for the session shown live, the calibration it forecasts with
// (zero-shot, or the fine-tuned version), a "fine-tune now" button (POST .../finetune) and its
// fine-tune rounds: each round's job, followed while it trains (the job's step and validation
// score), then what the held-out frames said and whether it was swapped in; a round's row, clicked,
// shows its job's validation curve in the jobs view.
//
// A refused request (a 409: too few frames recorded yet, a round already running) is said beside
// the button in the server's own words, which name how many frames are still needed.

import { api, ApiError } from "./api.js";
import { updateRows } from "./table.js";

const ACTIVE = new Set(["queued", "running"]);

function score(value) {
  return typeof value === "number" ? value.toFixed(3) : "–";
}

function reasonOf(error) {
  return error instanceof ApiError ? error.detail : String(error.message ?? error);
}

/** The form under the sessions table; `onOpened(name)` shows the new session. */
export function bindNewAnimalForm(form, onOpened) {
  const status = form.querySelector(".status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const body = { name, units: Number(form.elements.units.value), adapt: form.elements.adapt.checked ? {} : null };
    status.textContent = "";
    try {
      await api("v1/sessions", { method: "POST", body });
      form.reset();
      await onOpened(name);
    } catch (error) {
      status.textContent = reasonOf(error);
    }
  });
}

export class AdaptationView {
  /** `showJob(id)`: a round's row, clicked, shows its job (the validation curve) in the jobs view. */
  constructor(element, showJob) {
    this.element = element;
    this.showJob = showJob;
    this.status = element.querySelector("#finetune-status");
    this.button = element.querySelector("#finetune-now");
    this.body = element.querySelector("tbody");
    this.jobs = new Map(); // job id -> the job as last polled while it trained (a finished one keeps its last step)
    this.name = null;
    this.button.addEventListener("click", () => this.finetune());
  }

  async finetune() {
    const name = this.name;
    this.status.textContent = "";
    this.button.disabled = true;
    try {
      await api(`v1/sessions/${encodeURIComponent(name)}/finetune`, { method: "POST" });
    } catch (error) {
      this.status.textContent = reasonOf(error);
      this.button.disabled = false;
    }
  }

  /** The session shown live, as GET /v1/sessions lists it (or undefined when none is). */
  async update(session) {
    if (!session) return;
    if (session.name !== this.name) {
      this.name = session.name;
      this.status.textContent = "";
      this.jobs.clear();
    }
    const adaptation = session.adaptation;
    const rounds = adaptation?.rounds ?? [];
    this.element.querySelector(".calibration").textContent = session.calibration;
    this.element.dataset.zeroShot = String(session.zero_shot);
    this.element.querySelector(".calibration-kind").textContent = session.zero_shot
      ? "(zero-shot: unseen-unit embeddings, normalisation from its own frames)"
      : `(bundle ${session.bundle}, network ${session.model_version})`;
    this.element.querySelector(".auto").textContent = autoText(adaptation);
    this.button.disabled = rounds.some((round) => ACTIVE.has(round.state));
    for (const round of rounds.filter((r) => ACTIVE.has(r.state))) {
      this.jobs.set(round.job_id, await api(`v1/jobs/${encodeURIComponent(round.job_id)}`));
    }
    this.element.querySelector("table").hidden = rounds.length === 0;
    updateRows(this.body, rounds.map((round, i) => this.row(round, i + 1)), "round");
  }

  row(round, number) {
    const job = this.jobs.get(round.job_id);
    const detail = job?.detail ?? {};
    const progress = ACTIVE.has(round.state) ? (job?.progress ?? 0) : 1;
    const validation =
      typeof detail.validation_score === "number"
        ? `step ${detail.step}: ${score(detail.validation_score)} (best at ${detail.best_step})`
        : "";
    return {
      key: round.job_id,
      cells: [
        { text: `${number} · ${round.job_id.slice(0, 8)}` },
        { text: round.state, className: `state ${round.state}` },
        { text: String(round.frames) },
        { text: ` ${Math.round(100 * progress)} %`, progress },
        { text: validation },
        { text: score(round.candidate_score) },
        { text: score(round.baseline_score) },
        { text: round.outcome, className: "outcome" },
      ],
      onClick: () => this.showJob(round.job_id),
    };
  }
}

function autoText(adaptation) {
  const auto = adaptation?.auto;
  if (!auto) return "auto-adapt off";
  const plan = `auto-adapt: first round after ${auto.after_s} s, then each ${auto.growth}x more frames, ${auto.max_rounds} at most`;
  return adaptation.stopped ? `${plan}; stopped: ${adaptation.stopped}` : plan;
}
