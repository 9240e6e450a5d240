"""Embeddings-only adaptation of a bundle's network to a new animal, from the frames it streamed.

Legend: T frames, N units, C context frames, P horizon, D embedding width, B windows per step.

POCO (Duan et al. 2025) adapts a pre-trained model to a new recording by training only that
recording's unit embeddings, the network frozen. Here the recording is a live stream's own raw
frames, cut in time into three parts that never look ahead of each other (poco_rt.frame_split).
In the normalisation of the train part, the embeddings learn on the train part; validation, every
`eval_every` steps, keeps the best step and stops early; the held-out part, seen by neither (its
forecasts' contexts reach back into the parts before, their targets do not), scores the best
embeddings against those the stream forecasts with now, both in that one normalisation, with
POCO's metric (1 - MSE / MSE_copy-last). So a swap rests on what was trained, the embeddings,
judged on frames neither was fitted to, and never on a difference of normalisation alone: a
zero-shot stream's running normalisation has seen more frames than the train part, and a
normalisation fitted to fewer frames can win a short held-out part by chance and lose after it.
The candidate calibration carries the normalisation of every frame the round had: what a stream
opened with it by name forecasts in (a new animal's stream, live or reopened after a restart,
keeps its own running estimate and takes only the embeddings, poco_rt.server.session). The
embeddings start from the current calibration's (the bundle's unseen-unit embedding for a zero-shot
stream, the last fine-tuned version after that), so each round starts where the stream stands, and
a round that finds nothing better on validation (best step 0) scores exactly what the stream has
and leaves it there.

A higher held-out score is not enough to swap: embeddings fitted to a few hundred frames can beat
the current ones on a short held-out part by noise and then forecast worse. The held-out forecasts
are cut into blocks of P consecutive ones (a block's targets overlap the next block's by fewer than
P frames), the candidate's score gain is taken per block, and the swap needs a mean gain above 0 by
a one-sided t-test over the blocks at `SWAP_SIGNIFICANCE`, with at least `MIN_GAIN_BLOCKS` blocks.
A round on too few frames for that is kept, not used; a later round, on more frames, decides.

A round runs beside serving, on the cores the ingest thread does not use, so it should end soon and
take little CPU: its steps are 16 windows, not the 64 POCO trains with, and one forward (training or
validation) never holds more than UNIT_WINDOWS_PER_CALL unit-windows. On the first rounds of three
held-out worms (130-146 units), 16-window rounds stopped after as many steps as 64-window ones or
fewer, at 8.8-9.8 ms of CPU a window against 10.4-11.6 (a larger step's activations outgrow the
cache), and reached the same swap decisions with 5-10x less CPU (bench/README.md, new animals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from poco_rt.bundle import TRAINABLE_NETWORK_FILE, Bundle, SessionCalibration
from poco_rt.errors import BundleError
from poco_rt.frame_split import MIN_GAIN_BLOCKS, FrameParts, minimum_frames, split_frames
from poco_rt.metric import score_from_errors
from poco_rt.models.config import ModelConfig, SessionLayout, SessionSpec
from poco_rt.models.poco import Poco
from poco_rt.normalisation import normalisation_of

UNIT_WINDOWS_PER_CALL = 4_096  # B x N in one forward: 16 windows up to 256 units, fewer above (the working set)
SWAP_SIGNIFICANCE = 0.05  # the one-sided p-value below which the candidate's held-out gain counts as real
ProgressCallback = Callable[[int, float, int], None]  # step, validation score, best step so far


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    max_steps: int = 300  # an upper bound: early stopping usually ends a round well before it
    learning_rate: float = 1e-3  # POCO's fine-tuning rate for new embeddings
    batch_windows: int = 16  # a quarter of POCO's 64 (see the module docstring), fewer for large N
    unit_windows_per_call: int = UNIT_WINDOWS_PER_CALL
    eval_every: int = 10
    patience: int = 5  # validations without improvement before stopping
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class AdaptResult:
    calibration: SessionCalibration  # the candidate: trained embeddings, the normalisation of every frame
    candidate_score: float  # its embeddings on the held-out part, in the train part's normalisation
    baseline_score: float  # the embeddings the stream forecasts with now, the same frames and normalisation
    gain_blocks: tuple[float, ...]  # per block of P consecutive held-out forecasts: candidate's score - current's
    best_step: int
    steps: int
    validation_scores: list[tuple[int, float]]
    parts: FrameParts

    @property
    def gain_p_value(self) -> float:
        """One-sided p-value of a mean block gain above 0 (t-test over the blocks); 1 with too few blocks."""
        gains = np.asarray(self.gain_blocks)
        if len(gains) < MIN_GAIN_BLOCKS or not np.all(np.isfinite(gains)):
            return 1.0
        if np.ptp(gains) == 0.0:  # no spread: the t statistic is undefined, the sign decides
            return 0.0 if gains[0] > 0 else 1.0
        return float(stats.ttest_1samp(gains, 0.0, alternative="greater").pvalue)

    @property
    def improved(self) -> bool:
        """Whether to swap: a higher held-out score, and a gain the blocks say is not noise."""
        return bool(self.candidate_score > self.baseline_score and self.gain_p_value < SWAP_SIGNIFICANCE)


def load_network(bundle: Bundle) -> Poco:
    """The bundle's network as a frozen torch module in eval mode; its embedding tables are unused."""
    if not bundle.trainable:
        raise BundleError(
            f"{bundle.path} has no {TRAINABLE_NETWORK_FILE} (exported before fine-tuning from a server existed); "
            "export it again with `poco-rt export` to adapt new animals live"
        )
    config = ModelConfig.from_dict(bundle.manifest["model"])
    model = Poco(config, SessionLayout((SessionSpec(dataset="new", session="new", num_units=1),)))
    state = torch.load(bundle.path / TRAINABLE_NETWORK_FILE, weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not name.endswith("embedding.weight") for name in missing):
        raise BundleError(f"{bundle.path}: {TRAINABLE_NETWORK_FILE} does not fit the model config in bundle.json")
    model.eval()
    model.requires_grad_(False)
    return model


def adapt_embeddings(
    bundle: Bundle,
    frames: np.ndarray,
    *,
    baseline: SessionCalibration,
    name: str,
    config: AdaptConfig,
    on_validation: ProgressCallback | None = None,
) -> AdaptResult:
    """Train `baseline`'s embeddings on raw `frames` (T, N) with the network frozen; score both on the held-out part."""
    model = load_network(bundle)
    context_frames, horizon = bundle.context_frames, bundle.horizon
    total, units = frames.shape
    needed = minimum_frames(context_frames, horizon)
    if total < needed:
        raise ValueError(
            f"{total} frames recorded; adapting needs at least {needed} (forecast targets in all three parts)"
        )
    if units != baseline.num_units:
        raise ValueError(f"the frames have {units} units, the calibration {baseline.num_units}")
    parts = split_frames(total)
    mean, std = normalisation_of(frames[slice(*parts.train)])
    normalised = torch.from_numpy((frames - mean) / std).float()  # (T, N)
    train_windows = window_starts(parts, parts.train, context_frames, horizon)
    validation_windows = window_starts(parts, parts.validation, context_frames, horizon)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    embeddings = torch.nn.Parameter(torch.from_numpy(baseline.unit_embeddings.copy()))  # (N, D)
    optimizer = torch.optim.AdamW([embeddings], lr=config.learning_rate, weight_decay=0.0, amsgrad=True)
    per_call = config.unit_windows_per_call
    batch = max(1, min(config.batch_windows, per_call // units))

    def validation_score(candidate: torch.Tensor) -> float:
        return score_windows(model, normalised, validation_windows, candidate, context_frames, unit_windows=per_call)

    best_score, best_step = validation_score(embeddings.detach()), 0
    best = embeddings.detach().clone()
    history = [(0, best_score)]
    step, stale = 0, 0
    while step < config.max_steps and stale < config.patience:
        step += 1
        starts = rng.choice(train_windows, size=batch)
        context, target = windows_of(normalised, starts, context_frames, horizon)
        loss = torch.mean((model.forecast(context, embeddings) - target) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % config.eval_every == 0:
            score = validation_score(embeddings.detach())
            history.append((step, score))
            if score > best_score:
                best_score, best_step, stale = score, step, 0
                best = embeddings.detach().clone()
            else:
                stale += 1
            if on_validation is not None:
                on_validation(step, score, best_step)

    held_out = window_starts(parts, parts.held_out, context_frames, horizon)
    current = torch.from_numpy(baseline.unit_embeddings)
    candidate_errors, copy_errors = window_errors(
        model, normalised, held_out, best, context_frames, unit_windows=per_call
    )
    baseline_errors, _ = window_errors(model, normalised, held_out, current, context_frames, unit_windows=per_call)
    mean, std = normalisation_of(frames)
    candidate = SessionCalibration(
        name=name, unit_ids=baseline.unit_ids, unit_embeddings=best.numpy().astype(np.float32), mean=mean, std=std
    )
    return AdaptResult(
        calibration=candidate,
        candidate_score=score_from_errors(float(candidate_errors.sum()), float(copy_errors.sum())),
        baseline_score=score_from_errors(float(baseline_errors.sum()), float(copy_errors.sum())),
        gain_blocks=block_gains(candidate_errors, baseline_errors, copy_errors, block=horizon),
        best_step=best_step,
        steps=step,
        validation_scores=history,
        parts=parts,
    )


def window_starts(parts: FrameParts, part: tuple[int, int], context_frames: int, horizon: int) -> np.ndarray:
    """The starts of `part`'s windows (its forecast targets inside it, the context from before), as an array."""
    return np.asarray(parts.window_starts(part, context_frames, horizon))


def windows_of(
    normalised: torch.Tensor, starts: np.ndarray, context_frames: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, N) -> context (B, N, C) and target (B, N, P) at the given window starts."""
    offsets = torch.from_numpy(starts[:, None] + np.arange(context_frames + horizon)[None, :])  # (B, C + P)
    windows = normalised[offsets].transpose(1, 2)  # (B, C + P, N) -> (B, N, C + P)
    return windows[..., :context_frames], windows[..., context_frames:]


def score_windows(
    model: Poco,
    normalised: torch.Tensor,
    starts: np.ndarray,
    embeddings: torch.Tensor,
    context_frames: int,
    *,
    unit_windows: int = UNIT_WINDOWS_PER_CALL,
) -> float:
    """POCO's score of `embeddings` over the windows at `starts`, in the normalisation of `normalised`."""
    model_errors, copy_errors = window_errors(
        model, normalised, starts, embeddings, context_frames, unit_windows=unit_windows
    )
    return score_from_errors(float(model_errors.sum()), float(copy_errors.sum()))


def window_errors(
    model: Poco,
    normalised: torch.Tensor,
    starts: np.ndarray,
    embeddings: torch.Tensor,
    context_frames: int,
    *,
    unit_windows: int = UNIT_WINDOWS_PER_CALL,
) -> tuple[np.ndarray, np.ndarray]:
    """Per window at `starts`: the forecast's and copy-last's summed squared errors over N x P, each (W,),
    forecast `unit_windows` unit-windows at a time."""
    horizon = model.config.horizon
    model_errors, copy_errors = [], []
    batch = max(1, unit_windows // normalised.shape[1])
    with torch.no_grad():
        for first in range(0, len(starts), batch):
            context, target = windows_of(normalised, starts[first : first + batch], context_frames, horizon)
            forecast = model.forecast(context, embeddings).double()
            target = target.double()
            model_errors.append(((forecast - target) ** 2).sum(dim=(1, 2)).numpy())
            copy_errors.append(((context[..., -1:].double() - target) ** 2).sum(dim=(1, 2)).numpy())
    return np.concatenate(model_errors), np.concatenate(copy_errors)


def block_gains(
    candidate_errors: np.ndarray, baseline_errors: np.ndarray, copy_errors: np.ndarray, *, block: int
) -> tuple[float, ...]:
    """The candidate's score minus the baseline's over each run of `block` consecutive windows (a tail
    shorter than a block is left out): (1 - cand / copy) - (1 - base / copy) = (base - cand) / copy."""
    blocks = len(copy_errors) // block

    def per_block(errors: np.ndarray) -> np.ndarray:
        return errors[: blocks * block].reshape(blocks, block).sum(axis=1)

    gains = (per_block(baseline_errors) - per_block(candidate_errors)) / per_block(copy_errors)
    return tuple(float(gain) for gain in gains)
