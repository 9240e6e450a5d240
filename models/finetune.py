"""Fine-tune a trained model to new recordings, as POCO does for a new animal.

All weights whose shapes match are copied; the new sessions get fresh unit and session
embeddings (N(0, 0.02)); a new dataset gets a fresh dataset embedding, an existing one keeps its
own, frozen, so the sessions already in the bundle forecast exactly as before. Then one of:

- embeddings: only the new unit and session embeddings learn. The network is unchanged, so the
  result adds one `sessions/*.npz` to the existing bundle: the fast path a rig needs.
- mlp: the embeddings and the FiLM forecaster learn; the population encoder stays frozen.
- all: everything learns.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import torch

from poco_rt.models.baselines import build_model
from poco_rt.models.config import ModelKind, SessionLayout, TrainConfig
from poco_rt.models.data import TrainingSet, layout_of
from poco_rt.models.poco import Poco
from poco_rt.models.recording import Recording
from poco_rt.models.run_directory import BEST_CHECKPOINT, RunDirectory, load_checkpoint
from poco_rt.models.training import TrainResult, calibration_of, train_loop, transfer_weights


class FinetuneMode(enum.StrEnum):
    EMBEDDINGS = "embeddings"
    MLP = "mlp"
    ALL = "all"


def trainable_parameters(
    model: Poco, mode: FinetuneMode, *, first_new_session: int, first_new_dataset: int
) -> list[dict]:
    """Optimiser groups for a mode. Outside `all`, rows of old sessions get a zero gradient and
    no weight decay, so AdamW leaves them bit-for-bit as they were."""
    for parameter in model.parameters():
        parameter.requires_grad_(mode is FinetuneMode.ALL)
    if mode is FinetuneMode.ALL:
        return [{"params": list(model.parameters())}]
    first_new_unit = model.layout.unit_offset(first_new_session)
    keep_old_rows = (
        (model.unit_embedding.weight, first_new_unit),
        (model.session_embedding.weight, first_new_session),
        (model.dataset_embedding.weight, first_new_dataset),
    )
    trainable = []
    for table, first_new_row in keep_old_rows:
        if first_new_row >= table.shape[0]:
            continue  # nothing new in this table (a known dataset): it stays frozen
        table.requires_grad_(True)
        table.register_hook(lambda grad, row=first_new_row: torch.cat((torch.zeros_like(grad[:row]), grad[row:])))
        trainable.append(table)
    groups = [{"params": trainable, "weight_decay": 0.0}]
    if mode is FinetuneMode.MLP:
        forecaster = list(model.forecaster.parameters())
        for parameter in forecaster:
            parameter.requires_grad_(True)
        groups.append({"params": forecaster})
    return groups


def finetune(
    source_run: str,
    recordings: Sequence[Recording],
    out: str,
    *,
    mode: FinetuneMode,
    train_config: TrainConfig,
    show_progress: bool = True,
) -> TrainResult:
    source = RunDirectory(source_run)
    config = source.model_config
    if config.kind is not ModelKind.POCO and mode is not FinetuneMode.ALL:
        raise ValueError(f"a {config.kind.value} model has no embeddings; fine-tune it with --mode all")
    old_layout = source.layout
    known = {(s.dataset, s.session) for s in old_layout.sessions}
    new_specs = layout_of(recordings).sessions
    clashes = [f"{s.dataset}/{s.session}" for s in new_specs if (s.dataset, s.session) in known]
    if clashes:
        raise ValueError(f"{source.path} was already trained on {clashes}; fine-tune on new recordings only")
    layout = SessionLayout(old_layout.sessions + new_specs)

    run = RunDirectory(out)
    if not run.exists:
        frame_rates = source.manifest().get("frame_rates_hz", []) + [
            s.frame_rate_hz for r in recordings for s in r.sessions
        ]
        run.create(
            model=config,
            train=train_config,
            layout=layout,
            sources=source.manifest()["sources"] + [r.name for r in recordings],
            extra={
                "finetuned_from": str(source.path),
                "finetune_mode": mode.value,
                "first_new_session": len(old_layout.sessions),
                "frame_rates_hz": frame_rates,
            },
        )
    data = TrainingSet.build(recordings, layout, config)
    run.save_calibration(source.calibration() | calibration_of(data))

    torch.manual_seed(train_config.seed)
    model = build_model(config, layout)
    transfer_weights(model, load_checkpoint(source.path / BEST_CHECKPOINT)["model"])
    if isinstance(model, Poco):
        parameters = trainable_parameters(
            model, mode, first_new_session=len(old_layout.sessions), first_new_dataset=len(old_layout.datasets)
        )
    else:
        parameters = [{"params": list(model.parameters())}]
    return train_loop(run, model, data, train_config, parameter_groups=parameters, show_progress=show_progress)
