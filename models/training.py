"""POCO's training loop, shared by every model kind and by fine-tuning.

MSE over the P forecast steps; AdamW (amsgrad) with POCO's learning rate, weight decay and
gradient-norm clip; validation every `eval_every` steps keeping the best checkpoint. The loop is
deterministic on CPU for a fixed seed, and a run resumes from `checkpoint_last.pt` with the
optimiser and both RNG states, so an interrupted run ends exactly where an uninterrupted one would.

Under torchrun (distributed.py) every rank draws the step's full batch from the shared seed and
trains on its share; only rank 0 validates, checkpoints and logs, and it tells the others when to
stop. Dropout then draws from a stream seeded per rank and step, so that a resumed distributed run
also continues exactly, without collecting every rank's RNG state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from poco_rt.models.baselines import build_model
from poco_rt.models.config import ModelConfig, ModelKind, SessionLayout, TrainConfig
from poco_rt.models.data import SessionBatch, TrainingSet, layout_of, share_of
from poco_rt.models.distributed import CPU, SINGLE_PROCESS, ProcessGroup
from poco_rt.models.recording import Recording
from poco_rt.models.run_directory import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    RunDirectory,
    load_checkpoint,
    save_checkpoint,
)
from poco_rt.models.splits import Split

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    best_step: int
    best_validation_loss: float
    steps: int
    seconds_per_step: float


def squared_error(
    model: nn.Module, batches: Iterable[SessionBatch], device: torch.device = CPU
) -> tuple[torch.Tensor, int]:
    """Sum of squared forecast errors over all batches (computed on `device`), and how many values it covers."""
    total = torch.zeros((), device=device)
    count = 0
    for batch in batches:
        forecast = batch.forecast(model, device)  # (B, N, P)
        total = total + ((forecast - batch.target.to(device)) ** 2).sum()
        count += batch.target.numel()
    return total, count


class StepError(nn.Module):
    """One step's summed squared error as a module, so that DDP sees one forward call per step.

    DDP synchronises buffers before every forward call and gradients after backward; ranks whose
    shares hold different numbers of sessions must still make the same calls, or they wait forever.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model, self.device = model, device

    def forward(self, batches: list[SessionBatch]) -> torch.Tensor:
        return squared_error(self.model, batches, self.device)[0]


@torch.no_grad()
def validation_loss(
    model: nn.Module, data: TrainingSet, device: torch.device = CPU, *, streamed_share: float = 0.0
) -> float:
    """Mean squared error over the validation windows; with `streamed_share`, every window is also forecast
    streamed (poco_rt.models.data) and the two losses are weighted as training draws them."""
    model.eval()
    total, count = squared_error(model, data.iterate(Split.VALIDATION), device)
    plain = float(total) / count if count else math.nan
    if not streamed_share:
        return plain
    total, count = squared_error(model, data.iterate(Split.VALIDATION, streamed=True), device)
    return (1.0 - streamed_share) * plain + streamed_share * (float(total) / count if count else math.nan)


def train_loop(
    run: RunDirectory,
    model: nn.Module,
    data: TrainingSet,
    config: TrainConfig,
    *,
    parameter_groups: Sequence[dict] | None = None,
    show_progress: bool = True,
    group: ProcessGroup = SINGLE_PROCESS,
) -> TrainResult:
    """Train the optimiser groups given (all parameters by default); keep the best validation checkpoint.

    With several ranks in `group`, each calls this with the same arguments; only rank 0 touches `run`.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    if group.world_size > config.batch_windows:
        raise ValueError(
            f"{group.world_size} ranks cannot share a step of batch_windows={config.batch_windows} windows per "
            f"dataset (each rank needs one); start at most {config.batch_windows} ranks or raise --batch-windows"
        )
    layout = group.broadcast(run.layout if group.is_main else None)
    device = group.device
    model.to(device)
    groups = list(parameter_groups) if parameter_groups is not None else [{"params": list(model.parameters())}]
    parameters = [p for param_group in groups for p in param_group["params"]]
    if not parameters:
        raise ValueError("nothing to train: the model has no trainable parameters")
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay, amsgrad=True)
    rng = np.random.default_rng(config.seed)
    step, best_loss, best_step, stale_validations = 0, math.inf, 0, 0
    resumable = group.is_main and (run.path / LAST_CHECKPOINT).exists()
    state = group.broadcast(load_checkpoint(run.path / LAST_CHECKPOINT) if resumable else None)
    if state is not None:  # every rank continues from rank 0's checkpoint
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, best_loss, best_step = state["step"], state["best_validation_loss"], state["best_step"]
        stale_validations = state["stale_validations"]
        if group.is_main:
            run.truncate_log(step)
            logger.info(
                "resuming %s at step %d (best validation %.4f at step %d)",
                run.path,
                step,
                best_loss,
                best_step,
            )
    step_error = group.wrap(StepError(model, device))  # DDP starts every rank from rank 0's weights

    running, running_steps, started = 0.0, 0, time.perf_counter()
    first_step = step
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, disable=not (show_progress and group.is_main)) as progress:
        task = progress.add_task(f"training {run.path.name}", total=config.steps, completed=step, status="")
        while step < config.steps and not (config.patience and stale_validations >= config.patience):
            step += 1
            if group.is_distributed:
                torch.manual_seed(dropout_seed(config.seed, step, group.rank))
            step_error.train()
            # the whole step, the same on every rank
            draw = data.draw(rng, config.batch_windows, layout, streamed_share=config.streamed_share)
            total = step_error(data.batches(share_of(draw, group.rank, group.world_size)))
            # DDP averages the ranks' gradients; scaling each share by K / (the whole step's value count) makes
            # that average the gradient of the whole step's mean squared error, however unevenly it is shared.
            loss = total * group.world_size / data.forecast_values(draw)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, config.grad_clip_norm)
            optimizer.step()
            running, running_steps = running + float(loss.detach()), running_steps + 1
            if step % config.eval_every == 0 or step == config.steps:
                train_loss = group.mean(running / running_steps)
                if group.is_main:
                    validation = validation_loss(model, data, device, streamed_share=config.streamed_share)
                    stale_validations += 1
                    if validation < best_loss:
                        best_loss, best_step, stale_validations = validation, step, 0
                        save_checkpoint(
                            run.path / BEST_CHECKPOINT,
                            {"model": model.state_dict(), "step": step, "validation_loss": validation},
                        )
                    save_checkpoint(
                        run.path / LAST_CHECKPOINT,
                        {
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "step": step,
                            "numpy_rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(),
                            "best_validation_loss": best_loss,
                            "best_step": best_step,
                            "stale_validations": stale_validations,
                        },
                    )
                    elapsed = time.perf_counter() - started
                    run.append_log(
                        {
                            "step": step,
                            "train_loss": train_loss,
                            "validation_loss": validation,
                            "seconds": round(elapsed, 3),
                        }
                    )
                    status = f"val {validation:.4f} (best {best_loss:.4f} @ {best_step})"
                    progress.update(task, status=status)
                running, running_steps = 0.0, 0
                stale_validations = group.broadcast(stale_validations)  # patience: every rank stops at once
            progress.update(task, completed=step)
    seconds_per_step = (time.perf_counter() - started) / max(1, step - first_step)
    best_step, best_loss = group.broadcast((best_step, best_loss))
    if group.is_main:
        run.update_manifest(
            status="finished",
            best_step=best_step,
            best_validation_loss=best_loss,
            seconds_per_step=seconds_per_step,
            ranks=group.world_size,
        )
    return TrainResult(best_step, best_loss, step, seconds_per_step)


def dropout_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one rank's step: ranks draw independent dropout masks, and a resumed run the same ones."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


EMBEDDING_TABLES = ("unit_embedding.weight", "session_embedding.weight", "dataset_embedding.weight")


def transfer_weights(model: nn.Module, source_state: dict[str, torch.Tensor]) -> None:
    """Copy every tensor whose shape matches; embedding tables keep their old rows at the top."""
    state = model.state_dict()
    for name, tensor in source_state.items():
        if name not in state:
            continue
        if state[name].shape == tensor.shape:
            state[name] = tensor.clone()
        elif name in EMBEDDING_TABLES and state[name].shape[1:] == tensor.shape[1:]:
            state[name][: tensor.shape[0]] = tensor
    model.load_state_dict(state)


def load_model(run: RunDirectory, *, checkpoint: str = BEST_CHECKPOINT) -> nn.Module:
    model = build_model(run.model_config, run.layout)
    if run.model_config.kind is not ModelKind.COPY_LAST:
        model.load_state_dict(load_checkpoint(run.path / checkpoint)["model"])
    return model.eval()


def calibration_of(data: TrainingSet) -> dict:
    return {i: (w.session.unit_ids, w.normalizer) for i, w in data.sessions.items()}


def train(
    recordings: Sequence[Recording],
    run_path: str,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    sources: list[str],
    init_from: str | None = None,
    show_progress: bool = True,
    group: ProcessGroup = SINGLE_PROCESS,
) -> TrainResult:
    """Train one model across all sessions of all recordings (resuming if the run exists).

    `init_from` names a finished run whose weights start this one wherever names and shapes match:
    a trained MLP baseline gives POCO (with the residual FiLM gate) its forecaster. Under torchrun
    every rank of `group` calls this alike; rank 0 alone reads and writes the run directory and
    `init_from` (the others get its weights from DDP), so other nodes need only the recordings.
    """
    if model_config.kind is ModelKind.COPY_LAST:
        raise ValueError("copy_last has nothing to train; use `poco-rt evaluate` for its score")
    run = RunDirectory(run_path)
    layout = layout_of(recordings)
    if group.is_main and run.exists:
        _check_resumable(run, model_config, train_config, layout)
    elif group.is_main:
        frame_rates = [s.frame_rate_hz for r in recordings for s in r.sessions]
        run.create(
            model=model_config,
            train=train_config,
            layout=layout,
            sources=sources,
            extra={"frame_rates_hz": frame_rates, "init_from": init_from},
        )
    data = TrainingSet.build(recordings, layout, model_config)
    if group.is_main:
        run.save_calibration(calibration_of(data))
    torch.manual_seed(train_config.seed)
    model = build_model(model_config, layout)
    if init_from and group.is_main:
        transfer_weights(model, load_checkpoint(RunDirectory(init_from).path / BEST_CHECKPOINT)["model"])
    return train_loop(run, model, data, train_config, show_progress=show_progress, group=group)


def _check_resumable(run: RunDirectory, model: ModelConfig, train: TrainConfig, layout: SessionLayout) -> None:
    if run.model_config != model or run.layout != layout:
        raise ValueError(f"{run.path} holds a run with another model or data; choose a new --out")
    previous = run.train_config
    if dataclasses.replace(previous, steps=train.steps, threads=train.threads) != train:
        raise ValueError(f"{run.path} was trained with other settings ({previous}); choose a new --out")
    if previous != train:
        run.update_manifest(train=train.to_dict())
