"""The score and the analyses of a trained PINning network (Rajan, Harvey & Tank 2016, Figs. 2-7).

- `pvar`: the fraction of the target's variance the model rates explain, with one global mean;
- connectivity change ‖J - J0‖ / ‖J0‖ and weight histograms: how much training moved J;
- band structure: mean and SD of J along each diagonal once units are sorted by the time of their
  target peak, the signature a feedforward chain would leave (the paper finds none: the sequence comes
  from recurrent and external input together);
- symmetric energy: the share of ‖J‖² in (J + Jᵀ)/2, about one half for a random matrix;
- current RMS: the recurrent (J r), external (h, cue) and noise (η) parts of each unit's input.

Legend: K data frames, N units.
"""

from __future__ import annotations

import numpy as np


def pvar(target: np.ndarray, rates: np.ndarray) -> float:
    """1 - Σ(D - R)² / Σ(D - mean(D))²: D the target (K, N), R the model rates (K, N).

    1 is a perfect fit, 0 the score of predicting the target's global mean everywhere, and the
    untrained network scores about -4.5 on the bump.
    """
    target = np.asarray(target, dtype=np.float64)
    residual = np.sum((target - np.asarray(rates, dtype=np.float64)) ** 2)
    return float(1.0 - residual / np.sum((target - target.mean()) ** 2))


def connectivity_change(initial: np.ndarray, trained: np.ndarray) -> float:
    """‖J - J0‖_F / ‖J0‖_F."""
    initial = np.asarray(initial, dtype=np.float64)
    return float(np.linalg.norm(np.asarray(trained, dtype=np.float64) - initial) / np.linalg.norm(initial))


def weight_histograms(
    initial: np.ndarray, trained: np.ndarray, plastic_units: np.ndarray, *, bins: int = 101
) -> dict[str, np.ndarray]:
    """Counts of J0 and J entries, all and plastic columns only, on one set of bin edges."""
    low = float(min(initial.min(), trained.min()))
    high = float(max(initial.max(), trained.max()))
    edges = np.linspace(low, high, bins + 1)
    return {
        "edges": edges,
        "initial": np.histogram(initial, edges)[0],
        "trained": np.histogram(trained, edges)[0],
        "initial_plastic": np.histogram(initial[:, plastic_units], edges)[0],
        "trained_plastic": np.histogram(trained[:, plastic_units], edges)[0],
    }


def peak_order(rates: np.ndarray) -> np.ndarray:
    """Units (N,) sorted by the frame of their peak rate in `rates` (K, N); ties keep unit order."""
    return np.argsort(np.argmax(rates, axis=0), kind="stable")


def band_structure(weights: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and SD of J[order][:, order] along each diagonal.

    Returns offsets (2N - 1,) from -(N - 1) to N - 1, and the mean and SD (2N - 1,) of the entries
    J_ij with j - i = offset: weights from the unit peaking `offset` places later (positive) or
    earlier (negative) in the sequence.
    """
    sorted_weights = np.asarray(weights, dtype=np.float64)[np.ix_(order, order)]
    units = sorted_weights.shape[0]
    offsets = np.arange(-(units - 1), units)
    diagonals = [np.diagonal(sorted_weights, offset=int(k)) for k in offsets]
    return offsets, np.array([d.mean() for d in diagonals]), np.array([d.std() for d in diagonals])


def symmetric_energy_fraction(matrix: np.ndarray) -> float:
    """‖(M + Mᵀ) / 2‖² / ‖M‖²: 1 for symmetric, 0 for antisymmetric, about 0.5 for a random matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    total = np.sum(matrix**2)
    return float(np.sum(((matrix + matrix.T) / 2) ** 2) / total) if total > 0 else 0.0


def current_rms(recurrent: np.ndarray, external: np.ndarray, noise: np.ndarray) -> dict[str, float]:
    """Root mean square of each part of z = J r + h + η over runs, frames and units (empty: no runs)."""
    if np.size(recurrent) == 0:
        return {}
    parts = {"recurrent": recurrent, "external": external, "noise": noise}
    rms = {name: float(np.sqrt(np.mean(np.asarray(part, dtype=np.float64) ** 2))) for name, part in parts.items()}
    total = np.asarray(recurrent, dtype=np.float64) + external + noise
    rms["total"] = float(np.sqrt(np.mean(total**2)))
    return rms
