// POCO's score of live forecasts over a sliding window, as core/live_score.py and core/metric.py
// define it: score = 1 − Σ(forecast − target)² / Σ(copy-last − target)², a forecast made after
// frame t scored once frames t+1..t+P have all arrived, copy-last repeating frame t, every error
// divided by its unit's calibration std (the normalisation the model was trained in).
//
// Computed here, in the page, rather than in the server: it needs nothing the page does not
// already fetch for its plots, and a server-side scorer would add work to the ingest thread of
// every session whether or not anyone looks.

export class WindowedScore {
  constructor(windowMs = 60_000) {
    this.windowMs = windowMs;
    this.entries = []; // { atMs, modelSq, copySq, count }, oldest first
  }

  /** One forecast's squared errors over the scored units and all P steps, scored at `atMs`. */
  add(atMs, modelSq, copySq, count) {
    this.entries.push({ atMs, modelSq, copySq, count });
    this.trim(atMs);
  }

  trim(nowMs) {
    while (this.entries.length && this.entries[0].atMs < nowMs - this.windowMs) this.entries.shift();
  }

  clear() {
    this.entries = [];
  }

  get forecasts() {
    return this.entries.length;
  }

  /** The score over the window; NaN with nothing scored (or copy-last perfect, which only flat data is). */
  get score() {
    let model = 0;
    let copy = 0;
    for (const entry of this.entries) {
      model += entry.modelSq;
      copy += entry.copySq;
    }
    return this.entries.length && copy > 0 ? 1 - model / copy : NaN;
  }
}

/**
 * Squared errors of one forecast, in std units, over `positions` of the tracked units.
 * forecast: Float32Array (N * P, unit by unit) of all N units; frames: (k) => Float32Array of the
 * tracked units' raw values at frame k, or undefined; units[i] the unit index of tracked position i.
 */
export function forecastErrors(forecast, madeAt, horizon, frames, units, positions, std) {
  const last = frames(madeAt);
  let modelSq = 0;
  let copySq = 0;
  for (let step = 1; step <= horizon; step += 1) {
    const target = frames(madeAt + step);
    for (const position of positions) {
      const scale = std[position];
      const truth = target[position];
      const model = (forecast[units[position] * horizon + step - 1] - truth) / scale;
      const copy = (last[position] - truth) / scale;
      modelSq += model * model;
      copySq += copy * copy;
    }
  }
  return { modelSq, copySq, count: horizon * positions.length };
}
