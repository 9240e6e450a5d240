"""The one frozen configuration of a PINning network: its dynamics, its training schedule, its seed.

Defaults are the settings of the Rajan lab's demo of Rajan, Harvey & Tank (2016), "Recurrent Network
Models of Sequence Generation and Memory" (Neuron 90; `PINningDevIdealBump`). The config
round-trips through the JSON summary (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
import math

from poco_rt.models.config import JsonConfig


@dataclasses.dataclass(frozen=True)
class PinningConfig(JsonConfig):
    plastic_fraction: float = 0.1  # p: the fraction of units whose outgoing weights (columns of J) learn
    seed: int = 0  # draws J0, h, the plastic set and the noise; the same seed at another p gives the same J0 and h
    runs: int = 125  # passes over the trial, the free ones included
    free_runs: int = 5  # the last passes of each condition run without learning; pVar is their mean
    lesion_runs: int = 2  # after training, per condition: passes with h = 0, and passes with J[:, C] reset to J0
    initial_inverse_correlation: float = 1.0  # P0: RLS starts from P = P0 I (a ridge penalty of 1/P0)
    tau_s: float = 0.01  # τ: unit time constant
    dt_s: float = 0.001  # Euler step
    gain: float = 1.5  # g: J0 = g N(0, 1) / sqrt(N); g > 1 makes the untrained network chaotic
    input_tau_s: float = 1.0  # τ_WN: time constant of the frozen filtered-white-noise input h
    input_amplitude: float = 1.0  # h0: scale of h
    noise_level: float = 0.5  # per-step noise η has SD noise_level * sqrt(τ / dt)

    def __post_init__(self) -> None:
        if not 0.0 <= self.plastic_fraction <= 1.0:
            raise ValueError(
                f"PinningConfig.plastic_fraction must be in [0, 1], got {self.plastic_fraction}; "
                "it is the fraction of units whose outgoing weights learn"
            )
        if self.runs <= 0:
            raise ValueError(f"PinningConfig.runs must be > 0, got {self.runs}; the demo uses 125")
        for name in ("free_runs", "lesion_runs"):
            if getattr(self, name) < 0:
                raise ValueError(f"PinningConfig.{name} must be >= 0, got {getattr(self, name)}; use 0 to skip them")
        for name in ("initial_inverse_correlation", "tau_s", "dt_s", "input_tau_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"PinningConfig.{name} must be a finite number > 0, got {value}")
        for name in ("gain", "input_amplitude", "noise_level"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"PinningConfig.{name} must be a finite number >= 0, got {value}")
        if self.dt_s >= self.tau_s:
            raise ValueError(
                f"PinningConfig.dt_s ({self.dt_s}) must be smaller than tau_s ({self.tau_s}) for a stable Euler step; "
                "the demo uses dt = tau / 10"
            )

    @property
    def step_fraction(self) -> float:
        """dt / τ: how far x moves towards its input z in one step."""
        return self.dt_s / self.tau_s

    @property
    def noise_sd(self) -> float:
        """SD of η: noise_level * sqrt(τ / dt), so that its effect on x does not depend on dt."""
        return self.noise_level * math.sqrt(self.tau_s / self.dt_s)

    def training_runs(self, conditions: int) -> int:
        """Passes with learning: all runs but the free ones of every condition."""
        return self.runs - self.free_runs * conditions

    def check_schedule(self, conditions: int) -> None:
        if self.free_runs * conditions > self.runs:
            raise ValueError(
                f"PinningConfig.free_runs ({self.free_runs}) times {conditions} conditions exceeds runs ({self.runs}); "
                "raise runs or lower free_runs"
            )
