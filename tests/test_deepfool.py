"""DeepFool (L2, multi-class): exactness on affine classifiers, minimality, eps clipping, bad input."""

import pytest
import torch
from torch import nn

from reprobust.attacks import AttackResult
from reprobust.attacks.deepfool import deepfool
from reprobust.attacks.gradient import pgd


def _affine(seed=0, classes=5, dim=16):
    # Biases put the boundaries near the grey image 0.5, so minimal perturbations stay inside [0, 1].
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(dim, classes))
    with torch.no_grad():
        net[1].bias.copy_(-0.5 * net[1].weight.sum(1) + 0.05 * torch.randn(classes))
    return net


def _analytic_distance(net, x):
    """Exact L2 distance to the nearest decision boundary of an affine classifier (no box)."""
    W, b = net[1].weight, net[1].bias
    logits = x.flatten(1) @ W.T + b
    y = logits.argmax(1)
    diff = logits - logits.gather(1, y[:, None])
    wn = (W[None, :, :] - W[y][:, None, :]).norm(dim=2)
    dist = diff.abs() / wn
    dist[torch.arange(len(x)), y] = float("inf")
    return dist.min(1).values


def test_affine_classifier_one_step_is_exact():
    net = _affine()
    x = 0.5 + 0.01 * torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    res = deepfool(net, x, overshoot=0.0, steps=1, candidates=None)
    assert isinstance(res, AttackResult)
    assert res.x_adv.shape == x.shape and res.success.shape == (64,) and res.norms.shape == (64,)
    assert (res.x_adv >= 0).all() and (res.x_adv <= 1).all()
    expected = _analytic_distance(net, x) + 1e-4  # one step lands just past the boundary
    inside_box = (res.x_adv > 0).all() and (res.x_adv < 1).all()
    assert inside_box, "test setup should not hit the [0,1] box"
    torch.testing.assert_close(res.norms, expected, rtol=1e-3, atol=1e-5)
    assert res.success.all()


def test_overshoot_scales_the_perturbation():
    net = _affine(seed=2)
    x = 0.5 + 0.01 * torch.randn(32, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    base = deepfool(net, x, overshoot=0.0, candidates=None)
    over = deepfool(net, x, overshoot=0.5, candidates=None)
    torch.testing.assert_close(over.norms, 1.5 * base.norms, rtol=1e-3, atol=1e-6)


def _small_cnn(seed=0):
    # A dense head with enlarged weights, so that an untrained net's decision boundaries pass
    # through the [0, 1] box (a random net with global pooling predicts one class everywhere).
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(128, 4))
    with torch.no_grad():
        net[-1].weight.mul_(5)
        net[-1].bias.zero_()
    return net


def test_nonlinear_model_flips_labels_with_smaller_l2_than_pgd_needs():
    net = _small_cnn()
    x = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = net(x).argmax(1)
    res = deepfool(net, x, steps=50)
    assert res.success.float().mean() >= 0.95
    with torch.no_grad():
        assert (net(res.x_adv).argmax(1)[res.success] != y[res.success]).all()
    # DeepFool approximates the minimal perturbation: an L2 PGD restricted to half the median DeepFool
    # norm should fool clearly fewer images than DeepFool does.
    half = 0.5 * float(res.norms[res.success].median())
    weak = pgd(net, x, y, eps=half, norm="l2", steps=20)
    assert weak.success.float().mean() < res.success.float().mean()


def test_eps_limits_the_norm_and_success_is_monotone():
    net = _small_cnn(1)
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    free = deepfool(net, x)
    rates = []
    for eps in [0.0, 0.5 * float(free.norms.median()), 10.0]:
        r = deepfool(net, x, eps=eps)
        assert (r.norms <= eps + 1e-5).all()
        rates.append(float(r.success.float().mean()))
    assert rates[0] == 0.0  # labels are the model's own predictions, nothing is wrong at eps 0
    assert rates[0] <= rates[1] <= rates[2]
    assert rates[2] == pytest.approx(float(free.success.float().mean()))


def test_misclassified_inputs_count_as_success_with_zero_norm():
    net = _small_cnn(2)
    x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    pred = net(x).argmax(1)
    wrong = (pred + 1) % 4
    res = deepfool(net, x, wrong)
    assert res.success.all()
    assert (res.norms == 0).all()


def test_deterministic_batched_equals_unbatched_and_restores_mode():
    net = _small_cnn(3).train()
    x = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    a = deepfool(net, x, batch_size=None)
    b = deepfool(net, x, batch_size=7)
    assert net.training
    torch.testing.assert_close(a.x_adv, b.x_adv)
    assert torch.equal(a.success, b.success)


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(overshoot=-0.1), dict(candidates=1), dict(eps=-1.0)])
def test_bad_input_is_a_one_line_value_error(kwargs):
    net = _small_cnn()
    with pytest.raises(ValueError, match=r"\w+=.* out of range"):
        deepfool(net, torch.rand(2, 1, 8, 8), **kwargs)
