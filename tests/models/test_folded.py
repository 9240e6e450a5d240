"""The folded forecast (models/folded.py) is the same function as POCO's, to float rounding."""

import pytest
import torch

from poco_rt.models.config import FilmGate, ModelConfig
from poco_rt.models.folded import FoldedForecast
from tests.helpers import FOLD_TOLERANCE, opened_model


@pytest.mark.parametrize("gate", list(FilmGate))
@pytest.mark.parametrize("units", [1, 3, 257])
def test_the_folded_forecast_equals_pocos(gate, units):
    model = opened_model(ModelConfig(film_gate=gate))
    folded = FoldedForecast(model).eval()
    generator = torch.Generator().manual_seed(units)
    context = torch.randn(units, 48, generator=generator)
    embeddings = 0.3 * torch.randn(units, 128, generator=generator)
    with torch.no_grad():
        expected = model.forecast(context[None], embeddings)[0]
        actual = folded(context, embeddings)
    assert actual.shape == (units, 16)
    assert (actual - expected).abs().max().item() <= FOLD_TOLERANCE


def test_folding_also_holds_for_other_sizes():
    config = ModelConfig(dim=64, head_dim=32, rotary_dims=16, mlp_hidden=256, ffn_hidden=128, self_attention_heads=4)
    model = opened_model(config)
    context, embeddings = torch.randn(40, 48), 0.3 * torch.randn(40, 64)
    with torch.no_grad():
        difference = FoldedForecast(model)(context, embeddings) - model.forecast(context[None], embeddings)[0]
    assert difference.abs().max().item() <= FOLD_TOLERANCE
