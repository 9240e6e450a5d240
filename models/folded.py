"""POCO's forecast with its linear maps folded where they meet: what model.onnx computes.

The same function as `Poco.forecast` (equal up to float rounding, tests/models/test_folded.py), at about
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
4. The residual gate's h * (1 + alpha): the 1 goes into alpha's bias, one (N, 1024) Add fewer.

What is left per unit is non-linear in the context: the tokenizer, the token LayerNorm, the
decoder FFN (GEGLU), the FiLM input layer and alpha. Two layout choices are for onnxruntime, not
the arithmetic (bench/inference.py's profile): tokens are kept as (3, N, D), so that the folded
attention is batched MatMuls rather than Einsum nodes, and the decoder FFN's up-projection is two
Linears (value, gate) rather than one whose output is split, which copied 4 MB per frame at
N = 1000. Legend as in poco.py; one sample (no B). The latents carry a leading S (sessions): 1 here,
several in models/batched.py, which runs S sessions in one call through the same methods.
DecoderMaps and UnitForecast cut the same function in two where its per-unit part starts (what
model.encode.onnx and model.decode.onnx compute), so that a server can decode chunks of units on
several threads (server/split_network.py).
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
            self.register_buffer("film_gate_bias", forecaster.alpha.bias + forecaster.gate_offset)  # (1 + alpha)
            self.register_buffer(
                "output_bias", forecaster.output.weight @ forecaster.beta.bias + forecaster.output.bias
            )  # (P,)
            value_up, gate_up = encoder.decoder_ffn.up.weight.chunk(2, dim=0)  # GEGLU's halves, each (F, D)
            value_bias, gate_bias = encoder.decoder_ffn.up.bias.chunk(2)
            for name, tensor in (("ffn_value_weight", value_up), ("ffn_value_bias", value_bias),
                                 ("ffn_gate_weight", gate_up), ("ffn_gate_bias", gate_bias)):  # fmt: skip
                self.register_buffer(name, tensor.clone())
        self.score_scale = scale
        self.forecaster = forecaster

    def forward(self, context: Tensor, unit_embeddings: Tensor) -> Tensor:
        return self._forecast(context, unit_embeddings, session_bias=None)

    def _forecast(self, context: Tensor, unit_embeddings: Tensor, session_bias: Tensor | None) -> Tensor:
        """The whole forecast; `session_bias` (N, S), 0 where unit i is in session s and -inf elsewhere,
        keeps S sessions apart in one call (models/batched.py); None is one session, no masking."""
        latents = self._encode(context, unit_embeddings, session_bias)  # (S, L, D)
        query_maps, latent_values = self._decoder_maps(latents)
        return self._forecast_units(context, unit_embeddings, query_maps, latent_values, session_bias)

    def _forecast_units(
        self,
        context: Tensor,
        unit_embeddings: Tensor,
        query_maps: Tensor,
        latent_values: Tensor,
        session_bias: Tensor | None,
    ) -> Tensor:
        """Each unit's forecast from its own context and embedding and the frame's decoder maps: the
        per-unit part of the work, independent across units once the latents are known."""
        conditioning = self._decode(unit_embeddings, query_maps, latent_values, session_bias)  # (N, D)
        forecaster = self.forecaster
        hidden = F.relu(forecaster.input(context))  # (N, 1024)
        gated = hidden * F.linear(conditioning, forecaster.alpha.weight, self.film_gate_bias)
        return F.linear(gated, forecaster.output.weight) + conditioning @ self.beta_to_output.T + self.output_bias

    def _encode(self, context: Tensor, unit_embeddings: Tensor, session_bias: Tensor | None) -> Tensor:
        """The latents (S, L, D) after the encoder cross-attention, its FFN and the self-attention layers."""
        encoder = self.encoder
        attention = encoder.encoder_attention
        chunks = context.unflatten(-1, (-1, self.token_frames)).transpose(0, 1)  # (N, C) -> (3, N, 16)
        tokens = attention.norm_context(encoder.tokenize(chunks) + unit_embeddings)  # (3, N, D)
        scores = tokens @ self.token_score_maps.transpose(1, 2)  # (3, N, D) @ (3, D, L) -> (3, N, L)
        if session_bias is not None:  # (3, N, 1, L) + (1, N, S, 1) -> (3, N, S * L): a column per session's latent
            scores = (scores[:, :, None, :] + session_bias[None, :, :, None]).flatten(2)
        weights = scores.flatten(0, 1).softmax(dim=0).view_as(scores)  # over all 3N tokens, per latent
        pooled = weights.transpose(1, 2) @ tokens  # (3, SL, N) @ (3, N, D) -> (3, SL, D): weighted sums per time
        values = pooled @ self.token_value_weight.T  # (3, SL, Dh)
        rotated = sum(rotate(values[slot], angle) for slot, angle in enumerate(encoder.token_angles))  # (SL, Dh)
        rotated = rotated.unflatten(0, (-1, encoder.latents.shape[0]))  # (S, L, Dh)
        attended = attention.to_out(rotate(rotated, -encoder.latent_angles))  # (S, L, D)
        latents = encoder.latents + attended  # (S, L, D): the unfolded blocks take the sessions as a batch
        latents = latents + encoder.encoder_ffn(latents)
        for block, ffn in zip(encoder.self_attention, encoder.self_ffn, strict=True):
            latents = latents + block(latents, encoder.latent_angles)
            latents = latents + ffn(latents)
        return latents

    def _decoder_maps(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """What the decoder's units attend to, once per frame: each latent's key folded into a map of a
        unit's embedding, and its value through the output projection; each (S, L, D)."""
        encoder = self.encoder
        attention = encoder.decoder_attention
        keys, values = attention.to_kv(attention.norm_context(latents)).chunk(2, dim=-1)  # each (S, L, Dh)
        keys = rotate(keys, encoder.latent_angles)
        query_maps = rotate(keys, -encoder.query_angles) @ attention.to_q.weight * self.score_scale  # (S, L, D)
        return query_maps, attention.to_out(values)

    def _decode(
        self, unit_embeddings: Tensor, query_maps: Tensor, latent_values: Tensor, session_bias: Tensor | None
    ) -> Tensor:
        """E_i: each unit's query (its embedding) attends to its session's latents, then the decoder FFN."""
        encoder = self.encoder
        attention = encoder.decoder_attention
        scores = attention.norm_query(unit_embeddings) @ query_maps.flatten(0, 1).T  # (N, SL)
        if session_bias is not None:  # (N, S, L) + (N, S, 1): each unit sees only its own session's L latents
            scores = (scores.unflatten(-1, (-1, query_maps.shape[1])) + session_bias[:, :, None]).flatten(1)
        # (N, SL) @ (SL, D): to_out's bias sums to 1x, the masked latents' weights being exactly 0
        attended = scores.softmax(dim=-1) @ latent_values.flatten(0, 1)
        out = unit_embeddings + attended
        ffn = encoder.decoder_ffn
        normed = ffn.norm(out)
        value = F.linear(normed, self.ffn_value_weight, self.ffn_value_bias)  # (N, F)
        gate = F.linear(normed, self.ffn_gate_weight, self.ffn_gate_bias)  # (N, F)
        return out + ffn.down(value * F.gelu(gate))  # FeedForward's dropout is off in inference


class DecoderMaps(FoldedForecast):
    """context (N, C) and unit_embeddings (N, D) of all the session's units -> the frame's decoder maps:
    query_maps (L, D) and latent_values (L, D), what model.encode.onnx computes (one session)."""

    def forward(self, context: Tensor, unit_embeddings: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        query_maps, latent_values = self._decoder_maps(self._encode(context, unit_embeddings, session_bias=None))
        return query_maps[0], latent_values[0]


class UnitForecast(FoldedForecast):
    """context (n, C), unit_embeddings (n, D) of any n of the session's units, and the frame's decoder
    maps from DecoderMaps -> those units' forecast (n, P), what model.decode.onnx computes. The two
    graphs together equal FoldedForecast to float rounding; split, the per-unit part (nearly all
    the work) can run on chunks of the units in parallel threads."""

    def forward(  # type: ignore[override]
        self, context: Tensor, unit_embeddings: Tensor, query_maps: Tensor, latent_values: Tensor
    ) -> Tensor:
        return self._forecast_units(context, unit_embeddings, query_maps[None], latent_values[None], session_bias=None)
