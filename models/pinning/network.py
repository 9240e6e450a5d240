"""The random rate network of Rajan, Harvey & Tank (2016) and its fast time loop.

    τ dx/dt = -x + J φ(x) + h(t) + η(t),   r = φ(x) (logistic),   Euler step dt:
    r ← φ(x);  z ← J r + h + η;  x ← x + (dt/τ)(z - x)

Everything random about one network comes from its seed, in separate streams (weights, input, plastic
set, noise), so networks that differ only in p share J0, h and the noise.

The loop (`Chunk`) advances G networks together so that the N x N products of one step are one
batched product. Three decisions make it fast, measured on the project's 2-core Xeon:
- the stored matrix is (dt/τ) J, so a step is φ, one product and three in-place adds;
- each network's J is column-major with its plastic units first, so J[:, C] is one contiguous block
  that RLS updates in place;
- a chunk holds only as many networks as fit in a core's L2 cache together: at N = 500 one J is 1 MB,
  and batching two of them cost 1.3x per network (the product streams J from L3 instead of L2),
  while at N = 200 a chunk of 8 ran 1.6x faster per network than one at a time.

Legend: G networks in a chunk, S + 1 integration steps per trial, N units.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter
from scipy.special import expit

from poco_rt.models.pinning.config import PinningConfig

L2_BUDGET_BYTES = 3 * 2**19  # 1.5 MiB of weights per chunk, under the 2 MiB L2 of one core


def network_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators for the parts of one network, so that changing p changes nothing else."""
    weights, external, plastic, noise = np.random.SeedSequence(seed).spawn(4)
    return {
        "weights": np.random.default_rng(weights),
        "input": np.random.default_rng(external),
        "plastic": np.random.default_rng(plastic),
        "noise": np.random.default_rng(noise),
    }


def initial_weights(units: int, gain: float, rng: np.random.Generator) -> np.ndarray:
    """J0 = g N(0, 1) / sqrt(N): (N, N) float32."""
    return (gain * rng.standard_normal((units, units)) / math.sqrt(units)).astype(np.float32)


def frozen_input(steps: int, units: int, config: PinningConfig, rng: np.random.Generator) -> np.ndarray:
    """h (S + 1, N) float32: white noise low-pass filtered with τ_WN, the same on every run.

    As in the lab's demo: h(0) = 1, then h(t) = w(t) + (h(t - dt) - w(t)) exp(-dt/τ_WN) with w of SD
    sqrt(τ_WN / dt), scaled by h0; its stationary SD is then about h0 / sqrt(2).
    """
    decay = math.exp(-config.dt_s / config.input_tau_s)
    white = math.sqrt(config.input_tau_s / config.dt_s) * rng.standard_normal((steps - 1, units))
    start = np.ones(units)
    filtered, _ = lfilter([1.0 - decay], [1.0, -decay], white, axis=0, zi=decay * start[None, :])
    return (config.input_amplitude * np.concatenate([start[None, :], filtered])).astype(np.float32)


def plastic_order(units: int, plastic_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A random permutation of the units whose first M = round(p N) entries are the plastic set C.

    Nested across p for one seed: the plastic set at p = 0.1 is part of the one at p = 0.2.
    """
    return rng.permutation(units), round(plastic_fraction * units)


def frame_steps(frames: int, frame_interval_s: float, dt_s: float) -> np.ndarray:
    """s_k (K,): the integration step nearest each data frame time k * frame_interval_s."""
    steps = np.rint(np.arange(frames) * frame_interval_s / dt_s).astype(np.int64)
    if np.any(np.diff(steps) < 1):
        raise ValueError(
            f"frame_interval_s ({frame_interval_s}) is shorter than dt_s ({dt_s}): two frames fall on one step; "
            "resample the target to a coarser frame grid"
        )
    return steps


def fill_gaussian(rng: np.random.Generator, out: np.ndarray) -> None:
    """Fill a float32 array with N(0, 1) draws by Box-Muller.

    Fresh noise for every unit and step is 661 M draws per N = 500 network; on the 2-core Xeon numpy's
    float32 ziggurat took about 9 ns a draw, Box-Muller on float32 uniforms about 5 ns. The float32
    uniforms cap |draw| at 5.8 SD, which the noise never needs.
    """
    flat = out.reshape(-1)
    half = (flat.size + 1) // 2
    radius = rng.random(half, dtype=np.float32)
    angle = rng.random(half, dtype=np.float32)
    np.subtract(np.float32(1.0), radius, out=radius)  # (0, 1]: log stays finite
    np.log(radius, out=radius)
    np.multiply(radius, np.float32(-2.0), out=radius)
    np.sqrt(radius, out=radius)
    np.multiply(angle, np.float32(2 * math.pi), out=angle)
    rest = flat.size - half
    np.cos(angle, out=flat[:half])
    np.multiply(flat[:half], radius, out=flat[:half])
    np.sin(angle[:rest], out=flat[half:])
    np.multiply(flat[half:], radius[:rest], out=flat[half:])


class Chunk:
    """The state of G networks that share a target and a step size, advanced together.

    `scaled_weights` (G, N, N) holds (dt/τ) J for each network, each J column-major in the network's own
    unit order (plastic units first); `state` x and `rates` r are (G, N, 1) so that one `np.matmul`
    computes all G products.
    """

    def __init__(self, weights: np.ndarray, step_fraction: float) -> None:
        networks, units, _ = weights.shape  # weights: (G, N, N) J in internal unit order
        self.step_fraction = np.float32(step_fraction)
        self.keep_fraction = np.float32(1.0 - step_fraction)
        storage = np.empty((networks, units, units), dtype=np.float32)  # storage[g] = (dt/τ) J[g]ᵀ, C-order
        self.scaled_weights = storage.transpose(0, 2, 1)  # (G, N, N), each J[g] column-major
        np.multiply(weights, self.step_fraction, out=self.scaled_weights)
        self.state = np.zeros((networks, units, 1), dtype=np.float32)  # x
        self.rates = np.zeros_like(self.state)  # r = φ(x)
        self.product = np.zeros_like(self.state)  # (dt/τ) J r

    def plastic_block(self, network: int, plastic_units: int) -> np.ndarray:
        """(dt/τ) J[:, C] of one network: a contiguous (N, M) Fortran-ordered view."""
        return self.scaled_weights[network][:, :plastic_units]

    def advance(self, drive: np.ndarray) -> None:
        """Free steps: x ← (1 - dt/τ) x + (dt/τ) J φ(x) + drive[s] for each s; drive (L, G, N, 1).

        drive[s] = (dt/τ)(h + η + cue) at that step. This loop is the whole cost of a run: one product and
        four in-place ufuncs per step, nothing allocated.
        """
        state, rates, product, weights = self.state, self.rates, self.product, self.scaled_weights
        keep = self.keep_fraction
        for step_drive in drive:
            expit(state, out=rates)
            np.matmul(weights, rates, out=product)
            np.multiply(state, keep, out=state)
            np.add(state, product, out=state)
            np.add(state, step_drive, out=state)

    def frame_step(self, drive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step that also reports its rates and inputs: returns (r, (dt/τ) J r), each (G, N, 1).

        After the call `product` + drive is (dt/τ) z, the scaled total input RLS compares with its target.
        The returned arrays are the chunk's buffers: copy what must outlive the next step.
        """
        expit(self.state, out=self.rates)
        np.matmul(self.scaled_weights, self.rates, out=self.product)
        np.multiply(self.state, self.keep_fraction, out=self.state)
        np.add(self.state, self.product, out=self.state)
        np.add(self.state, drive, out=self.state)
        return self.rates, self.product
