"""The baselines POCO is judged against, trained by the same loop and called the same way.

Each takes (B, N, C) normalised context and a session index and returns (B, N, P); none of them
looks at other units, so they measure what the population conditioning adds.
"""

from __future__ import annotations

import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from poco_rt.models.config import ModelConfig, ModelKind, SessionLayout
from poco_rt.models.poco import Poco


class CopyLast(nn.Module):
    """Repeat the last context frame: the reference of POCO's score (it scores exactly 0)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.horizon = config.horizon

    def forward(self, context: Tensor, session_index: int) -> Tensor:
        return context[..., -1:].expand(*context.shape[:-1], self.horizon)


class NLinear(nn.Module):
    """One shared linear map of the context relative to its last value (Zeng et al. 2023)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(config.context_frames, config.horizon)

    def forward(self, context: Tensor, session_index: int) -> Tensor:
        last = context[..., -1:]  # (B, N, 1)
        return self.linear(context - last) + last


class UnconditionedForecaster(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.input = nn.Linear(config.context_frames, config.mlp_hidden)
        self.output = nn.Linear(config.mlp_hidden, config.horizon)

    def forward(self, context: Tensor) -> Tensor:
        return self.output(F.relu(self.input(context)))


class Mlp(nn.Module):
    """POCO's "MLP only" ablation: the shared univariate forecaster without population FiLM.
    Its parameters are named as POCO's (`forecaster.input`, `forecaster.output`), so a trained MLP
    can start a POCO run (`poco-rt train --init-from`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.forecaster = UnconditionedForecaster(config)

    def forward(self, context: Tensor, session_index: int) -> Tensor:
        return self.forecaster(context)


def build_model(config: ModelConfig, layout: SessionLayout) -> nn.Module:
    if config.kind is ModelKind.POCO:
        return Poco(config, layout)
    if config.kind is ModelKind.MLP:
        return Mlp(config)
    if config.kind is ModelKind.NLINEAR:
        return NLinear(config)
    return CopyLast(config)
