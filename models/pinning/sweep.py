"""The pVar-vs-p curve: one network per (plastic fraction, seed), trained together, summarised.

Networks of one seed share J0, h, the noise and (nested) plastic sets, so the curve isolates p.
What fits depends on the number of plastic units pN, not on p alone: compare curves at equal N
(Rajan, Harvey & Tank 2016; their sweep is for N = 500).

Legend: P plastic fractions, S seeds.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.results import summarize
from poco_rt.models.pinning.targets import Target
from poco_rt.models.pinning.trainer import PassCallback, train_networks

SWEEP_JSON = "sweep.json"
SWEEP_ARRAYS = "sweep.npz"


@dataclasses.dataclass(frozen=True)
class SweepResult:
    target_name: str
    plastic_fractions: tuple[float, ...]  # (P,)
    seeds: tuple[int, ...]  # (S,)
    pvar: np.ndarray  # (P, S) mean free-run pVar of each network
    networks: tuple[dict[str, Any], ...]  # each network's JSON summary, p-major

    def curve(self) -> list[dict[str, float]]:
        """Mean and SD over seeds of pVar at each p."""
        return [
            {"plastic_fraction": p, "pvar_mean": float(row.mean()), "pvar_sd": float(row.std())}
            for p, row in zip(self.plastic_fractions, self.pvar, strict=True)
        ]


def sweep(
    target: Target,
    plastic_fractions: Sequence[float],
    seeds: Sequence[int],
    *,
    base: PinningConfig | None = None,
    workers: int = 1,
    on_run: PassCallback | None = None,
) -> SweepResult:
    """Train every (p, seed) network on `target` in this process; `base` sets everything else.

    cluster.py trains the same networks on a Dask cluster, one per task, to the same numbers.
    """
    configs = sweep_configs(plastic_fractions, seeds, base)
    results = train_networks(target, configs, workers=workers, on_run=on_run)
    return sweep_result(target.name, plastic_fractions, seeds, [summarize(r) for r in results])


def sweep_configs(
    plastic_fractions: Sequence[float], seeds: Sequence[int], base: PinningConfig | None = None
) -> list[PinningConfig]:
    """One config per (p, seed), p-major; refuses an empty or repeated p or seed (one network each)."""
    if not plastic_fractions or not seeds:
        raise ValueError(f"sweep: needs at least one plastic fraction and one seed, got {plastic_fractions}, {seeds}")
    for name, values in (("plastic fractions", plastic_fractions), ("seeds", seeds)):
        if len(set(values)) != len(values):
            raise ValueError(f"sweep: the {name} must be distinct (one network each), got {list(values)}")
    base = base or PinningConfig()
    return [dataclasses.replace(base, plastic_fraction=p, seed=s) for p in plastic_fractions for s in seeds]


def sweep_result(
    target_name: str, plastic_fractions: Sequence[float], seeds: Sequence[int], networks: Sequence[dict[str, Any]]
) -> SweepResult:
    """The sweep's table from every network's summary (results.summarize), given p-major as sweep_configs."""
    pvar = np.array([network["pvar"] for network in networks]).reshape(len(plastic_fractions), len(seeds))
    return SweepResult(
        target_name=target_name,
        plastic_fractions=tuple(float(p) for p in plastic_fractions),
        seeds=tuple(int(s) for s in seeds),
        pvar=pvar,
        networks=tuple(networks),
    )


def save_sweep(result: SweepResult, out_dir: str | Path) -> Path:
    """Write `sweep.json` (the curve and every network's summary) and `sweep.npz` (the pVar table)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / SWEEP_ARRAYS, plastic_fractions=result.plastic_fractions, seeds=result.seeds, pvar=result.pvar)
    summary = {"target": result.target_name, "curve": result.curve(), "networks": list(result.networks)}
    (out / SWEEP_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    return out
