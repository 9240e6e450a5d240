import pytest
import torch

from poco_rt.models.baselines import CopyLast, Mlp, NLinear, build_model
from poco_rt.models.config import ModelConfig, ModelKind, SessionLayout, SessionSpec
from poco_rt.models.poco import Poco, rotary_angles, rotate

LAYOUT = SessionLayout((SessionSpec("d0", "a", 5), SessionSpec("d0", "b", 3), SessionSpec("d1", "c", 4)))


def test_poco_has_the_published_size():
    model = Poco(ModelConfig(), LAYOUT)
    shared = sum(p.numel() for name, p in model.named_parameters() if "embedding" not in name)
    assert shared == 1_519_504  # Duan et al. (2025): about 1.52 M shared parameters
    assert model.unit_embedding.weight.shape == (12, 128)


def test_poco_forecasts_every_unit_of_every_sample():
    model = Poco(ModelConfig(), LAYOUT).eval()
    assert model(torch.randn(4, 3, 48), 1).shape == (4, 3, 16)


def test_film_gate_starts_closed_so_the_first_forecast_is_the_output_bias():
    model = Poco(ModelConfig(), LAYOUT).eval()
    forecast = model(torch.randn(2, 5, 48), 0)
    expected = model.forecaster.output.bias.expand(2, 5, 16)
    torch.testing.assert_close(forecast, expected)


def test_samples_do_not_attend_to_each_other():
    model = Poco(ModelConfig(), LAYOUT).eval()
    for p in model.forecaster.parameters():
        torch.nn.init.normal_(p, std=0.1)
    batch = torch.randn(3, 5, 48)
    together = model(batch, 0)
    alone = torch.cat([model(batch[i : i + 1], 0) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_rotary_leaves_unrotated_dims_alone_and_inverts():
    config = ModelConfig()
    angles = rotary_angles(torch.tensor([0.0, 16.0, 32.0]), config)
    assert torch.all(angles[:, config.rotary_dims :] == 0)
    x = torch.randn(2, 3, config.head_dim)
    torch.testing.assert_close(rotate(rotate(x, angles), -angles), x)
    torch.testing.assert_close(rotate(x, angles).norm(dim=-1), x.norm(dim=-1))


def test_baselines_are_univariate_and_copy_last_repeats_the_last_frame():
    context = torch.randn(2, 4, 48)
    torch.testing.assert_close(CopyLast(ModelConfig())(context, 0), context[..., -1:].expand(2, 4, 16))
    for model in (Mlp(ModelConfig()), NLinear(ModelConfig())):
        full = model(context, 0)
        torch.testing.assert_close(model(context[:, 1:2], 0), full[:, 1:2])


@pytest.mark.parametrize("kind", list(ModelKind))
def test_build_model_covers_every_kind(kind):
    assert build_model(ModelConfig(kind=kind), LAYOUT)(torch.randn(1, 5, 48), 0).shape == (1, 5, 16)


def test_config_refuses_inconsistent_sizes():
    with pytest.raises(ValueError, match="multiple of token_frames"):
        ModelConfig(context_frames=40, token_frames=16)
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()


def test_unit_dropout_changes_training_forecasts_only():
    model = Poco(ModelConfig(unit_dropout=0.5, ffn_dropout=0.0, residual_dropout=0.0), LAYOUT)
    for p in model.forecaster.parameters():
        torch.nn.init.normal_(p, std=0.1)
    context = torch.randn(2, 5, 48)
    model.eval()
    torch.testing.assert_close(model(context, 0), model(context, 0))
    model.train()
    torch.manual_seed(0)
    first = model(context, 0)
    assert not torch.allclose(first, model(context, 0))  # another sub-population, another summary


def test_without_unit_embeddings_every_unit_of_a_session_looks_alike():
    model = Poco(ModelConfig(unit_embeddings=False), LAYOUT)
    rows = model.session_unit_embeddings(2)
    torch.testing.assert_close(rows, rows[:1].expand_as(rows))
    assert not torch.equal(rows[0], model.session_unit_embeddings(0)[0])  # sessions still differ
