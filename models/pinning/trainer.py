"""PINning (Partial In-Network Training, Rajan, Harvey & Tank 2016): train networks on one target.

For each network:
1. draw J0, the frozen input h and a random plastic set C of round(pN) units (network.py);
2. run the trial `runs` times from x(0) = the target's initial state; at the step nearest each data
   frame k >= 1 of a training pass, RLS moves the plastic columns J[:, C] so that z follows
   f = ln((d + 0.01) / (1 - d + 0.01)) of the target rate d (rls.py);
3. the last `free_runs` passes of each condition run without learning: their mean pVar is the score;
4. lesion passes, still without learning: h = 0, then J[:, C] reset to J0[:, C].

Several networks (different p or seeds, one target) train together in chunks (network.Chunk), and
chunks can run on worker threads: numpy releases the GIL in the products that dominate the cost.

Legend: G networks in a chunk, M conditions, K data frames, N units.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from poco_rt.models.pinning.analysis import pvar
from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.network import (
    L2_BUDGET_BYTES,
    Chunk,
    fill_gaussian,
    frame_steps,
    frozen_input,
    initial_weights,
    network_streams,
    plastic_order,
)
from poco_rt.models.pinning.results import PinningResult
from poco_rt.models.pinning.rls import rls_update
from poco_rt.models.pinning.targets import Target

logger = logging.getLogger(__name__)

MAX_CHUNK_NETWORKS = 16  # bounds a chunk's memory: its frozen inputs are (S + 1) x N floats per network


class Phase(enum.StrEnum):
    TRAIN = "train"
    FREE = "free"
    LESION_INPUT = "lesion_input"  # h = 0
    LESION_WEIGHTS = "lesion_weights"  # J[:, C] = J0[:, C]


def run_schedule(config: PinningConfig, conditions: int) -> list[tuple[Phase, int]]:
    """Every pass in order, with its target condition; conditions alternate within each phase."""
    config.check_schedule(conditions)
    counts = (
        (Phase.TRAIN, config.training_runs(conditions)),
        (Phase.FREE, config.free_runs * conditions),
        (Phase.LESION_INPUT, config.lesion_runs * conditions),
        (Phase.LESION_WEIGHTS, config.lesion_runs * conditions),
    )
    return [(phase, run % conditions) for phase, count in counts for run in range(count)]


@dataclasses.dataclass(frozen=True, eq=False)
class PassReport:
    """One finished pass of a chunk, for progress displays and job reports."""

    run: int  # index into run_schedule
    phase: Phase
    condition: int
    pvar: np.ndarray  # (G,) each network's pVar on this pass


PassCallback = Callable[[PassReport], None]


@dataclasses.dataclass(eq=False)
class _Network:
    """One network's draws, in the target's unit order, and its RLS state."""

    config: PinningConfig
    order: np.ndarray  # (N,) internal unit i is target unit order[i]; plastic units come first
    plastic: int  # M = |C|
    initial_weights: np.ndarray  # J0 (N, N) float32
    input_at_frames: np.ndarray  # h at the frame steps (K, N) float32
    noise_rng: np.random.Generator
    inverse_correlation: np.ndarray  # P (M, M) float64, column-major for in-place BLAS updates


def train_network(
    target: Target, config: PinningConfig | None = None, *, on_run: PassCallback | None = None
) -> PinningResult:
    """Train one network; see `train_networks`."""
    return train_networks(target, [config or PinningConfig()], on_run=on_run)[0]


def train_networks(
    target: Target,
    configs: Sequence[PinningConfig],
    *,
    workers: int = 1,
    networks_per_chunk: int | None = None,
    on_run: PassCallback | None = None,
) -> list[PinningResult]:
    """Train one network per config on `target`; results come back in the order of `configs`.

    The configs may differ only in plastic_fraction and seed. `networks_per_chunk` (default: as many as
    fit in L2, see network.py) sets how many advance in one batched product; `workers` threads run
    chunks in parallel. `on_run` gets a PassReport after every pass of every chunk (progress bars, job reports).
    Each network's result depends only on its config, not on chunking or workers.
    """
    if not configs:
        raise ValueError("train_networks: configs is empty; pass at least one PinningConfig")
    if workers < 1:
        raise ValueError(f"train_networks: workers must be >= 1, got {workers}")
    if networks_per_chunk is not None and networks_per_chunk < 1:
        raise ValueError(
            f"train_networks: networks_per_chunk must be >= 1 or None (automatic), got {networks_per_chunk}"
        )
    shared = {dataclasses.replace(c, plastic_fraction=0.0, seed=0) for c in configs}
    if len(shared) > 1:
        raise ValueError(
            "train_networks: configs may differ only in plastic_fraction and seed; train the others separately"
        )
    frame_steps(target.num_frames, target.frame_interval_s, configs[0].dt_s)
    run_schedule(configs[0], target.num_conditions)
    default_chunk = max(1, L2_BUDGET_BYTES // (4 * target.num_units**2))
    size = min(networks_per_chunk or default_chunk, MAX_CHUNK_NETWORKS)
    chunks = [list(configs[i : i + size]) for i in range(0, len(configs), size)]
    # The per-step products are small: BLAS threads cost more than they save (10x slower on a busy 2-core
    # machine), so training holds BLAS to one thread and parallelism comes from independent networks.
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1 or len(chunks) == 1:
            results = [_train_chunk(target, chunk, on_run) for chunk in chunks]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pinning") as pool:
                results = list(pool.map(lambda chunk: _train_chunk(target, chunk, on_run), chunks))
    return [result for chunk_results in results for result in chunk_results]


def _setup(config: PinningConfig, target: Target, steps: np.ndarray) -> tuple[_Network, np.ndarray]:
    """One network's draws, and its frozen input h (S + 1, N) in internal unit order."""
    streams = network_streams(config.seed)
    units = target.num_units
    weights = initial_weights(units, config.gain, streams["weights"])
    external = frozen_input(int(steps[-1]) + 1, units, config, streams["input"])
    order, plastic = plastic_order(units, config.plastic_fraction, streams["plastic"])
    network = _Network(
        config=config,
        order=order,
        plastic=plastic,
        initial_weights=weights,
        input_at_frames=external[steps],
        noise_rng=streams["noise"],
        inverse_correlation=config.initial_inverse_correlation * np.eye(plastic, order="F"),
    )
    return network, external[:, order]


def _train_chunk(target: Target, configs: list[PinningConfig], on_run: PassCallback | None) -> list[PinningResult]:
    started = time.perf_counter()
    trainer = _ChunkTrainer(target, configs)
    schedule = run_schedule(configs[0], target.num_conditions)
    run_pvar = np.empty((len(configs), len(schedule)))
    records: dict[Phase, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {phase: [] for phase in Phase}
    trained_blocks = None
    for run, (phase, condition) in enumerate(schedule):
        if phase is Phase.LESION_WEIGHTS and trained_blocks is None:
            trained_blocks = trainer.reset_plastic_columns()
        record = trainer.run_pass(phase, condition)
        run_pvar[:, run] = trainer.pvar(condition, record[0])
        if phase is not Phase.TRAIN:  # 120 training passes of rates would be 120 MB per network at N = 500
            records[phase].append(record)
        if on_run is not None:
            on_run(PassReport(run=run, phase=phase, condition=condition, pvar=run_pvar[:, run].copy()))
    if trained_blocks is None:
        trained_blocks = trainer.plastic_blocks()
    seconds = (time.perf_counter() - started) / len(configs)
    results = [
        trainer.result(g, trained_blocks[g], run_pvar[g], schedule, records, seconds) for g in range(len(configs))
    ]
    for result in results:
        logger.info(
            "p = %.3f seed %d: pVar %.3f (first run %.3f), %.1f s",
            result.config.plastic_fraction,
            result.config.seed,
            result.pvar,
            result.run_pvar[0],
            seconds,
        )
    return results


class _ChunkTrainer:
    """G networks of one chunk: their draws in internal unit order, the batched state, the passes."""

    def __init__(self, target: Target, configs: list[PinningConfig]) -> None:
        config = configs[0]
        self.target = target
        self.step_fraction = np.float32(config.step_fraction)
        self.steps = frame_steps(target.num_frames, target.frame_interval_s, config.dt_s)  # (K,) s_k
        self.cue_steps = round(target.cue_duration_s / config.dt_s)
        networks, inputs = zip(*(_setup(c, target, self.steps) for c in configs), strict=True)
        self.networks: tuple[_Network, ...] = networks
        orders = np.stack([n.order for n in networks])  # (G, N)
        self.chunk = Chunk(
            np.stack([n.initial_weights[np.ix_(n.order, n.order)] for n in networks]), self.step_fraction
        )
        self.scaled_input = self.step_fraction * np.stack(inputs, axis=1)[..., None]  # (S + 1, G, N, 1): (dt/τ) h
        self.scaled_cue = self.step_fraction * target.cue_inputs[:, orders][..., None]  # (M, G, N, 1)
        self.initial_state = target.initial_state[:, orders][..., None]  # (M, G, N, 1)
        self.scaled_goal = self.step_fraction * target.total_inputs[:, :, orders][..., None]  # (M, K, G, N, 1)
        self.goal_rates = target.rates[:, :, orders]  # (M, K, G, N)
        self.noise_scale = np.float32(config.step_fraction * config.noise_sd)
        longest = int(np.diff(self.steps).max())
        self.drive = np.empty((longest, len(networks), target.num_units, 1), dtype=np.float32)
        self.noise = np.empty((longest, target.num_units), dtype=np.float32)

    def fill_drive(self, segment: np.ndarray, first_step: int, condition: int, with_input: bool) -> None:
        """(dt/τ)(η + h + cue) (L, G, N, 1) for the steps first_step .. first_step + L - 1."""
        length = segment.shape[0]
        if self.noise_scale:
            for g, network in enumerate(self.networks):
                fill_gaussian(network.noise_rng, self.noise[:length])
                np.multiply(self.noise[:length], self.noise_scale, out=segment[:, g, :, 0])
        else:
            segment.fill(0.0)
        if with_input:
            segment += self.scaled_input[first_step : first_step + length]
        if first_step < self.cue_steps:
            segment[: self.cue_steps - first_step] += self.scaled_cue[condition]

    def run_pass(self, phase: Phase, condition: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One trial; returns r, (dt/τ) J r and (dt/τ) z at the frame steps, each (K, G, N)."""
        chunk, target = self.chunk, self.target
        rates = np.empty((target.num_frames, len(self.networks), target.num_units), dtype=np.float32)
        recurrent, total = np.empty_like(rates), np.empty_like(rates)
        chunk.state[...] = self.initial_state[condition]
        previous = -1
        for frame, step in enumerate(self.steps):
            segment = self.drive[: step - previous]  # steps previous + 1 .. step
            self.fill_drive(segment, previous + 1, condition, with_input=phase is not Phase.LESION_INPUT)
            chunk.advance(segment[:-1])
            frame_rates, product = chunk.frame_step(segment[-1])
            scaled_total = product + segment[-1]  # (G, N, 1): (dt/τ) z
            rates[frame], recurrent[frame], total[frame] = frame_rates[..., 0], product[..., 0], scaled_total[..., 0]
            if phase is Phase.TRAIN and frame > 0:
                for g, network in enumerate(self.networks):
                    if network.plastic:
                        rls_update(
                            chunk.plastic_block(g, network.plastic),
                            network.inverse_correlation,
                            frame_rates[g, : network.plastic, 0],
                            scaled_total[g, :, 0] - self.scaled_goal[condition, frame, g, :, 0],  # (dt/τ) e
                        )
            previous = int(step)
        return rates, recurrent, total

    def pvar(self, condition: int, rates: np.ndarray) -> list[float]:
        """pVar of each network's pass; rates (K, G, N)."""
        return [pvar(self.goal_rates[condition, :, g], rates[:, g]) for g in range(len(self.networks))]

    def plastic_blocks(self) -> list[np.ndarray]:
        """A copy of each network's (dt/τ) J[:, C]."""
        return [self.chunk.plastic_block(g, n.plastic).copy() for g, n in enumerate(self.networks)]

    def reset_plastic_columns(self) -> list[np.ndarray]:
        """Put (dt/τ) J0[:, C] back in place of the trained columns; returns the trained ones."""
        trained = self.plastic_blocks()
        for g, network in enumerate(self.networks):
            plastic = network.order[: network.plastic]
            initial = network.initial_weights[np.ix_(network.order, plastic)]
            self.chunk.plastic_block(g, network.plastic)[...] = self.step_fraction * initial
        return trained

    def result(
        self,
        g: int,
        trained_block: np.ndarray,
        run_pvar: np.ndarray,
        schedule: list[tuple[Phase, int]],
        records: dict[Phase, list[tuple[np.ndarray, np.ndarray, np.ndarray]]],
        seconds: float,
    ) -> PinningResult:
        """Network g's result: its unit permutation and the dt/τ scaling undone, its passes split by phase."""
        network, target = self.networks[g], self.target
        restore = np.argsort(network.order)  # internal -> target order

        def stacked(phase: Phase, part: int) -> np.ndarray:  # (passes of phase, K, N), target order
            passes = [record[part][:, g, restore] for record in records[phase]]
            return np.stack(passes) if passes else np.empty((0, target.num_frames, target.num_units), np.float32)

        weights = network.initial_weights.copy()
        weights[np.ix_(network.order, network.order[: network.plastic])] = trained_block / self.step_fraction
        phases = np.array([phase.value for phase, _ in schedule])
        conditions = np.array([condition for _, condition in schedule], dtype=np.int64)
        free_conditions = conditions[phases == Phase.FREE]
        in_cue = (self.steps < self.cue_steps)[None, :, None]  # (1, K, 1)
        cues = target.cue_inputs[free_conditions][:, None, :]  # (F, 1, N)
        external = network.input_at_frames[None] + in_cue * cues  # (F, K, N): h + cue
        recurrent = stacked(Phase.FREE, 1) / self.step_fraction
        noise = stacked(Phase.FREE, 2) / self.step_fraction - recurrent - external
        scored = (phases == Phase.TRAIN) | (phases == Phase.FREE)
        return PinningResult(
            config=network.config,
            target_name=target.name,
            plastic_units=np.sort(network.order[: network.plastic]),
            initial_weights=network.initial_weights,
            weights=weights,
            run_pvar=run_pvar[scored],
            run_conditions=conditions[scored],
            free_conditions=free_conditions,
            free_rates=stacked(Phase.FREE, 0),
            free_recurrent=recurrent.astype(np.float32),
            free_external=external.astype(np.float32),
            free_noise=noise.astype(np.float32),
            lesion_conditions=conditions[phases == Phase.LESION_INPUT],
            lesion_input_pvar=run_pvar[phases == Phase.LESION_INPUT],
            lesion_input_rates=stacked(Phase.LESION_INPUT, 0),
            lesion_weights_pvar=run_pvar[phases == Phase.LESION_WEIGHTS],
            lesion_weights_rates=stacked(Phase.LESION_WEIGHTS, 0),
            seconds=seconds,
        )
