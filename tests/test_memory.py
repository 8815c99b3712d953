"""Memory budgets: every chunked computation gives the result of one big batch."""

import numpy as np
import pytest
import torch
from torch import nn

from reprobust.attacks.blackbox import minimal_threshold, pixel_attack, threshold_attack
from reprobust.memory import forward_bytes_per_item, items_per_chunk, parse_budget
from reprobust.metrics.cka import layer_cka
from reprobust.metrics.manifold import convex_projection_distances
from reprobust.models import build_model


def test_parse_budget_units_and_errors(monkeypatch):
    monkeypatch.delenv("REPROBUST_MEMORY_BUDGET", raising=False)
    assert parse_budget("512MB") == 512 * 10 ** 6 and parse_budget("2GiB") == 2 ** 31 and parse_budget(1000) == 1000
    assert parse_budget(None) is None
    monkeypatch.setenv("REPROBUST_MEMORY_BUDGET", "1.5KB")
    assert parse_budget(None) == 1500
    for bad in ("lots", "5 parsecs", -3, 0):
        with pytest.raises(ValueError) as e:
            parse_budget(bad)
        assert "\n" not in str(e.value)


def test_items_per_chunk_bounds(monkeypatch):
    monkeypatch.delenv("REPROBUST_MEMORY_BUDGET", raising=False)
    assert items_per_chunk(100, 1050, total=50) == 10
    assert items_per_chunk(100, 10, total=50) == 1      # never below one item
    assert items_per_chunk(100, 10 ** 9, total=50) == 50
    assert items_per_chunk(100, None, total=7) == 7


def test_forward_bytes_counts_every_module_output():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU())
    # input 4 + flatten 4 + linear 3 + relu 3 floats
    assert forward_bytes_per_item(net, torch.rand(5, 1, 2, 2)) == 4 * (4 + 4 + 3 + 3)


def _counting(net):
    calls = []
    net.register_forward_pre_hook(lambda m, i: calls.append(len(i[0])))
    return calls


def test_black_box_attacks_are_identical_under_a_small_budget(digits):
    torch.manual_seed(0)
    net = build_model("cnn", **digits.model_kwargs()).eval()
    x = digits.x_test[:6]
    with torch.no_grad():
        y = net(x).argmax(1)  # every image starts correctly classified, so every image is attacked
    per = forward_bytes_per_item(net, x[:1])
    for attack, th in ((threshold_attack, 0.1), (pixel_attack, 2)):
        ref = attack(net, x, y, th, popsize=8, max_iter=4, seed=1)
        calls = _counting(net)
        small = attack(net, x, y, th, popsize=8, max_iter=4, seed=1, memory_budget=per * 5)
        assert max(calls) <= 5 and len(calls) > 4  # really chunked
        net._forward_pre_hooks.clear()
        assert torch.equal(ref.x_adv, small.x_adv) and torch.equal(ref.success, small.success)
        assert torch.equal(ref.norms, small.norms)
    a = minimal_threshold("threshold", net, x, y, [0.02, 0.1, 0.5], popsize=8, max_iter=3)
    b = minimal_threshold("threshold", net, x, y, [0.02, 0.1, 0.5], popsize=8, max_iter=3, memory_budget=per * 3)
    np.testing.assert_array_equal(a.thresholds, b.thresholds)
    np.testing.assert_array_equal(a.queries, b.queries)


def test_capsnet_routes_in_chunks_within_its_budget():
    torch.manual_seed(0)
    net = build_model("capsnet", input_shape=(1, 28, 28), num_classes=10).eval()
    x = torch.rand(9, 1, 28, 28)
    fired = []
    net.class_caps.register_forward_hook(lambda m, i, o: fired.append(o.shape[0]))
    routed = []
    orig = net._route
    net._route = lambda u: (routed.append(len(u)), orig(u))[1]
    with torch.no_grad():
        ref = net(x)
        net.memory_budget = net.extra_forward_bytes(x) * 4
        small = net(x)
    assert routed == [9, 4, 4, 1] and fired == [9, 9]  # hook points still fire once per forward
    # Routing GEMMs of another batch size round differently in the last bits (MKL picks kernels by
    # shape): agreement to float32 rounding, not bitwise.
    torch.testing.assert_close(small, ref, rtol=0, atol=1e-5)
    assert torch.equal(small.argmax(1), ref.argmax(1))
    # u_hat alone at Sabour size on CIFAR-10: 500 images × 100 candidates × 2,048 × 10 × 16 float32.
    cifar = build_model("capsnet", input_shape=(3, 32, 32), num_classes=10)
    assert 50_000 * cifar.extra_forward_bytes(None) / 4 == pytest.approx(65.5e9, rel=0.01)


def test_convex_projections_are_identical_under_a_small_budget():
    rng = np.random.default_rng(0)
    x = rng.random((60, 1, 4, 4)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    layer = {"h": x.reshape(60, -1) @ rng.normal(size=(16, 8)).astype(np.float32)}
    q = {"h": layer["h"][:11] + 0.01}
    true, pred = y[:11], (y[:11] + 1) % 3
    ref = convex_projection_distances(layer, q, x, y, true, pred, k_layer=5, k_input=4)
    small = convex_projection_distances(layer, q, x, y, true, pred, k_layer=5, k_input=4, memory_budget=4000)
    for key in ("d_true", "d_pred", "layer_residual", "weights", "preimage", "degenerate"):
        np.testing.assert_array_equal(ref["h"][key], small["h"][key])


def test_layer_cka_is_identical_under_a_small_budget(digits):
    torch.manual_seed(0)
    net = build_model("cnn", **digits.model_kwargs()).eval()
    other = build_model("mlp", **digits.model_kwargs()).eval()
    x = digits.x_test[:64]
    per = forward_bytes_per_item(net, x[:1])
    calls = _counting(net)
    small = layer_cka(net, other, x=x, batch_size=32, passes=2, memory_budget=per * 7)
    assert max(calls) <= 7
    net._forward_pre_hooks.clear()
    ref = layer_cka(net, other, x=x, batch_size=32, passes=2)
    np.testing.assert_array_equal(ref, small)
    np.testing.assert_array_equal(layer_cka(net, x=x, batch_size=32, passes=1),
                                  layer_cka(net, x=x, batch_size=32, passes=1, memory_budget=per * 5))
