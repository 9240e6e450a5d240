"""PINning sweeps on a Dask cluster (dask.distributed): one network per task, each result as it finishes.

`poco-rt pinning sweep --scheduler tcp://HOST:8786` sends every (p, seed) network of a sweep to
the workers of a running cluster; without an address, `connect` starts a LocalCluster on
127.0.0.1: one single-threaded worker process per core. Dask is an optional extra
(`pip install 'poco-rt[cluster]'`), imported here only when a sweep asks for it.

Why one network per task, and why that is safe to re-run: a network's result depends only on its
config (trainer.py), so each task is pure and keyed by its target and (p, seed). When a worker
dies, Dask re-runs its tasks (those it was running, and finished ones whose results lived only
there) on the others; the sweep keeps one result per (p, seed), so none is lost or counted twice,
and the numbers are those of the in-process sweep. Only a network's JSON summary travels back,
not its J or rates. The target travels once, as a task of its own that each worker fetches
(unlike scattered data, a lost copy of a task's result is recomputed).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from poco_rt.errors import MissingExtra
from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.results import summarize
from poco_rt.models.pinning.sweep import SweepResult, sweep_configs, sweep_result
from poco_rt.models.pinning.targets import Target
from poco_rt.models.pinning.trainer import train_networks

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)
LOCAL_HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 30.0
NetworkCallback = Callable[[dict[str, Any]], None]


def import_distributed() -> Any:
    """The `distributed` module, or MissingExtra naming the extra that installs it."""
    try:
        import distributed
    except ModuleNotFoundError as error:
        raise MissingExtra(
            "PINning sweeps on a Dask cluster need dask.distributed, which this install lacks: pip install "
            "'poco-rt[cluster]', or train the sweep in this process (poco-rt pinning sweep --scheduler none)"
        ) from error
    return distributed


def local_workers() -> int:
    """One worker per core this process may run on: PINning holds BLAS to one thread per network."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def connect(scheduler: str | None = None, *, workers: int = 0) -> Iterator[Client]:
    """A client of the scheduler at `scheduler`, or of a LocalCluster of `workers` processes (0: one per core).

    Every socket of the LocalCluster (scheduler, nannies, workers, HTTP) binds 127.0.0.1 on a port the OS
    picks; the cluster is closed when the block ends.
    """
    distributed = import_distributed()
    if scheduler is not None:
        with distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S) as client:
            yield client
        return
    with (
        distributed.LocalCluster(
            n_workers=workers or local_workers(),
            threads_per_worker=1,
            processes=True,
            host=LOCAL_HOST,
            dashboard_address=f"{LOCAL_HOST}:0",  # the scheduler's HTTP server (health, metrics): loopback, any port
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        logger.info("Dask LocalCluster at %s with %d workers", cluster.scheduler_address, len(cluster.workers))
        yield client


def train_summary(target: Target, config: PinningConfig) -> dict[str, Any]:
    """One network, trained where the task runs; its summary (results.summarize) is what comes back."""
    (result,) = train_networks(target, [config])
    return summarize(result)


def sweep_on_cluster(
    client: Client,
    target: Target,
    plastic_fractions: Sequence[float],
    seeds: Sequence[int],
    *,
    base: PinningConfig | None = None,
    on_network: NetworkCallback | None = None,
) -> SweepResult:
    """Train every (p, seed) network on `target` on the client's cluster; `on_network` gets each summary as it lands.

    Returns what `sweep.sweep` returns for the same arguments, number for number.
    """
    distributed = import_distributed()
    from dask.base import tokenize

    configs = sweep_configs(plastic_fractions, seeds, base)
    token = tokenize(target)
    shared_target = client.submit(_same, target, key=f"pinning-target-{token}")
    futures = {
        client.submit(train_summary, shared_target, config, key=f"pinning-network-{token}-{tokenize(config)}"): (
            config.plastic_fraction,
            config.seed,
        )
        for config in configs
    }
    summaries: dict[tuple[float, int], dict[str, Any]] = {}
    for future in distributed.as_completed(futures):
        summaries[futures[future]] = future.result()
        if on_network is not None:
            on_network(summaries[futures[future]])
    shared_target.release()
    networks = [summaries[(config.plastic_fraction, config.seed)] for config in configs]
    return sweep_result(target.name, plastic_fractions, seeds, networks)


def _same(value: Target) -> Target:
    """The target as a task's result: workers fetch it from each other, and a lost copy is recomputed."""
    return value
