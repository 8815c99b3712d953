"""APGD (reprobust.attacks.apgd): closed-form oracles on linear models, an independent implementation
(torchattacks), restarts, batching, the ball and the [0, 1] box."""

import pytest
import torch
from torch import nn

from reprobust.attacks import apgd, perturbation_norm
from reprobust.attacks.apgd import dlr_loss, targeted_dlr_loss

from linear_oracle import Linear, check_oracle, linear_problem


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_ce_finds_the_minimal_perturbation_of_a_binary_linear_model(norm):
    """Two classes: the loss gradient points at the only boundary, so APGD-CE must reach it."""
    model, x, y, d, eps = linear_problem(2, norm)
    res = apgd(model, x, y, eps=eps, norm=norm, loss="ce", steps=100)
    check_oracle(res, d, eps, tol=0.02)
    assert (res.norms <= eps * (1 + 1e-5)).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_t_finds_the_closest_of_nine_boundaries(norm):
    """Ten classes: the closest boundary can be to any class; APGD-T tries every target."""
    model, x, y, d, eps = linear_problem(10, norm)
    res = apgd(model, x, y, eps=eps, norm=norm, loss="dlr-targeted", steps=100, n_target_classes=9)
    check_oracle(res, d, eps, tol=0.02)
    # With only the top target class it must do worse: the targets matter.
    few = apgd(model, x, y, eps=eps, norm=norm, loss="dlr-targeted", steps=100, n_target_classes=1)
    assert few.success.sum() < res.success.sum()


def test_dlr_losses_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 6, generator=g)
    y = torch.randint(0, 6, (50,), generator=g)
    t = (y + 1) % 6
    for i in range(50):
        zi = z[i].tolist()
        srt = sorted(zi, reverse=True)
        other = max(v for j, v in enumerate(zi) if j != y[i])
        assert dlr_loss(z, y)[i].item() == pytest.approx(-(zi[y[i]] - other) / (srt[0] - srt[2]), rel=1e-5)
        expect = -(zi[y[i]] - zi[t[i]]) / (srt[0] - 0.5 * (srt[2] + srt[3]))
        assert targeted_dlr_loss(z, y, t)[i].item() == pytest.approx(expect, rel=1e-5)
    # DLR is invariant to shifting and positive scaling of the logits (Croce & Hein's point).
    assert torch.allclose(dlr_loss(3 * z + 1, y), dlr_loss(z, y), atol=1e-5)


def test_later_restarts_rescue_failed_starts(two_basins):
    net, x, y = two_basins
    one, many = (apgd(net, x, y, eps=0.1, steps=20, restarts=r, seed=3) for r in (1, 10))
    assert 0.2 < one.success.float().mean() < 0.9   # the first start fails on some images ...
    assert many.success.all()                       # ... and a later start succeeds on each of them
    # Images that failed everywhere keep the attack's attempt, not the clean image.
    assert (one.norms[~one.success] > 0.05).all()
    assert (net(many.x_adv).argmax(1) == 1).all()


def test_batching_does_not_change_the_result():
    model, x, y, _, eps = linear_problem(10, "linf")
    for loss in ("ce", "dlr-targeted"):
        a = apgd(model, x, y, eps=eps, loss=loss, steps=30, restarts=2, seed=4)
        b = apgd(model, x, y, eps=eps, loss=loss, steps=30, restarts=2, seed=4, batch_size=7)
        assert torch.equal(a.success, b.success)
        assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)
        c = apgd(model, x, y, eps=eps, loss=loss, steps=30, restarts=2, seed=4)
        assert torch.equal(a.x_adv, c.x_adv)   # deterministic under a seed


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 2.0)])
def test_iterates_stay_in_the_ball_and_the_box(norm, eps, digits):
    from reprobust.models import build_model
    from reprobust.train import fit

    torch.manual_seed(0)
    net = build_model("mlp", **digits.model_kwargs())
    fit(net, digits.x_train[:300], digits.y_train[:300], epochs=2, seed=0)
    x = (digits.x_test[:100] > 0.5).float()   # pixels at exactly 0 and 1: the box binds everywhere
    y = digits.y_test[:100]
    for loss in ("ce", "dlr", "dlr-targeted"):
        res = apgd(net, x, y, eps=eps, norm=norm, loss=loss, steps=20, n_target_classes=2)
        assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
        assert (res.norms <= eps * (1 + 1e-5)).all()
        assert torch.allclose(res.norms, perturbation_norm(res.x_adv - x, norm))
        with torch.no_grad():
            assert torch.equal(net(res.x_adv).argmax(1) != y, res.success)


def test_zero_budget_and_misclassified_images():
    model, x, y, _, _ = linear_problem(10, "linf", n=40)
    y_wrong = y.clone()
    y_wrong[:5] = (y[:5] + 1) % 10
    res = apgd(model, x, y_wrong, eps=0.0, loss="dlr-targeted")
    assert res.success.tolist() == [True] * 5 + [False] * 35
    assert torch.equal(res.x_adv, x)
    res = apgd(model, x, y_wrong, eps=0.01)
    assert res.success[:5].all() and torch.equal(res.x_adv[:5], x[:5])


def test_restores_training_mode():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.Dropout(0.5))
    net.train()
    apgd(net, torch.rand(8, 1, 4, 4), torch.zeros(8, dtype=torch.long), eps=0.1, steps=3)
    assert net.training


@pytest.mark.parametrize("kw", [dict(eps=-0.1), dict(eps=0.1, norm="l1"), dict(eps=0.1, loss="cw"),
                                dict(eps=0.1, steps=0), dict(eps=0.1, restarts=0),
                                dict(eps=0.1, n_target_classes=0), dict(eps=0.1, loss="dlr-targeted")])
def test_bad_parameters(kw):
    net = Linear(3)   # three classes: too few for the targeted DLR loss
    with pytest.raises(ValueError, match="valid"):
        apgd(net, torch.rand(4, 1, 4, 4), torch.zeros(4, dtype=torch.long), **kw)


@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 0.8)])
def test_at_least_as_strong_as_torchattacks_apgd(adv_cnn, digits, norm, eps):
    """An independent implementation (Croce & Hein's code as packaged by torchattacks): same model, same
    images, same settings (100 steps, one start); over three seeds ours leaves at most as many images
    robust, up to one image per seed for the random starts."""
    torchattacks = pytest.importorskip("torchattacks",
                                       reason="test-only extra: pip install --no-deps torchattacks==3.5.1")
    x, y = digits.x_test[:150], digits.y_test[:150]
    kind = {"linf": "Linf", "l2": "L2"}[norm]

    def robust_count(attack):
        with torch.no_grad():
            return int((adv_cnn(attack(x, y)).argmax(1) == y).sum())

    with torch.no_grad():
        clean = int((adv_cnn(x).argmax(1) == y).sum())
    for loss in ("ce", "dlr", "dlr-targeted"):
        ours = ref = 0
        for seed in range(3):
            ours += int((~apgd(adv_cnn, x, y, eps=eps, norm=norm, loss=loss, steps=100, seed=seed,
                               n_target_classes=3).success).sum())
            if loss == "dlr-targeted":
                # torchattacks' APGDT attacks the top n_classes − 1 targets: 3, as ours here.
                ref += robust_count(torchattacks.APGDT(adv_cnn, norm=kind, eps=eps, steps=100, n_restarts=1,
                                                       n_classes=4, seed=seed))
            else:
                ref += robust_count(torchattacks.APGD(adv_cnn, norm=kind, eps=eps, steps=100, n_restarts=1,
                                                      loss=loss, seed=seed))
        # Not vacuous: the model is mostly right on clean images and the attacks fool part of them.
        assert clean > 100 and 30 < ref < 3 * clean - 30, (loss, ref, clean)
        print(f"{norm} {loss}: robust images over 3 seeds, ours {ours}, torchattacks {ref}")
        assert ours <= ref + 3, (loss, ours, ref)
