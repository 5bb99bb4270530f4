"""GRU phone model: presets, parameter counts, streaming/padding invariance, normalisation."""

from __future__ import annotations

import pytest
import torch

from rtmobile_train.bspc import matrix_names
from rtmobile_train.model import (
    PRESETS,
    GRUPhoneModel,
    ModelConfig,
    build_model,
    param_count,
    preset,
)

torch.set_num_threads(1)


def test_paper_preset_has_the_papers_parameter_count() -> None:
    cfg = PRESETS["paper"]
    # 2 GRU layers (input 440, hidden 960) + 960->39 output; paper Sec. V-A: "about 9.6M".
    gru0 = 3 * 960 * 440 + 3 * 960 * 960 + 2 * 3 * 960
    gru1 = 2 * 3 * 960 * 960 + 2 * 3 * 960
    out = 39 * 960 + 39
    assert param_count(cfg) == gru0 + gru1 + out == 9_610_599
    assert cfg.labels and len(cfg.labels) == 39 and "sil" in cfg.labels


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_param_count_matches_torch(name: str) -> None:
    model = build_model(name)
    assert model.num_params() == param_count(model.cfg)


def test_matrices_use_bspc_names_and_torch_shapes() -> None:
    model = build_model("tiny")
    cfg = model.cfg
    mats = model.matrices()
    assert list(mats) == matrix_names(cfg.num_layers)
    h = cfg.hidden_dim
    assert mats["l0.w_ih"].shape == (3 * h, cfg.input_dim)
    assert mats["l1.w_ih"].shape == (3 * h, h)
    assert mats["l0.w_hh"].shape == (3 * h, h)
    assert mats["out.w"].shape == (cfg.num_classes, h)
    assert mats["l1.w_hh"] is model.gru.weight_hh_l1
    assert set(model.biases()) == {"l0.b_ih", "l0.b_hh", "l1.b_ih", "l1.b_hh", "out.b"}


def test_forward_shapes_and_chunked_streaming_matches_full() -> None:
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    x = torch.randn(3, 20, model.cfg.input_dim)
    with torch.no_grad():
        full, h = model(x)
        assert full.shape == (3, 20, model.cfg.num_classes)
        assert h.shape == (model.cfg.num_layers, 3, model.cfg.hidden_dim)
        a, ha = model(x[:, :7])
        b, _ = model(x[:, 7:], ha)
    torch.testing.assert_close(torch.cat([a, b], dim=1), full)


def test_trailing_padding_does_not_change_valid_outputs() -> None:
    torch.manual_seed(1)
    model = build_model("tiny").eval()
    x = torch.randn(1, 9, model.cfg.input_dim)
    padded = torch.cat([x, torch.randn(1, 5, model.cfg.input_dim) * 100], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded)[0][:, :9], model(x)[0])


def test_normalization_is_applied_and_reported() -> None:
    torch.manual_seed(2)
    model = build_model("tiny").eval()
    dim = model.cfg.input_dim
    assert model.normalization() is None
    mean, var = torch.randn(dim), torch.rand(dim) + 0.5
    x = torch.randn(2, 6, dim) * 3 + 1
    with torch.no_grad():
        ref, _ = model((x - mean) / torch.sqrt(var + 1e-3))
        model.set_normalization(mean, var, eps=1e-3)
        got, _ = model(x)
    torch.testing.assert_close(got, ref)
    m, v, eps = model.normalization()  # type: ignore[misc]
    assert torch.equal(m, mean) and torch.equal(v, var) and eps == pytest.approx(1e-3)
    # A state_dict round trip keeps the statistics (they travel into BSPC via the checkpoint).
    other = build_model("tiny")
    other.load_state_dict(model.state_dict())
    assert other.normalization() is not None


@pytest.mark.parametrize(
    ("mean", "var", "eps", "match"),
    [
        ([0.0] * 3, [1.0] * 8, 1e-5, "8 entries"),
        ([0.0] * 8, [-1.0] * 8, 1e-5, ">= 0"),
        ([float("nan")] * 8, [1.0] * 8, 1e-5, "finite"),
        ([0.0] * 8, [1.0] * 8, 0.0, "eps"),
    ],
)
def test_bad_normalization_is_rejected(mean, var, eps, match) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("tiny").set_normalization(mean, var, eps)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_dim": 0}, "input_dim"),
        ({"hidden_dim": -3}, "hidden_dim"),
        ({"num_layers": 1.5}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 3, "labels": ("a", "b")}, "2 names"),
        ({"num_classes": 2, "labels": ("a", "a")}, "duplicate"),
    ],
)
def test_bad_model_config_is_rejected(kwargs, match) -> None:
    base = {"input_dim": 4, "hidden_dim": 4, "num_layers": 1, "num_classes": 2}
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**base, **kwargs})


def test_config_round_trip_and_preset_errors() -> None:
    cfg = preset("small", hidden_dim=64)
    assert cfg.hidden_dim == 64 and cfg.input_dim == 40
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "bidirectional": True})
    with pytest.raises(ValueError, match=r"expected input \[B, T, 8\]"):
        GRUPhoneModel(PRESETS["tiny"])(torch.zeros(1, 3, 5))
