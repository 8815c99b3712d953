"""Test-time defences: feature squeezing and spatial (median) smoothing wrappers."""

import pytest
import torch
from torch import nn

from reprobust.defences import FeatureSqueezing, SpatialSmoothing, wrap_defence
from reprobust.models import build_model


def test_feature_squeezing_quantises_to_bit_depth():
    x = torch.rand(4, 1, 5, 5)
    out = FeatureSqueezing(nn.Identity(), bits=2).transform(x)
    assert torch.allclose(out * 3, torch.round(out * 3))  # 4 levels: 0, 1/3, 2/3, 1
    assert (out - x).abs().max() <= 1 / 6 + 1e-6


def test_median_smoothing_matches_a_direct_median_and_removes_salt_noise():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 6, 6)
    out = SpatialSmoothing(nn.Identity(), window=3).transform(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    assert torch.allclose(out[1, 2, 3, 4], padded[1, 2, 3:6, 4:7].flatten().median())
    clean = torch.zeros(1, 1, 6, 6)
    noisy = clean.clone()
    noisy[0, 0, 2, 3] = 1.0
    assert torch.equal(SpatialSmoothing(nn.Identity()).transform(noisy), clean)


def test_wrappers_keep_model_interface():
    net = build_model("mlp", input_shape=(1, 8, 8), num_classes=10).eval()
    for name, params in (("feature_squeezing", {"bits": 3}), ("spatial_smoothing", {"window": 3})):
        wrapped = wrap_defence(net, name, **params)
        assert wrapped(torch.rand(2, 1, 8, 8)).shape == (2, 10)
        assert wrapped.layer_names == [f"model.{n}" for n in net.layer_names]
        assert not wrapped.training
        assert wrapped.get_submodule(wrapped.layer_names[0]) is net.act1
    assert wrap_defence(net, "none") is net


def test_bad_defence_arguments():
    with pytest.raises(ValueError, match="test-time defence"):
        wrap_defence(nn.Identity(), "jpeg")
    with pytest.raises(ValueError, match="odd"):
        SpatialSmoothing(nn.Identity(), window=2)
    with pytest.raises(ValueError, match="bits"):
        FeatureSqueezing(nn.Identity(), bits=0)


def test_input_defence_in_a_spec_is_trained_through_and_reloads(tmp_path):
    """``model.input_defence`` builds the transformation into the model: training sees smoothed inputs,
    the cached weights reload into the same wrapped model, and the output equals the plain model's on
    pre-smoothed images."""
    from reprobust.cache import Cache
    from reprobust.train import build_from_spec, trained_model

    spec = {"data": {"name": "digits", "n_train": 200}, "model": {"name": "mlp", "input_defence":
            {"name": "spatial_smoothing", "window": 3}}, "train": {"epochs": 1, "batch_size": 64}, "seed": 0}
    cache = Cache(tmp_path)
    model = trained_model(spec, cache=cache, device="cpu")
    assert isinstance(model, SpatialSmoothing) and model.window == 3
    x = torch.rand(4, 1, 8, 8)
    smoothed = SpatialSmoothing(nn.Identity()).transform(x)
    assert torch.allclose(model(x), model.model(smoothed))
    again = trained_model(spec, cache=cache, device="cpu")  # from the cache
    assert torch.equal(again(x), model(x))
    # the weights differ from a model trained on raw inputs with the same seed
    plain = trained_model({**spec, "model": {"name": "mlp"}}, cache=cache, device="cpu")
    assert not torch.allclose(plain(smoothed), model(x))
    with pytest.raises(ValueError, match="test-time defence"):
        build_from_spec({**spec, "model": {"name": "mlp", "input_defence": {"name": "jpeg"}}})
