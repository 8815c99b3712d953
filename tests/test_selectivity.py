"""Tests for reprobust.metrics.selectivity (SI, aggregation, regulariser) and metrics.gradients."""

import numpy as np
import pytest
import torch
from torch import nn

from reprobust.metrics import gradients as G
from reprobust.metrics import selectivity as S


def _labels(n_per_class=5, n_classes=4):
    return np.repeat(np.arange(n_classes), n_per_class)


# ------------------------------------------------------------------------------------------ the index


def test_unit_responding_to_one_class_has_si_one():
    y = _labels()
    acts = np.zeros((len(y), 1))
    acts[y == 2, 0] = 3.0
    assert S.class_selectivity_index(acts, y)[0] == pytest.approx(1.0, abs=1e-6)


def test_equal_responses_give_si_zero():
    y = _labels()
    rng = np.random.default_rng(0)
    acts = np.tile(rng.uniform(0.5, 2.0, size=(1, 3)), (len(y), 1))  # same response to every sample
    np.testing.assert_allclose(S.class_selectivity_index(acts, y), 0.0, atol=1e-12)


def test_dead_unit_gives_zero_not_nan_and_is_counted():
    y = _labels()
    acts = np.zeros((len(y), 2))
    acts[:, 1] = np.where(y == 0, 1.0, 0.5)
    si = S.class_selectivity_index(acts, y)
    assert si[0] == 0.0 and np.isfinite(si).all()
    # without ε a dead unit would be 0/0
    with np.errstate(invalid="ignore"):
        assert np.isnan(S.class_selectivity_index(acts, y, eps=0.0)[0])
    summary = S.network_selectivity({"l": acts}, y)
    assert summary.dead_fraction["l"] == 0.5
    assert summary.layer_mean["l"] == pytest.approx(si.mean())
    excluded = S.network_selectivity({"l": acts}, y, exclude_dead=True)
    assert excluded.layer_mean["l"] == pytest.approx(si[1])


def test_si_matches_formula_on_random_data():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=200)
    acts = rng.exponential(size=(200, 6))
    si = S.class_selectivity_index(acts, y, eps=1e-7)
    means = np.stack([acts[y == c].mean(0) for c in range(5)])
    mu_max = means.max(0)
    mu_rest = (means.sum(0) - mu_max) / 4
    np.testing.assert_allclose(si, (mu_max - mu_rest) / (mu_max + mu_rest + 1e-7), rtol=1e-12)
    assert ((si >= 0) & (si <= 1)).all()


def test_conv_units_are_channel_means_over_space():
    rng = np.random.default_rng(2)
    y = _labels(4, 3)
    maps = rng.exponential(size=(len(y), 5, 4, 4))
    np.testing.assert_allclose(S.class_selectivity_index(maps, y),
                               S.class_selectivity_index(maps.mean(axis=(2, 3)), y))


def test_negative_activations_and_bad_labels_are_refused():
    y = _labels()
    with pytest.raises(ValueError, match="after the ReLU"):
        S.class_selectivity_index(-np.ones((len(y), 2)), y)
    with pytest.raises(ValueError, match="labels shape"):
        S.class_selectivity_index(np.ones((len(y), 2)), y[:-1])
    with pytest.raises(ValueError, match="eps"):
        S.class_selectivity_index(np.ones((len(y), 2)), y, eps=-1.0)


def test_absent_classes_are_left_out_of_the_other_class_mean():
    acts = torch.tensor([[4.0], [4.0], [1.0]])
    labels = torch.tensor([0, 0, 3])  # classes 1 and 2 absent
    si = S.class_selectivity_index(acts, labels, num_classes=4, eps=0.0)
    assert float(si) == pytest.approx((4 - 1) / (4 + 1))


def test_network_mean_weights_layers_equally():
    y = _labels()
    narrow = np.zeros((len(y), 1))
    narrow[y == 0] = 1.0  # SI 1
    wide = np.ones((len(y), 9))  # SI 0
    summary = S.network_selectivity({"narrow": narrow, "wide": wide}, y)
    assert summary.network_mean == pytest.approx(0.5, abs=1e-6)
    assert [r["n_units"] for r in summary.to_rows()] == [1, 9]


def test_torch_path_is_differentiable_and_matches_numpy():
    rng = np.random.default_rng(3)
    y = torch.as_tensor(_labels(6, 4))
    acts = torch.tensor(rng.exponential(size=(len(y), 3, 2, 2)), requires_grad=True)
    mu = S.mean_selectivity({"a": acts, "b": acts[:, :2]}, y, num_classes=4)
    mu.backward()
    assert acts.grad is not None and torch.isfinite(acts.grad).all() and acts.grad.abs().sum() > 0
    ref = S.network_selectivity({"a": acts.detach().numpy(), "b": acts.detach().numpy()[:, :2]}, y.numpy())
    assert float(mu.detach()) == pytest.approx(ref.network_mean, rel=1e-9)


def test_regularizer_term_sign_and_zero_alpha():
    y = torch.tensor([0, 1])
    acts = {"l": torch.tensor([[2.0], [0.0]])}
    assert float(S.SelectivityRegularizer(2.0, ["l"], 2)(acts, y)) == pytest.approx(-2.0, abs=1e-6)
    assert float(S.SelectivityRegularizer(-2.0, ["l"], 2)(acts, y)) == pytest.approx(2.0, abs=1e-6)
    assert float(S.SelectivityRegularizer(0.0, ["l"], 2)(acts, y)) == 0.0
    with pytest.raises(ValueError, match="lack layers"):
        S.SelectivityRegularizer(1.0, ["missing"], 2)(acts, y)


def _tiny_digits(n=400):
    from reprobust.data import load_dataset

    return load_dataset("digits", n_train=n, n_test=100)


def _train_and_measure(alpha, ds):
    from reprobust.features import capture_activations
    from reprobust.models import build_model
    from reprobust.train import fit

    torch.manual_seed(0)
    net = build_model("mlp", **ds.model_kwargs())
    layers = S.relu_layer_names(net)
    fit(net, ds.x_train, ds.y_train, epochs=6, batch_size=100, lr=0.05, seed=0, stratified=True,
        regularizer={"name": "class_selectivity", "alpha": alpha})
    acts = capture_activations(net, ds.x_train, layers)
    return S.network_selectivity(acts, ds.y_train.numpy()).network_mean


def test_regularizer_moves_selectivity_in_the_sign_of_alpha():
    ds = _tiny_digits()
    base = _train_and_measure(0.0, ds)
    # moderate |α|: very large α>0 kills units (SI 0 by the ε convention) and lowers the mean again
    up = _train_and_measure(1.0, ds)
    down = _train_and_measure(-1.0, ds)
    assert down < base < up


def test_regularizer_is_registered_with_relu_layers_by_default():
    from reprobust.models import build_model
    from reprobust.train import REGULARIZERS

    net = build_model("resnet", input_shape=(1, 16, 16), num_classes=10, depth=8, width=4)
    layers, fn = REGULARIZERS["class_selectivity"](net, alpha=1.0)
    assert layers[0] == "stem" and all(isinstance(net.get_submodule(n), nn.ReLU) for n in layers)
    assert fn.num_classes == 10


# ---------------------------------------------------------------------------------- input-unit gradients


def test_gradient_norms_match_per_sample_jacobian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2))
    net.train()  # must be switched to eval inside and restored afterwards
    x = torch.rand(7, 1, 8, 8)
    norms = G.input_unit_gradient_norms(net, x, "4", batch_size=3, max_chunk_bytes=1)  # 1 unit per chunk
    assert net.training
    net.eval()
    ref = np.zeros((7, 3))
    for i in range(7):
        jac = torch.autograd.functional.jacobian(lambda z: net[:5](z).flatten(2).mean(2)[0], x[i:i + 1])
        ref[i] = jac.flatten(1).norm(dim=1).numpy()
    np.testing.assert_allclose(norms, ref, rtol=1e-5, atol=1e-8)
    sub = G.input_unit_gradient_norms(net, x, "4", units=[2, 0], norm=1)
    assert sub.shape == (7, 2)
    with pytest.raises(ValueError, match="unknown layer"):
        G.input_unit_gradient_norms(net, x, "nope")


def test_gradient_variability_statistics():
    norms = np.array([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0]])
    out = G.gradient_variability(norms)
    # unit 0: mean 2, std 1 -> 0.5; unit 1: 0; unit 2 never gets a gradient and is left out
    assert out["cv_across_samples"] == pytest.approx(0.25)
    assert out["zero_unit_fraction"] == pytest.approx(1 / 3)
    row0 = np.std([1, 2, 0]) / 1.0
    row1 = np.std([3, 2, 0]) / (5 / 3)
    assert out["cv_across_units"] == pytest.approx((row0 + row1) / 2)
    with pytest.raises(ValueError):
        G.gradient_variability(np.ones(3))


def test_selectivity_training_spec_arms_and_bad_arm():
    from reprobust.metrics.selectivity import selectivity_training_spec

    S = dict(dataset="digits", image_size=32, n_train=None, n_test=None, model={"name": "resnet"}, epochs=2,
             batch_size=64, lr=0.05, patience=1, noise_std=0.1, adv_eps=0.02, adv_steps=3, train_extra={"augment": {}})
    std = selectivity_training_spec(S, -1, 3)
    assert std["train"]["regularizer"] == {"name": "class_selectivity", "alpha": -1.0} and std["seed"] == 3
    assert std["train"]["augment"] == {} and "noise_std" not in std["train"] and "adversarial" not in std["train"]
    assert selectivity_training_spec(S, 0, 3, "noise")["train"]["noise_std"] == 0.1
    adv = selectivity_training_spec(S, 0, 3, "adversarial")["train"]
    assert adv["adversarial"]["step_size"] == 0.01 and adv["monitor"] == "robust_accuracy"
    with pytest.raises(ValueError, match="arm"):
        selectivity_training_spec(S, 0, 3, "augmix")
