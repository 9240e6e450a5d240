"""The PINning sweep job: one network per (plastic fraction, seed) on one target, for the pVar-vs-p curve.

It leaves `sweep.json` (the curve and every network's summary) and `sweep.npz` (the pVar table)
in its job directory, as `poco-rt pinning sweep` does. Where the server is given a Dask
scheduler (`dask_scheduler`), the job's worker process only sends the networks to that cluster
and collects them as they land (models/pinning/cluster.py); otherwise it trains them itself,
batched, under the job's own limits. The server never starts a cluster of its own: a
LocalCluster's workers would escape the job cores, priority and memory cap the runner sets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, model_validator

from poco_rt.server.jobs.pinning import PinningTargetParams, ProgressReport, job_target

logger = logging.getLogger(__name__)

MAX_SWEEP_VALUES = 32
MAX_SWEEP_NETWORKS = 64  # one sweep at N = 500 and 125 runs is about a minute of one core per network
PlasticFraction = Annotated[float, Field(ge=0, le=1)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]


class PinningSweepJobParams(PinningTargetParams):
    """Networks for every plastic fraction and seed given, each trained as the single-network job would."""

    plastic_fractions: list[PlasticFraction] = Field(
        default=[0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0],
        min_length=1,
        max_length=MAX_SWEEP_VALUES,
        description="p values, each in [0, 1] (default: the p values of Rajan, Harvey & Tank 2016's sweep)",
    )
    seeds: list[Seed] = Field(
        default=[0, 1], min_length=1, max_length=MAX_SWEEP_VALUES, description="network seeds, one network per p each"
    )

    @model_validator(mode="after")
    def _check_sweep(self) -> Self:
        for name, values in (("plastic_fractions", self.plastic_fractions), ("seeds", self.seeds)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct (one network each), got {values}")
        networks = len(self.plastic_fractions) * len(self.seeds)
        if networks > MAX_SWEEP_NETWORKS:
            raise ValueError(
                f"{networks} networks ({len(self.plastic_fractions)} p values x {len(self.seeds)} seeds) exceed "
                f"the limit of {MAX_SWEEP_NETWORKS} per job; split the sweep into several jobs"
            )
        return self


def run_pinning_sweep_job(
    params: PinningSweepJobParams,
    out_dir: Path,
    recordings_dir: Path,
    report: ProgressReport,
    *,
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Train the sweep (on the Dask cluster at `scheduler`, or here), reporting progress; returns the curve."""
    from poco_rt.models.pinning.cluster import connect, sweep_on_cluster
    from poco_rt.models.pinning.config import PinningConfig
    from poco_rt.models.pinning.sweep import save_sweep, sweep
    from poco_rt.models.pinning.trainer import PassReport, run_schedule

    target = job_target(params, recordings_dir)
    base = PinningConfig(runs=params.runs, free_runs=params.free_runs, lesion_runs=params.lesion_runs)
    networks = len(params.plastic_fractions) * len(params.seeds)
    detail: dict[str, Any] = {"target": target.name, "networks": networks, "scheduler": scheduler}
    if scheduler is None:
        passes = networks * len(run_schedule(base, target.num_conditions))
        done = 0

        def on_pass(finished: PassReport) -> None:  # a pass of a chunk advances every network in it
            nonlocal done
            done += len(finished.pvar)
            report(done / passes, detail)

        result = sweep(target, params.plastic_fractions, params.seeds, base=base, on_run=on_pass)
    else:
        detail["finished"] = []  # [p, seed, pVar] of each network as it lands

        def on_network(summary: dict[str, Any]) -> None:
            config = summary["config"]
            detail["finished"].append([config["plastic_fraction"], config["seed"], summary["pvar"]])
            report(len(detail["finished"]) / networks, detail)

        with connect(scheduler) as client:
            result = sweep_on_cluster(
                client, target, params.plastic_fractions, params.seeds, base=base, on_network=on_network
            )
    save_sweep(result, out_dir)
    logger.info("PINning sweep on %s: %d networks%s", target.name, networks, f" on {scheduler}" if scheduler else "")
    return {
        "target": result.target_name,
        "plastic_fractions": list(result.plastic_fractions),
        "seeds": list(result.seeds),
        "pvar": result.pvar.tolist(),
        "curve": result.curve(),
    }
