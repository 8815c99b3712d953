import pytest
import torch
from torch import nn

from reprobust.attacks import fgsm, perturbation_norm, pgd

from linear_oracle import check_oracle, linear_problem


class Fragile(nn.Module):
    """A linear classifier with a tiny margin on its inputs: any 0.05 step flips it."""

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(16, 2)
        with torch.no_grad():
            self.w.weight.copy_(torch.stack([torch.ones(16), -torch.ones(16)]) / 16)
            self.w.bias.zero_()

    def forward(self, x):
        return self.w(x.flatten(1) - 0.5)


@pytest.fixture
def fragile_batch():
    g = torch.Generator().manual_seed(0)
    x = (0.5 + 0.01 * torch.rand(32, 1, 4, 4, generator=g)).clamp(0, 1)  # barely class 0
    y = torch.zeros(32, dtype=torch.long)
    return Fragile(), x, y


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.4)])
def test_attacks_succeed_on_a_fragile_model_within_budget(fragile_batch, norm, eps):
    net, x, y = fragile_batch
    assert (net(x).argmax(1) == y).all()
    for res in (fgsm(net, x, y, eps=eps, norm=norm), pgd(net, x, y, eps=eps, norm=norm, steps=10)):
        assert res.success.all()
        assert (res.norms <= eps + 1e-5).all()
        assert torch.allclose(res.norms, perturbation_norm(res.x_adv - x, norm))
        assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
        assert (net(res.x_adv).argmax(1) != y).all()


def test_zero_budget_never_succeeds(fragile_batch):
    net, x, y = fragile_batch
    for res in (fgsm(net, x, y, eps=0.0), pgd(net, x, y, eps=0.0, steps=3)):
        assert not res.success.any()
        assert torch.equal(res.x_adv, x)


def test_pgd_is_at_least_as_strong_as_fgsm_on_a_trained_net(digits):
    from reprobust.train import fit
    from reprobust.models import build_model

    torch.manual_seed(0)
    net = build_model("mlp", **digits.model_kwargs())
    fit(net, digits.x_train, digits.y_train, epochs=3, seed=0)
    x, y = digits.x_test[:200], digits.y_test[:200]
    for eps in (0.05, 0.1):
        assert pgd(net, x, y, eps=eps, steps=10).success.float().mean() >= fgsm(net, x, y, eps=eps).success.float().mean()


def test_pgd_is_deterministic_under_a_seed(fragile_batch):
    net, x, y = fragile_batch
    a = pgd(net, x, y, eps=0.01, steps=3, seed=5)
    b = pgd(net, x, y, eps=0.01, steps=3, seed=5)
    assert torch.equal(a.x_adv, b.x_adv)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.6)])
def test_batched_pgd_equals_unbatched(adv_cnn, digits, norm, eps):
    """Random starts and restarts included: an image gets the same start however it is batched."""
    x, y = digits.x_test[:100], digits.y_test[:100]
    a = pgd(adv_cnn, x, y, eps=eps, norm=norm, steps=5, restarts=3, seed=5)
    b = pgd(adv_cnn, x, y, eps=eps, norm=norm, steps=5, restarts=3, seed=5, batch_size=16)
    assert 0 < a.success.sum() < 100
    assert torch.equal(a.success, b.success)
    assert torch.allclose(a.x_adv, b.x_adv, atol=1e-5)


def test_l2_iterates_stay_strictly_inside_the_ball(adv_cnn, digits):
    """Small steps from the clean image cannot leave a small neighbourhood: projecting onto the sphere
    instead of the ball would put every iterate at distance ε."""
    x, y = digits.x_test[:100], digits.y_test[:100]
    res = pgd(adv_cnn, x, y, eps=2.0, norm="l2", steps=3, step_size=0.1, random_start=False)
    assert (res.norms <= 0.3 + 1e-5).all()
    assert res.norms.median() > 0.2
    res = pgd(adv_cnn, x, y, eps=2.0, norm="l2", steps=3, step_size=0.1)   # random start inside the ball
    assert (res.norms <= 2.0 + 1e-5).all() and res.norms.median() < 1.99


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 3.0)])
def test_adversarial_images_stay_in_the_unit_box(adv_cnn, digits, norm, eps):
    """Pixels at exactly 0 and 1: every step pushes some of them out of [0, 1] unless clipped."""
    x = (digits.x_test[:100] > 0.5).float()
    y = digits.y_test[:100]
    for res in (pgd(adv_cnn, x, y, eps=eps, norm=norm, steps=5), fgsm(adv_cnn, x, y, eps=eps, norm=norm)):
        assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
        assert (res.norms <= eps + 1e-5).all()


def test_later_restarts_rescue_failed_starts(two_basins):
    net, x, y = two_basins
    one, many = (pgd(net, x, y, eps=0.1, steps=20, restarts=r, seed=3) for r in (1, 10))
    assert 0.2 < one.success.float().mean() < 0.9   # the first start fails on some images ...
    assert many.success.all()                       # ... and a later start succeeds on each of them
    assert (net(many.x_adv).argmax(1) == 1).all()
    # Images that failed on every start keep the attack's attempt (at the ball's edge), not the clean image.
    assert (one.norms[~one.success] > 0.09).all()


def test_targeted_pgd_reaches_the_target(fragile_batch):
    net, x, y = fragile_batch
    res = pgd(net, x, torch.ones_like(y), eps=0.05, steps=10, targeted=True)
    assert res.success.all() and (net(res.x_adv).argmax(1) == 1).all()


def test_restarts_keep_successes(fragile_batch):
    net, x, y = fragile_batch
    res = pgd(net, x, y, eps=0.05, steps=2, restarts=3)
    assert res.success.all()


def test_attack_restores_training_mode(fragile_batch):
    net, x, y = fragile_batch
    net.train()
    pgd(net, x, y, eps=0.01, steps=1)
    assert net.training


@pytest.mark.parametrize("kw", [dict(eps=-0.1), dict(eps=0.1, norm="l3"), dict(eps=0.1, steps=0)])
def test_bad_attack_parameters(fragile_batch, kw):
    net, x, y = fragile_batch
    with pytest.raises(ValueError, match="valid"):
        pgd(net, x, y, **kw)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_finds_the_minimal_perturbation_of_a_binary_linear_model(norm):
    """Closed form: the smallest misclassifying perturbation of a linear classifier is ``margin / ‖w‖_*``."""
    model, x, y, d, eps = linear_problem(2, norm)
    res = pgd(model, x, y, eps=eps, norm=norm, steps=100)
    check_oracle(res, d, eps, tol=0.02)
