"""What one trained PINning network leaves behind, and how it is written: one .npz plus a JSON summary.

All arrays are in the target's unit order (the trainer's internal permutation is undone).

Legend: N units, K data frames, F free runs (all conditions), L lesion runs (all conditions).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from poco_rt.models.pinning import analysis
from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.targets import Target

ARRAYS_FILE = "pinning.npz"
SUMMARY_FILE = "summary.json"


@dataclasses.dataclass(frozen=True, eq=False)
class PinningResult:
    config: PinningConfig
    target_name: str
    plastic_units: np.ndarray  # (M,) int64, sorted: the units whose outgoing weights learned
    initial_weights: np.ndarray  # J0 (N, N) float32
    weights: np.ndarray  # trained J (N, N) float32; only the plastic columns differ from J0
    run_pvar: np.ndarray  # (runs,) pVar of every pass, training and free
    run_conditions: np.ndarray  # (runs,) int64: the target condition of each pass
    free_conditions: np.ndarray  # (F,) int64
    free_rates: np.ndarray  # (F, K, N) float32: r at the step nearest each frame, no learning
    free_recurrent: np.ndarray  # (F, K, N) float32: J r, the recurrent part of z
    free_external: np.ndarray  # (F, K, N) float32: h (+ cue), the external part of z
    free_noise: np.ndarray  # (F, K, N) float32: η at that step
    lesion_conditions: np.ndarray  # (L,) int64
    lesion_input_pvar: np.ndarray  # (L,) pVar with h = 0 (cue and noise kept)
    lesion_input_rates: np.ndarray  # (L, K, N) float32
    lesion_weights_pvar: np.ndarray  # (L,) pVar with J[:, C] reset to J0[:, C]
    lesion_weights_rates: np.ndarray  # (L, K, N) float32
    seconds: float  # wall time of this network's share of its chunk

    @property
    def pvar(self) -> float:
        """The reported score: mean pVar over the free runs (over the last run when there are none)."""
        free = self.run_pvar[len(self.run_pvar) - len(self.free_conditions) :]
        return float(np.mean(free)) if free.size else float(self.run_pvar[-1])

    def pvar_by_condition(self) -> list[float]:
        """Mean free-run pVar of each target condition (empty without free runs)."""
        free = self.run_pvar[len(self.run_pvar) - len(self.free_conditions) :]
        return [float(np.mean(free[self.free_conditions == c])) for c in np.unique(self.free_conditions)]


def summarize(result: PinningResult) -> dict[str, Any]:
    """The JSON summary: config, scores, and the scalar analyses of Rajan, Harvey & Tank (2016)."""
    plastic = result.plastic_units
    return {
        "target": result.target_name,
        "units": int(result.weights.shape[0]),
        "plastic_units": int(plastic.size),
        "config": result.config.to_dict(),
        "pvar": result.pvar,
        "pvar_by_condition": result.pvar_by_condition(),
        "pvar_first_run": float(result.run_pvar[0]),
        "lesion_input_pvar": _mean_or_none(result.lesion_input_pvar),
        "lesion_weights_pvar": _mean_or_none(result.lesion_weights_pvar),
        "connectivity_change": analysis.connectivity_change(result.initial_weights, result.weights),
        "plastic_connectivity_change": (
            analysis.connectivity_change(result.initial_weights[:, plastic], result.weights[:, plastic])
            if plastic.size
            else None
        ),
        "symmetric_energy_fraction": analysis.symmetric_energy_fraction(result.weights),
        "symmetric_energy_fraction_change": (
            analysis.symmetric_energy_fraction(result.weights - result.initial_weights) if plastic.size else None
        ),
        "currents_rms": analysis.current_rms(result.free_recurrent, result.free_external, result.free_noise),
        "seconds": result.seconds,
    }


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None


def save_result(result: PinningResult, target: Target, out_dir: str | Path) -> Path:
    """Write `pinning.npz` (weights, rates, currents, histograms, band structure) and `summary.json`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        f.name: getattr(result, f.name)
        for f in dataclasses.fields(result)
        if isinstance(getattr(result, f.name), np.ndarray)
    }
    order = analysis.peak_order(target.rates[0])
    offsets, band_mean, band_sd = analysis.band_structure(result.weights, order)
    histograms = analysis.weight_histograms(result.initial_weights, result.weights, result.plastic_units)
    np.savez_compressed(
        out / ARRAYS_FILE,
        target_rates=target.rates,
        peak_order=order,
        band_offsets=offsets,
        band_mean=band_mean,
        band_sd=band_sd,
        **{f"histogram_{name}": values for name, values in histograms.items()},
        **arrays,
    )
    (out / SUMMARY_FILE).write_text(json.dumps(summarize(result), indent=2) + "\n")
    return out
