"""Square attack (reprobust.attacks.square): closed-form oracle, black-box use, ball and box, determinism."""

import pytest
import torch
from torch import nn

from reprobust.attacks import apgd, perturbation_norm
from reprobust.attacks.square import square

from linear_oracle import check_oracle, linear_problem


def test_finds_the_minimal_linf_perturbation_of_a_binary_linear_model():
    """For a linear margin the best L∞ perturbation is a vertex of the ball; the random search over
    window signs must reach it for every image whose minimal perturbation is inside the ball."""
    model, x, y, d, eps = linear_problem(2, "linf")
    res = square(model, x, y, eps=eps, norm="linf", queries=500)
    check_oracle(res, d, eps, tol=0.02)


class NoGradient(nn.Module):
    """Detaches its input: no gradient reaches the image, so only a black-box attack can work."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.detach())


@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 0.8)])
def test_black_box_on_a_model_without_gradients(adv_cnn, digits, norm, eps):
    x, y = digits.x_test[:80], digits.y_test[:80]
    blind = NoGradient(adv_cnn).eval()
    with pytest.raises(RuntimeError):
        apgd(blind, x, y, eps=eps, norm=norm, steps=5)
    res = square(blind, x, y, eps=eps, norm=norm, queries=300)
    with torch.no_grad():
        pred = adv_cnn(res.x_adv).argmax(1)
        clean_wrong = int((adv_cnn(x).argmax(1) != y).sum())
    assert torch.equal(pred != y, res.success)
    assert int(res.success.sum()) > clean_wrong + 10    # it fools images the model got right
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (res.norms <= eps * (1 + 1e-5)).all()
    assert torch.allclose(res.norms, perturbation_norm(res.x_adv - x, norm))


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 3.0)])
def test_stays_in_the_unit_box(adv_cnn, digits, norm, eps):
    x = (digits.x_test[:60] > 0.5).float()
    res = square(adv_cnn, x, digits.y_test[:60], eps=eps, norm=norm, queries=50)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (res.norms <= eps * (1 + 1e-5)).all()


def test_deterministic_and_independent_of_batch_size(adv_cnn, digits):
    x, y = digits.x_test[:60], digits.y_test[:60]
    a = square(adv_cnn, x, y, eps=0.6, norm="l2", queries=100, seed=3)
    b = square(adv_cnn, x, y, eps=0.6, norm="l2", queries=100, seed=3, batch_size=7)
    c = square(adv_cnn, x, y, eps=0.6, norm="l2", queries=100, seed=3)
    assert torch.equal(a.x_adv, c.x_adv)
    assert torch.equal(a.success, b.success) and torch.allclose(a.x_adv, b.x_adv, atol=1e-6)


def test_zero_budget():
    model, x, y, _, _ = linear_problem(2, "linf", n=30)
    res = square(model, x, y, eps=0.0)
    assert not res.success.any() and torch.equal(res.x_adv, x)


@pytest.mark.parametrize("kw", [dict(eps=-1.0), dict(eps=0.1, norm="l1"), dict(eps=0.1, queries=0),
                                dict(eps=0.1, p_init=1.5)])
def test_bad_parameters(kw):
    model, x, y, _, _ = linear_problem(2, "linf", n=30)
    with pytest.raises(ValueError, match="valid"):
        square(model, x, y, **kw)
