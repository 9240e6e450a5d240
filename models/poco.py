"""POCO: population-conditioned forecasting (Duan et al. 2025, arXiv:2506.14957).

Every unit's series is forecast by one shared univariate MLP whose hidden layer is gated (FiLM) by
a summary of the whole population computed by a Perceiver encoder (POYO-style, rotary time):

1. Tokens: each unit's C = 48 context frames are cut into 3 tokens of 16 raw values;
   token = Linear(16 -> D)(values) + unit embedding, at timestamps 0, 16, 32 frames.
2. Embeddings N(0, 0.02): one per unit, session and dataset; a unit's embedding is their sum.
3. Encoder: 8 learned latents (timestamps 0, 6, ..., 42) cross-attend over all 3N tokens
   (1 head of 64, rotary on Q, K and V), residual GEGLU FFN; one layer of latent self-attention
   (16 heads x 64, rotary on values too) and FFN, both residuals through dropout; a decoder in which
   one query per unit (its embedding, timestamp 48) cross-attends to the latents (no value
   rotation), then an FFN. Output E_i in R^D per unit.
4. Forecaster: h_i = ReLU(W_in x_i + b_in); alpha_i, beta_i = W E_i + b (zero-initialised);
   y_i = W_out(h_i * alpha_i + beta_i) + b_out in R^P, all P steps in one pass.

Samples never attend to each other and every sample of a session has the same N, so plain batched
attention per session is exact: no masks. Legend: B samples, N units, C context frames, P horizon,
D embedding width, L latents, K = 3N tokens, H heads, Dh head width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from poco_rt.models.config import FilmGate, ModelConfig, SessionLayout


def rotary_angles(timestamps: Tensor, config: ModelConfig) -> Tensor:
    """(T,) frame times -> (T, Dh) angles; the last Dh - rotary_dims entries are 0 (not rotated).

    Periods are geometric from rotary_min_period_frames to rotary_max_period_frames, each angle
    repeated for the two members of its rotated pair (POYO's interleaved layout).
    """
    pairs = config.rotary_dims // 2
    ratio = config.rotary_max_period_frames / config.rotary_min_period_frames
    periods = config.rotary_min_period_frames * ratio ** torch.linspace(0, 1, pairs, dtype=torch.float64)
    inverse_frequencies = torch.zeros(config.head_dim // 2, dtype=torch.float64)
    inverse_frequencies[:pairs] = 2 * math.pi / periods
    angles = timestamps.double()[:, None] * inverse_frequencies  # (T, Dh/2)
    return angles.repeat_interleave(2, dim=-1).float()  # (T, Dh)


def rotate(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate consecutive pairs of x (..., T, Dh) by angles (T, Dh); negative angles undo it."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., T, Dh/2, 2)
    rotated_half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return x * angles.cos() + rotated_half * angles.sin()


def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Plain softmax attention: q (B, H, Q, Dh), k and v (B, H, K, Dh) -> (B, H, Q, Dh)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return scores.softmax(dim=-1) @ v


class RotaryCrossAttention(nn.Module):
    """Pre-LayerNorm cross-attention with rotary time on queries and keys (and values, optionally)."""

    def __init__(self, config: ModelConfig, *, heads: int, rotate_value: bool) -> None:
        super().__init__()
        self.heads, self.rotate_value = heads, rotate_value
        inner = heads * config.head_dim
        self.norm_query = nn.LayerNorm(config.dim)
        self.norm_context = nn.LayerNorm(config.dim)
        self.to_q = nn.Linear(config.dim, inner, bias=False)
        self.to_kv = nn.Linear(config.dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, config.dim)

    def forward(self, query: Tensor, context: Tensor, query_angles: Tensor, context_angles: Tensor) -> Tensor:
        """query (B, Q, D), context (B, K, D), angles (Q or 1, Dh) and (K, Dh) -> (B, Q, D)."""
        q = self.to_q(self.norm_query(query)).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, Q, Dh)
        k, v = self.to_kv(self.norm_context(context)).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, query_angles), rotate(k, context_angles)
        if self.rotate_value:
            v = rotate(v, context_angles)
        out = attend(q, k, v)  # (B, H, Q, Dh)
        if self.rotate_value:
            out = rotate(out, -query_angles)  # back to each query's own time frame
        return self.to_out(out.transpose(1, 2).flatten(-2))  # (B, Q, H * Dh) -> (B, Q, D)


class RotarySelfAttention(nn.Module):
    """Pre-LayerNorm self-attention over the latents, rotary on Q, K and V."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads = config.self_attention_heads
        inner = self.heads * config.head_dim
        self.norm = nn.LayerNorm(config.dim)
        self.to_qkv = nn.Linear(config.dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, config.dim)

    def forward(self, x: Tensor, angles: Tensor) -> Tensor:
        """x (B, L, D), angles (L, Dh) -> (B, L, D)."""
        q, k, v = self.to_qkv(self.norm(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        q, k, v = rotate(q, angles), rotate(k, angles), rotate(v, angles)  # each (B, H, L, Dh)
        out = rotate(attend(q, k, v), -angles)
        return self.to_out(out.transpose(1, 2).flatten(-2))


class FeedForward(nn.Module):
    """LayerNorm -> Linear(D -> 2F) -> GEGLU (-> F) -> Dropout -> Linear(F -> D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dim)
        self.up = nn.Linear(config.dim, 2 * config.ffn_hidden)
        self.dropout = nn.Dropout(config.ffn_dropout)
        self.down = nn.Linear(config.ffn_hidden, config.dim)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.up(self.norm(x)).chunk(2, dim=-1)
        return self.down(self.dropout(value * F.gelu(gate)))


class PopulationEncoder(nn.Module):
    """Perceiver IO over unit tokens: (B, N, C) context + (N, D) unit embeddings -> (B, N, D)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.token_frames = config.token_frames
        self.unit_dropout = config.unit_dropout
        tokens_per_unit = config.context_frames // config.token_frames
        self.tokenize = nn.Linear(config.token_frames, config.dim)
        self.latents = nn.Parameter(torch.randn(config.num_latents, config.dim) * config.embedding_init_std)
        self.encoder_attention = RotaryCrossAttention(config, heads=1, rotate_value=True)
        self.encoder_ffn = FeedForward(config)
        self.self_attention = nn.ModuleList(RotarySelfAttention(config) for _ in range(config.self_attention_layers))
        self.self_ffn = nn.ModuleList(FeedForward(config) for _ in range(config.self_attention_layers))
        self.residual_dropout = nn.Dropout(config.residual_dropout)
        self.decoder_attention = RotaryCrossAttention(config, heads=1, rotate_value=False)
        self.decoder_ffn = FeedForward(config)
        token_times = torch.arange(tokens_per_unit, dtype=torch.float32) * config.token_frames
        latent_times = torch.arange(config.num_latents, dtype=torch.float32) * config.latent_step_frames
        query_time = torch.tensor([float(config.context_frames)])
        self.register_buffer("token_angles", rotary_angles(token_times, config), persistent=False)
        self.register_buffer("latent_angles", rotary_angles(latent_times, config), persistent=False)
        self.register_buffer("query_angles", rotary_angles(query_time, config), persistent=False)

    def forward(self, context: Tensor, unit_embeddings: Tensor) -> Tensor:
        batch = context.shape[0]
        chunks = context.unflatten(-1, (-1, self.token_frames))  # (B, N, C) -> (B, N, 3, 16)
        tokens = self.tokenize(chunks) + unit_embeddings[:, None, :]  # (B, N, 3, D)
        if self.training and self.unit_dropout > 0:
            tokens = tokens[:, self._kept_units(tokens.shape[1])]  # (B, N', 3, D): a random sub-population
        token_angles = self.token_angles.expand(tokens.shape[1], -1, -1).flatten(0, 1)  # (3, Dh) -> (K, Dh)
        tokens = tokens.flatten(1, 2)  # (B, K, D), unit-major: unit 0's 3 tokens first
        latents = self.latents.expand(batch, -1, -1)  # (B, L, D)
        latents = latents + self.encoder_attention(latents, tokens, self.latent_angles, token_angles)
        latents = latents + self.encoder_ffn(latents)
        for attention, ffn in zip(self.self_attention, self.self_ffn, strict=True):
            latents = latents + self.residual_dropout(attention(latents, self.latent_angles))
            latents = latents + self.residual_dropout(ffn(latents))
        queries = unit_embeddings.expand(batch, -1, -1)  # (B, N, D)
        out = queries + self.decoder_attention(queries, latents, self.query_angles, self.latent_angles)
        return out + self.decoder_ffn(out)  # (B, N, D)

    def _kept_units(self, units: int) -> Tensor:
        """Population augmentation: the latents must summarise the state from any large subset of
        units, so they cannot key on a few units' exact values (which is how POCO memorises a
        small training set). Every unit is still decoded; at inference all units are used."""
        kept = torch.rand(units) >= self.unit_dropout
        if not kept.any():
            kept[torch.randint(units, ())] = True
        return kept


class FilmForecaster(nn.Module):
    """The shared univariate MLP with a FiLM gate. POCO's gate is multiplicative (alpha starts at 0,
    so the first forecast is the output bias); the residual gate (1 + alpha) starts as the plain MLP
    instead, which lets a trained MLP be the starting point (see `FilmGate`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_offset = 1.0 if config.film_gate is FilmGate.RESIDUAL else 0.0
        self.input = nn.Linear(config.context_frames, config.mlp_hidden)
        self.alpha = nn.Linear(config.dim, config.mlp_hidden)
        self.beta = nn.Linear(config.dim, config.mlp_hidden)
        self.output = nn.Linear(config.mlp_hidden, config.horizon)
        for layer in (self.alpha, self.beta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, context: Tensor, conditioning: Tensor) -> Tensor:
        """context (B, N, C), conditioning (B, N, D) -> (B, N, P)."""
        hidden = F.relu(self.input(context))  # (B, N, hidden)
        return self.output(hidden * (self.gate_offset + self.alpha(conditioning)) + self.beta(conditioning))


class Poco(nn.Module):
    """The full model with its embedding tables; `forecast` is the session-agnostic part exported
    to ONNX, taking a session's summed unit embeddings as an input."""

    def __init__(self, config: ModelConfig, layout: SessionLayout) -> None:
        super().__init__()
        self.config, self.layout = config, layout
        self.unit_embedding = nn.Embedding(layout.total_units, config.dim)
        self.session_embedding = nn.Embedding(len(layout.sessions), config.dim)
        self.dataset_embedding = nn.Embedding(len(layout.datasets), config.dim)
        for table in (self.unit_embedding, self.session_embedding, self.dataset_embedding):
            nn.init.normal_(table.weight, std=config.embedding_init_std)
        self.encoder = PopulationEncoder(config)
        self.forecaster = FilmForecaster(config)

    def session_unit_embeddings(self, session_index: int) -> Tensor:
        """(N, D): unit + session + dataset embedding of each of the session's units.

        Without unit embeddings every unit of a session gets the same row: the encoder then sees
        the population as an unordered set of traces, and the FiLM gain is one state-dependent
        modulation per session rather than a per-unit one (far less to memorise on small data).
        """
        offset = self.layout.unit_offset(session_index)
        units = self.unit_embedding.weight[offset : offset + self.layout.sessions[session_index].num_units]
        if not self.config.unit_embeddings:
            units = torch.zeros_like(units)
        session = self.session_embedding.weight[session_index]
        dataset = self.dataset_embedding.weight[self.layout.dataset_index(session_index)]
        return units + session + dataset

    def forecast(self, context: Tensor, unit_embeddings: Tensor) -> Tensor:
        """context (B, N, C) normalised, unit_embeddings (N, D) -> (B, N, P)."""
        conditioning = self.encoder(context, unit_embeddings)
        return self.forecaster(context, conditioning)

    def forward(self, context: Tensor, session_index: int) -> Tensor:
        return self.forecast(context, self.session_unit_embeddings(session_index))
