"""A chaotic rate-network simulator: the project's own data for the default bundle, the demo and
the test fixtures (numpy only; no recording leaves the lab that made it).

Each "animal" is the same random network seen through a different window:

- a template connectivity J = g W / sqrt(M), W ~ N(0, 1), with g > 1 so that the activity is
  chaotic (Sompolinsky, Crisanti & Sommers 1988); each session perturbs it by
  J_s = J + perturbation * g W_s / sqrt(M), so sessions share structure but are not identical;
- tau dx/dt = -x + J_s tanh(x) + private noise; firing rate r = (1 + tanh(x)) / 2 in [0, 1];
- a calcium-like observation: c' = -c / calcium_tau + r, sampled at the frame rate, plus
  Gaussian read-out noise; each session observes its own random subset of the M units.

Unit ids name the network unit a column observes, so sessions share identities the way tracked
neurons across days do. Legend: M network units, N observed units, T frames.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from poco_rt.models.recording import Recording, Session


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    network_units: int = 200  # M
    gain: float = 1.8  # g: > 1 is chaotic
    time_constant_s: float = 0.2  # tau of the rate units
    integration_step_s: float = 0.01
    frame_rate_hz: float = 10.0
    calcium_time_constant_s: float = 0.4
    session_perturbation: float = 0.15  # relative size of each session's change to J
    process_noise: float = 0.05  # SD of the private input noise, per sqrt(second)
    readout_noise: float = 0.02  # SD of the observation noise, in rate units
    observed_fraction: tuple[float, float] = (0.3, 0.6)  # each session sees this share of M

    def __post_init__(self) -> None:
        if self.network_units < 2:
            raise ValueError(f"SimulatorConfig.network_units must be >= 2, got {self.network_units}")
        if not 0 < self.observed_fraction[0] <= self.observed_fraction[1] <= 1:
            raise ValueError(
                f"SimulatorConfig.observed_fraction must satisfy 0 < lo <= hi <= 1, got {self.observed_fraction}"
            )
        steps_per_frame = 1 / (self.frame_rate_hz * self.integration_step_s)
        if abs(steps_per_frame - round(steps_per_frame)) > 1e-9:
            raise ValueError("SimulatorConfig: 1 / (frame_rate_hz * integration_step_s) must be a whole number")


def simulate_session(
    template: np.ndarray, *, name: str, frames: int, rng: np.random.Generator, config: SimulatorConfig
) -> Session:
    units = template.shape[0]
    perturbation = config.session_perturbation * config.gain * rng.standard_normal((units, units)) / np.sqrt(units)
    coupling = (template + perturbation).astype(np.float64)
    dt, tau = config.integration_step_s, config.time_constant_s
    steps_per_frame = round(1 / (config.frame_rate_hz * dt))
    burn_in_frames = 50  # let the network leave its random initial state before recording
    x = rng.standard_normal(units)
    calcium = np.zeros(units)
    noise_scale = config.process_noise * np.sqrt(dt) / tau
    calcium_decay = np.exp(-dt / config.calcium_time_constant_s)
    observed = np.empty((frames, units))
    for frame in range(-burn_in_frames, frames):
        for _ in range(steps_per_frame):
            x += dt / tau * (-x + coupling @ np.tanh(x)) + noise_scale * rng.standard_normal(units)
            calcium = calcium * calcium_decay + dt * (1 + np.tanh(x)) / 2
        if frame >= 0:
            observed[frame] = calcium
    low, high = config.observed_fraction
    count = max(1, round(units * rng.uniform(low, high)))
    columns = np.sort(rng.choice(units, size=count, replace=False))
    traces = observed[:, columns] / config.calcium_time_constant_s  # calcium in rate units
    traces += config.readout_noise * rng.standard_normal(traces.shape)
    return Session(
        name=name,
        traces=traces.astype(np.float32),
        frame_rate_hz=config.frame_rate_hz,
        unit_ids=tuple(f"n{c:04d}" for c in columns),
    )


def simulate_recording(
    *,
    sessions: int = 4,
    frames: int = 2000,
    seed: int = 0,
    config: SimulatorConfig | None = None,
    name: str = "simulated",
) -> Recording:
    """`sessions` animals of one simulated preparation, `frames` frames each; same seed, same data."""
    if sessions < 1 or frames < 1:
        raise ValueError(f"simulate_recording needs sessions >= 1 and frames >= 1, got {sessions}, {frames}")
    config = config or SimulatorConfig()
    rng = np.random.default_rng(seed)
    units = config.network_units
    template = config.gain * rng.standard_normal((units, units)) / np.sqrt(units)
    children = rng.spawn(sessions)
    return Recording(
        name=name,
        sessions=tuple(
            simulate_session(template, name=f"sim{i:02d}", frames=frames, rng=child, config=config)
            for i, child in enumerate(children)
        ),
    )
