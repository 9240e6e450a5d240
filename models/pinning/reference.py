"""PINning as a plain per-step loop: the direct transcription of the Rajan lab's demo.

One network, float64, one numpy expression per line, fresh noise drawn every step. It is the baseline
that bench/pinning_speed.py times the fast trainer against, and the oracle the tests compare it with:
both take J0, h, the plastic set and x(0) from the same seed, so without noise they follow the same
trajectory up to float32 rounding. It runs the training and free passes only (no lesions).

Legend: K data frames, N units, M plastic units.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from poco_rt.models.pinning.analysis import pvar
from poco_rt.models.pinning.config import PinningConfig
from poco_rt.models.pinning.network import frame_steps, frozen_input, initial_weights, network_streams, plastic_order
from poco_rt.models.pinning.targets import Target
from poco_rt.models.pinning.trainer import Phase, run_schedule


def train_reference(
    target: Target, config: PinningConfig, *, on_run: Callable[[], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the pVar of every training and free pass (runs,) and the trained J (N, N) float64."""
    streams = network_streams(config.seed)
    units = target.num_units
    weights = initial_weights(units, config.gain, streams["weights"]).astype(np.float64)  # J (N, N)
    steps = frame_steps(target.num_frames, target.frame_interval_s, config.dt_s)
    external = frozen_input(int(steps[-1]) + 1, units, config, streams["input"]).astype(np.float64)  # h
    order, plastic_count = plastic_order(units, config.plastic_fraction, streams["plastic"])
    plastic = order[:plastic_count]  # C
    inverse_correlation = config.initial_inverse_correlation * np.eye(plastic_count)  # P (M, M)
    goals = target.total_inputs.astype(np.float64)  # f (conditions, K, N)
    cue_steps = round(target.cue_duration_s / config.dt_s)
    noise_rng = streams["noise"]
    schedule = [
        (phase, c) for phase, c in run_schedule(config, target.num_conditions) if phase in (Phase.TRAIN, Phase.FREE)
    ]
    run_pvar = []
    for phase, condition in schedule:
        x = target.initial_state[condition].astype(np.float64)
        frame_rates = []
        for step in range(int(steps[-1]) + 1):
            r = 1.0 / (1.0 + np.exp(-x))
            z = weights @ r + external[step] + config.noise_sd * noise_rng.standard_normal(units)
            if step < cue_steps:
                z = z + target.cue_inputs[condition]
            frame = len(frame_rates)
            if step == steps[frame]:
                frame_rates.append(r)
                if phase is Phase.TRAIN and frame > 0 and plastic_count:
                    rates_plastic = r[plastic]
                    gain = inverse_correlation @ rates_plastic
                    scale = 1.0 / (1.0 + rates_plastic @ gain)
                    inverse_correlation -= scale * np.outer(gain, gain)
                    weights[:, plastic] -= scale * np.outer(z - goals[condition, frame], gain)
            x = x + config.step_fraction * (-x + z)
        run_pvar.append(pvar(target.rates[condition], np.array(frame_rates)))
        if on_run is not None:
            on_run()
    return np.array(run_pvar), weights
