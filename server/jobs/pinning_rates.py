"""A finished PINning job's rates for plots: what the network was trained to produce and what it produced.

Legend: N units, K data frames, F free runs, n the units asked for.

Read straight from the job's `pinning.npz` (models/pinning/results.py says what it holds) with
numpy alone, so the serving process never imports `models/`. The network's rates are those of the
last free run (no learning), against the target condition that run reproduced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)  # arrays have no single truth value
class PinningRates:
    condition: int  # the target condition of the last free run
    pvar: float  # that run's pVar
    peak_order: np.ndarray  # (N,) int64: units ordered by when their target rate peaks (the sequence's order)
    units: np.ndarray  # (n,) int64
    target: np.ndarray  # (n, K) float32 in [0, 1]
    network: np.ndarray  # (n, K) float32, the last free run's rates


def read_rates(path: Path, units: Sequence[int] | None) -> PinningRates:
    """Rates of `units` (None: all N) from a PINning result file."""
    with np.load(path) as arrays:
        free_conditions = arrays["free_conditions"]  # (F,): a job has at least one free run
        condition = int(free_conditions[-1])
        chosen = np.arange(arrays["peak_order"].shape[0]) if units is None else np.asarray(units, dtype=np.int64)
        return PinningRates(
            condition=condition,
            pvar=float(arrays["run_pvar"][-1]),
            peak_order=arrays["peak_order"].astype(np.int64),
            units=chosen,
            target=arrays["target_rates"][condition][:, chosen].T,  # (K, N) -> (n, K)
            network=arrays["free_rates"][-1][:, chosen].T,  # (K, N) -> (n, K)
        )
