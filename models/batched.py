"""S sessions' forecasts in one call: what model.batched.onnx computes (the server's batching).

One onnxruntime run costs ~0.55 ms besides the per-unit work (the latents' blocks and ~200
nodes, bench/README.md §11), so a server with several sessions on one bundle pays it once per
frame tick instead of once per session. The sessions' units are concatenated along N, and a 0/1
session mask (N, S) keeps them apart exactly, inside FoldedForecast's own methods:

1. Encoder: the latent-query scores (3, N, L) get log(mask) added per session, (3, N, S * L), and
   are softmaxed over the tokens per column, so session s's L latents pool only its own units'
   tokens (the others' weights are exactly 0) -> latents (S, L, D), which the encoder FFN and
   self-attention already take as a batch.
2. Decoder: each unit scores all S * L latent keys, masked to its own session's L before the
   softmax.

The price is dense masking: the encoder's pooling and the decoder's two products grow from
3 L D + 2 L D to 5 S L D multiply-adds per unit (+35.8 k at S = 8 on ~410 k folded), so at large
total N the extra work outweighs the saved calls; bench/batching.py measures where, and the
server batches only there (poco_rt.server.engine.BATCH_MAX_UNITS). Legend: N units of all S
sessions together, the rest as in poco.py.
"""

from __future__ import annotations

from torch import Tensor

from poco_rt.models.folded import FoldedForecast


class BatchedForecast(FoldedForecast):
    """context (N, C), unit_embeddings (N, D) and session_mask (N, S) -> forecast (N, P): each
    session's rows equal FoldedForecast on that session alone, to float rounding."""

    def forward(self, context: Tensor, unit_embeddings: Tensor, session_mask: Tensor) -> Tensor:  # type: ignore[override]
        return self._forecast(context, unit_embeddings, session_bias=session_mask.log())  # 0 / -inf
