"""POCO's forecast with its linear maps folded where they meet: what model.onnx computes.

The same function as `Poco.forecast` (equal up to float rounding, tests/test_folded.py), at about
two thirds of the multiply-adds, because three places apply a linear map to something another
linear map, or a constant, produced (costs per unit, D = 128, MLP width 1024, P = 16):

1. FiLM's beta branch: W_out (h * alpha + beta) with beta = W_beta E + b_beta is
   W_out (h * alpha) + (W_out W_beta) E + W_out b_beta: a (P, D) map instead of (1024, D).
   Saves 129 k of 594 k multiply-adds.
2. Encoder cross-attention: its queries are the learned latents, constants. A score
   q_l . R(t) W_k n_t equals n_t . (W_k^T R(-t) q_l): one (L, D) map per token time (3) replaces
   the key projection, and the value projection moves after the attention-weighted sum
   (sum_t a_lt R(t) W_v n_t = sum_tau R(tau) W_v (sum_{t at tau} a_lt n_t)). The 3N tokens then
   cost 2 L D each instead of 2 Dh D. Saves 43 k.
3. Decoder cross-attention: the other way round, the keys and values are the 8 latents, so the
   per-frame maps W_q^T R(-48) k_j and W_o v_j are computed once per frame for 8 latents and each
   unit pays L D twice instead of Dh D twice. Saves 14 k. (This does the job of computing the
   decoder's query projection once per session, without a per-session state in the bundle.)

What is left per unit is non-linear in the context: the tokenizer, the token LayerNorm, the
decoder FFN (GEGLU), the FiLM input layer and alpha. Legend as in poco.py; one sample (no B).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from poco_rt.models.poco import Poco, rotate


class FoldedForecast(nn.Module):
    """context (N, C) normalised and unit_embeddings (N, D) -> forecast (N, P), from a trained Poco."""

    def __init__(self, model: Poco) -> None:
        super().__init__()
        encoder, forecaster = model.encoder, model.forecaster
        self.encoder = encoder  # its modules are used as they are where nothing folds
        self.token_frames = encoder.token_frames
        scale = 1.0 / math.sqrt(model.config.head_dim)
        with torch.no_grad():
            attention = encoder.encoder_attention
            queries = rotate(attention.to_q(attention.norm_query(encoder.latents)), encoder.latent_angles)  # (L, Dh)
            key_weight, value_weight = attention.to_kv.weight.chunk(2, dim=0)  # each (Dh, D)
            score_maps = torch.stack([rotate(queries, -angle) @ key_weight for angle in encoder.token_angles])
            self.register_buffer("token_score_maps", score_maps * scale)  # (3, L, D)
            self.register_buffer("token_value_weight", value_weight.clone())  # (Dh, D)
            beta_to_output = forecaster.output.weight @ forecaster.beta.weight  # (P, 1024) @ (1024, D) -> (P, D)
            self.register_buffer("beta_to_output", beta_to_output)
            self.register_buffer(
                "output_bias", forecaster.output.weight @ forecaster.beta.bias + forecaster.output.bias
            )  # (P,)
        self.score_scale = scale
        self.gate_offset = forecaster.gate_offset
        self.forecaster = forecaster

    def forward(self, context: Tensor, unit_embeddings: Tensor) -> Tensor:
        latents = self._encode(context, unit_embeddings)  # (L, D)
        conditioning = self._decode(unit_embeddings, latents)  # (N, D)
        forecaster = self.forecaster
        hidden = F.relu(forecaster.input(context))  # (N, 1024)
        gated = hidden * (self.gate_offset + forecaster.alpha(conditioning))
        return F.linear(gated, forecaster.output.weight) + conditioning @ self.beta_to_output.T + self.output_bias

    def _encode(self, context: Tensor, unit_embeddings: Tensor) -> Tensor:
        """The latents after the encoder cross-attention, its FFN and the self-attention layers."""
        encoder = self.encoder
        attention = encoder.encoder_attention
        chunks = context.unflatten(-1, (-1, self.token_frames))  # (N, C) -> (N, 3, 16)
        tokens = attention.norm_context(encoder.tokenize(chunks) + unit_embeddings[:, None, :])  # (N, 3, D)
        scores = torch.einsum("ntd,tld->ntl", tokens, self.token_score_maps)  # (N, 3, L)
        weights = scores.flatten(0, 1).softmax(dim=0).view_as(scores)  # over all 3N tokens, per latent
        pooled = torch.einsum("ntl,ntd->tld", weights, tokens)  # (3, L, D): weighted token sums per token time
        values = pooled @ self.token_value_weight.T  # (3, L, Dh)
        rotated = sum(rotate(values[slot], angle) for slot, angle in enumerate(encoder.token_angles))  # (L, Dh)
        attended = attention.to_out(rotate(rotated, -encoder.latent_angles))  # (L, D)
        latents = (encoder.latents + attended)[None]  # (1, L, D): the unfolded blocks take a batch
        latents = latents + encoder.encoder_ffn(latents)
        for block, ffn in zip(encoder.self_attention, encoder.self_ffn, strict=True):
            latents = latents + block(latents, encoder.latent_angles)
            latents = latents + ffn(latents)
        return latents[0]

    def _decode(self, unit_embeddings: Tensor, latents: Tensor) -> Tensor:
        """E_i: each unit's query (its embedding) attends to the latents, then the decoder FFN."""
        encoder = self.encoder
        attention = encoder.decoder_attention
        keys, values = attention.to_kv(attention.norm_context(latents)).chunk(2, dim=-1)  # each (L, Dh)
        keys = rotate(keys, encoder.latent_angles)
        query_maps = rotate(keys, -encoder.query_angles) @ attention.to_q.weight * self.score_scale  # (L, D)
        scores = attention.norm_query(unit_embeddings) @ query_maps.T  # (N, L)
        attended = scores.softmax(dim=-1) @ attention.to_out(values)  # (N, L) @ (L, D): to_out's bias sums to 1x
        out = unit_embeddings + attended
        return out + encoder.decoder_ffn(out)
