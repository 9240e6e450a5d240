"""Scores of a trained run on POCO's test split, with the copy-last reference beside them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from poco_rt.metric import ScoreAccumulator, dataset_score
from poco_rt.models.config import SessionLayout
from poco_rt.models.data import TrainingSet
from poco_rt.models.recording import Recording
from poco_rt.models.run_directory import RunDirectory
from poco_rt.models.splits import Split
from poco_rt.models.training import load_model


@dataclasses.dataclass(frozen=True)
class SessionScore:
    dataset: str
    session: str
    score: float  # 1 - model_mse / copy_mse
    model_mse: float
    copy_mse: float
    windows: int


@dataclasses.dataclass(frozen=True)
class Evaluation:
    split: str
    sessions: list[SessionScore]

    @property
    def score(self) -> float:
        return dataset_score([s.score for s in self.sessions])

    def to_dict(self) -> dict:
        return {"split": self.split, "score": self.score, "sessions": [dataclasses.asdict(s) for s in self.sessions]}


@torch.no_grad()
def evaluate_model(
    model: nn.Module, data: TrainingSet, layout: SessionLayout, *, split: Split = Split.TEST
) -> Evaluation:
    model.eval()
    accumulators: dict[int, ScoreAccumulator] = {i: ScoreAccumulator() for i in data.sessions}
    windows = dict.fromkeys(data.sessions, 0)
    for batch in data.iterate(split):
        forecast = model(batch.context, batch.session_index)  # (B, N, P)
        accumulators[batch.session_index].add(forecast.numpy(), batch.target.numpy(), batch.context[..., -1].numpy())
        windows[batch.session_index] += batch.context.shape[0]
    scores = []
    for index, accumulator in accumulators.items():
        spec = layout.sessions[index]
        scores.append(
            SessionScore(
                spec.dataset,
                spec.session,
                accumulator.score,
                accumulator.model_mse,
                accumulator.copy_mse,
                windows[index],
            )
        )
    return Evaluation(split.value, scores)


def evaluate_run(run_path: str, recordings: Sequence[Recording], *, split: Split = Split.TEST) -> Evaluation:
    run = RunDirectory(run_path)
    data = TrainingSet.build(recordings, run.layout, run.model_config)
    return evaluate_model(load_model(run), data, run.layout, split=split)


def mean_confidence_interval(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its t-distribution confidence interval, as POCO reports seeds."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    quantile = stats.t.ppf(0.5 + level / 2, values.size - 1)
    return float(values.mean()), float(quantile * values.std(ddof=1) / np.sqrt(values.size))
