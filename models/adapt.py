"""Embeddings-only adaptation of a bundle's network to a new animal, from the frames it streamed.

Legend: T frames, N units, C context frames, P horizon, D embedding width, B windows per step.

POCO (Duan et al. 2025) adapts a pre-trained model to a new recording by training only that
recording's unit embeddings, the network frozen. Here the recording is a live stream's own raw
frames, cut in time into three parts that never look ahead of each other (poco_rt.frame_split).
The train part fits the normalisation and the embeddings; validation, every `eval_every` steps,
keeps the best step and stops early; the held-out part, seen by neither, scores the result against
the calibration the stream forecasts with now, with POCO's metric (1 - MSE / MSE_copy-last) in one
shared normalisation, so that a swap is made only on evidence from frames neither calibration was
fitted to. The embeddings start from the current calibration's (the bundle's unseen-unit embedding
for a zero-shot stream, the last fine-tuned version after that), so each round starts where the
stream stands and a round that finds nothing better leaves it there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from poco_rt.bundle import TRAINABLE_NETWORK_FILE, Bundle, SessionCalibration
from poco_rt.errors import BundleError
from poco_rt.frame_split import FrameParts, minimum_frames, split_frames
from poco_rt.metric import ScoreAccumulator
from poco_rt.models.config import ModelConfig, SessionLayout, SessionSpec
from poco_rt.models.poco import Poco
from poco_rt.normalisation import normalisation_of

UNIT_WINDOWS_PER_STEP = 65_536  # B x N per step: 64 windows up to 1,024 units, fewer above (memory)
ProgressCallback = Callable[[int, float, int], None]  # step, validation score, best step so far


@dataclasses.dataclass(frozen=True)
class AdaptConfig:
    max_steps: int = 300  # an upper bound: early stopping usually ends a round well before it
    learning_rate: float = 1e-3  # POCO's fine-tuning rate for new embeddings
    batch_windows: int = 64  # POCO's windows per step, lowered for large N (UNIT_WINDOWS_PER_STEP)
    eval_every: int = 10
    patience: int = 5  # validations without improvement before stopping
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class AdaptResult:
    calibration: SessionCalibration  # the candidate: trained embeddings, train-part normalisation
    candidate_score: float  # on the held-out part
    baseline_score: float  # the calibration the stream forecasts with now, same frames, same yardstick
    best_step: int
    steps: int
    validation_scores: list[tuple[int, float]]
    parts: FrameParts

    @property
    def improved(self) -> bool:
        return bool(self.candidate_score > self.baseline_score)


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
        raise ValueError(f"{total} frames recorded; adapting needs at least {needed} (three parts of a whole window)")
    if units != baseline.num_units:
        raise ValueError(f"the frames have {units} units, the calibration {baseline.num_units}")
    parts = split_frames(total)
    mean, std = normalisation_of(frames[slice(*parts.train)])
    normalised = torch.from_numpy((frames - mean) / std).float()  # (T, N)
    train_windows = window_starts(parts.train, context_frames + horizon)
    validation_windows = window_starts(parts.validation, context_frames + horizon)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    embeddings = torch.nn.Parameter(torch.from_numpy(baseline.unit_embeddings.copy()))  # (N, D)
    optimizer = torch.optim.AdamW([embeddings], lr=config.learning_rate, weight_decay=0.0, amsgrad=True)
    batch = max(1, min(config.batch_windows, UNIT_WINDOWS_PER_STEP // units))

    def validation_score(candidate: torch.Tensor) -> float:
        return score_windows(model, normalised, validation_windows, candidate, context_frames)

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

    candidate = SessionCalibration(
        name=name, unit_ids=baseline.unit_ids, unit_embeddings=best.numpy().astype(np.float32), mean=mean, std=std
    )
    held_out = window_starts(parts.held_out, context_frames + horizon)
    return AdaptResult(
        calibration=candidate,
        candidate_score=held_out_score(model, frames, held_out, candidate, yardstick=candidate, bundle=bundle),
        baseline_score=held_out_score(model, frames, held_out, baseline, yardstick=candidate, bundle=bundle),
        best_step=best_step,
        steps=step,
        validation_scores=history,
        parts=parts,
    )


def window_starts(part: tuple[int, int], window: int) -> np.ndarray:
    """Every window start inside one part, stride 1 (a window never crosses into the next part)."""
    return np.arange(part[0], part[1] - window + 1)


def windows_of(
    normalised: torch.Tensor, starts: np.ndarray, context_frames: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, N) -> context (B, N, C) and target (B, N, P) at the given window starts."""
    offsets = torch.from_numpy(starts[:, None] + np.arange(context_frames + horizon)[None, :])  # (B, C + P)
    windows = normalised[offsets].transpose(1, 2)  # (B, C + P, N) -> (B, N, C + P)
    return windows[..., :context_frames], windows[..., context_frames:]


def score_windows(
    model: Poco, normalised: torch.Tensor, starts: np.ndarray, embeddings: torch.Tensor, context_frames: int
) -> float:
    """POCO's score of `embeddings` over the windows at `starts`, in the normalisation of `normalised`."""
    horizon = model.config.horizon
    accumulator = ScoreAccumulator()
    batch = max(1, UNIT_WINDOWS_PER_STEP // normalised.shape[1])
    with torch.no_grad():
        for first in range(0, len(starts), batch):
            context, target = windows_of(normalised, starts[first : first + batch], context_frames, horizon)
            forecast = model.forecast(context, embeddings)
            accumulator.add(forecast.numpy(), target.numpy(), context[..., -1].numpy())
    return accumulator.score


def held_out_score(
    model: Poco,
    frames: np.ndarray,
    starts: np.ndarray,
    calibration: SessionCalibration,
    *,
    yardstick: SessionCalibration,
    bundle: Bundle,
) -> float:
    """`calibration`'s score on raw `frames`: forecast in its own normalisation, scored in `yardstick`'s.

    Two calibrations normalise differently; mapping both forecasts back to raw units and scoring in
    one normalisation weighs every unit the same for both, as POCO's metric weighs z-scored units.
    """
    context_frames, horizon = bundle.context_frames, bundle.horizon
    own = torch.from_numpy((frames - calibration.mean) / calibration.std).float()
    scale = torch.from_numpy(calibration.std / yardstick.std).float()[:, None]  # (N, 1)
    shift = torch.from_numpy((calibration.mean - yardstick.mean) / yardstick.std).float()[:, None]
    shared = torch.from_numpy((frames - yardstick.mean) / yardstick.std).float()
    embeddings = torch.from_numpy(calibration.unit_embeddings)
    accumulator = ScoreAccumulator()
    batch = max(1, UNIT_WINDOWS_PER_STEP // frames.shape[1])
    with torch.no_grad():
        for first in range(0, len(starts), batch):
            chunk = starts[first : first + batch]
            context, _ = windows_of(own, chunk, context_frames, horizon)
            forecast = model.forecast(context, embeddings) * scale + shift  # (B, N, P) in the yardstick's units
            shared_context, target = windows_of(shared, chunk, context_frames, horizon)
            accumulator.add(forecast.numpy(), target.numpy(), shared_context[..., -1].numpy())
    return accumulator.score
