"""Frozen configuration of models, training runs and the session layout they were built for.

Everything here round-trips through JSON (`to_dict` / `from_dict`), so that a run directory and a
bundle say exactly what made them. Defaults are POCO's published recipe (Duan et al. 2025, arXiv:2506.14957).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Self


class FilmGate(enum.StrEnum):
    MULTIPLICATIVE = "multiplicative"  # POCO: h * alpha + beta, alpha starts at 0 (gate closed)
    RESIDUAL = "residual"  # h * (1 + alpha) + beta: starts as the plain MLP, conditioning adds to it


class ModelKind(enum.StrEnum):
    POCO = "poco"
    MLP = "mlp"  # POCO's "MLP only" ablation: the shared univariate MLP, no conditioning
    NLINEAR = "nlinear"
    COPY_LAST = "copy_last"


class JsonConfig:
    """Round-trips a frozen dataclass of scalars and enums through JSON, refusing unknown fields."""

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (v.value if isinstance(v, enum.Enum) else v)
            for f in dataclasses.fields(self)
            for v in [getattr(self, f.name)]
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class ModelConfig(JsonConfig):
    kind: ModelKind = ModelKind.POCO
    context_frames: int = 48  # C: frames the model sees
    horizon: int = 16  # P: frames it forecasts, all in one pass
    token_frames: int = 16  # each unit's context is cut into C / token_frames tokens
    dim: int = 128  # D: embedding and latent width
    num_latents: int = 8
    latent_step_frames: float = 6.0  # latent timestamps 0, 6, ..., 42
    head_dim: int = 64
    self_attention_heads: int = 16
    self_attention_layers: int = 1
    ffn_hidden: int = 512  # GEGLU width: Linear(D -> 2 * ffn_hidden), then ffn_hidden -> D
    ffn_dropout: float = 0.2
    residual_dropout: float = 0.4  # on the latent self-attention block's residual branches
    unit_dropout: float = 0.0  # training only: each unit is left out of the population tokens with this probability
    unit_embeddings: bool = True  # False: units are anonymous (session + dataset embedding only)
    rotary_dims: int = 32  # of head_dim: 16 frequency pairs rotated, the rest untouched
    rotary_min_period_frames: float = 0.1
    rotary_max_period_frames: float = 100.0
    mlp_hidden: int = 1024  # the forecaster MLP's hidden width (POCO and the MLP baseline)
    film_gate: FilmGate = FilmGate.MULTIPLICATIVE
    embedding_init_std: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ModelKind(self.kind))
        object.__setattr__(self, "film_gate", FilmGate(self.film_gate))
        for name in ("context_frames", "horizon", "token_frames", "dim", "num_latents", "head_dim", "mlp_hidden"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.context_frames % self.token_frames:
            raise ValueError(
                f"ModelConfig.context_frames ({self.context_frames}) must be a multiple of "
                f"token_frames ({self.token_frames})"
            )
        if not 0 <= self.unit_dropout < 1:
            raise ValueError(f"ModelConfig.unit_dropout must be in [0, 1), got {self.unit_dropout}")
        if self.rotary_dims > self.head_dim or self.rotary_dims % 2:
            raise ValueError(f"ModelConfig.rotary_dims must be even and <= head_dim, got {self.rotary_dims}")

    @property
    def window_frames(self) -> int:
        return self.context_frames + self.horizon


@dataclasses.dataclass(frozen=True)
class TrainConfig(JsonConfig):
    steps: int = 10_000  # POCO: 10k multi-session, 5k single session, 2k fine-tuning
    batch_windows: int = 64  # windows per dataset per step, uniform over all its training windows
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip_norm: float = 5.0
    eval_every: int = 100  # validate this often; the best validation checkpoint is kept
    patience: int = 0  # stop after this many validations without a new best (0: run all steps)
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    # The share of windows normalised as a new animal's live stream is, over its recent frames (poco_rt.models.data)
    streamed_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_windows", "eval_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.streamed_share <= 1.0:
            raise ValueError(f"TrainConfig.streamed_share must be in [0, 1], got {self.streamed_share}")


@dataclasses.dataclass(frozen=True)
class SessionSpec(JsonConfig):
    """One session's place in the embedding tables."""

    dataset: str
    session: str
    num_units: int


@dataclasses.dataclass(frozen=True)
class SessionLayout:
    """Which rows of the unit, session and dataset embedding tables belong to which session."""

    sessions: tuple[SessionSpec, ...]

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(s.dataset for s in self.sessions))

    @property
    def total_units(self) -> int:
        return sum(s.num_units for s in self.sessions)

    def index(self, dataset: str, session: str) -> int:
        for i, spec in enumerate(self.sessions):
            if (spec.dataset, spec.session) == (dataset, session):
                return i
        raise KeyError(f"no session {dataset}/{session} in this model")

    def unit_offset(self, session_index: int) -> int:
        return sum(s.num_units for s in self.sessions[:session_index])

    def dataset_index(self, session_index: int) -> int:
        return self.datasets.index(self.sessions[session_index].dataset)

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.sessions]

    @classmethod
    def from_list(cls, items: list[dict[str, Any]]) -> SessionLayout:
        return cls(tuple(SessionSpec.from_dict(item) for item in items))
