"""Black-box pixel (L0) and threshold (L∞) attacks on models built to be fragile."""

import numpy as np
import pytest
import torch
from torch import nn

from reprobust.attacks import AttackResult
from reprobust.attacks.blackbox import minimal_threshold, pixel_attack, success_rate, threshold_attack


class OnePixelModel(nn.Module):
    """Two classes decided by pixel (0, 0) alone: class 1 iff that pixel > 0.5."""

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([10 * (0.5 - p), 10 * (p - 0.5)], dim=1)


def _images(first_pixels):
    x = torch.full((len(first_pixels), 1, 3, 3), 0.2)
    x[:, 0, 0, 0] = torch.tensor(first_pixels)
    return x


FAST = dict(popsize=16, max_iter=15)


@pytest.mark.parametrize("optimizer", ["de", "cmaes"])
def test_threshold_attack_succeeds_when_budget_suffices_and_respects_it(optimizer):
    x = _images([0.4, 0.3, 0.45])
    y = torch.zeros(3, dtype=torch.long)
    res = threshold_attack(OnePixelModel(), x, y, 0.3, optimizer=optimizer, seed=1, **FAST)
    assert isinstance(res, AttackResult)
    assert res.success.all()
    assert (res.x_adv[:, 0, 0, 0] > 0.5).all()
    assert float((res.x_adv - x).abs().max()) <= 0.3 + 1e-6
    assert torch.allclose(res.norms, (res.x_adv - x).flatten(1).abs().amax(1))


class CountingModel(OnePixelModel):
    """OnePixelModel that counts the images it scores, to prove a search really ran."""

    def __init__(self):
        super().__init__()
        self.scored = 0

    def forward(self, x):
        self.scored += len(x)
        return super().forward(x)


@pytest.mark.parametrize("attack", [threshold_attack, pixel_attack])
def test_attacks_fail_at_threshold_zero(attack):
    # 0.49 is 0.01 from the boundary: any leaked perturbation (a decoder ignoring the zero budget, a
    # pixel gene written although the image may change no pixel) would succeed here.
    x = _images([0.49, 0.1])
    y = torch.zeros(2, dtype=torch.long)
    model = CountingModel()
    res = attack(model, x, y, 0, **FAST)
    assert not res.success.any()
    assert torch.equal(res.x_adv, x) and (res.norms == 0).all()
    # the search ran: the clean pass plus every generation of both images
    assert model.scored == 2 + 2 * FAST["popsize"] * FAST["max_iter"]


def test_threshold_attack_cannot_cross_an_unreachable_boundary():
    x = _images([0.1])
    res = threshold_attack(OnePixelModel(), x, torch.zeros(1, dtype=torch.long), 0.3, **FAST)
    assert not res.success.any()
    # best attempt pushed the decisive pixel towards the boundary
    assert float(res.x_adv[0, 0, 0, 0]) > 0.3


@pytest.mark.parametrize("optimizer", ["de", "cmaes"])
def test_pixel_attack_finds_the_decisive_pixel_and_changes_at_most_th(optimizer):
    x = _images([0.1, 0.2, 0.0, 0.3])
    y = torch.zeros(4, dtype=torch.long)
    res = pixel_attack(OnePixelModel(), x, y, 1, optimizer=optimizer, seed=0, popsize=20, max_iter=30)
    assert res.success.all()
    changed = ((res.x_adv - x).abs().flatten(1) > 1e-8).sum(1)
    assert (changed <= 1).all() and torch.equal(changed.float(), res.norms)


def test_already_misclassified_images_succeed_without_change():
    x = _images([0.9])
    res = pixel_attack(OnePixelModel(), x, torch.zeros(1, dtype=torch.long), 2, **FAST)
    assert res.success.all() and float(res.norms[0]) == 0


def test_batched_population_equals_per_image_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 3))
    x = torch.rand(5, 1, 3, 3)
    y = torch.tensor([0, 1, 2, 0, 1])
    a = threshold_attack(model, x, y, 0.2, seed=3, **FAST)
    b = threshold_attack(model, x, y, 0.2, seed=3, batch_images=False, **FAST)
    assert torch.equal(a.success, b.success) and torch.allclose(a.x_adv, b.x_adv)


def test_minimal_threshold_binary_search():
    # Needed budgets: 0.45 -> >0.05, 0.4 -> >0.1, 0.32 -> >0.18; 0.1 unreachable; 0.7 already wrong
    x = _images([0.45, 0.4, 0.32, 0.1, 0.7])
    y = torch.zeros(5, dtype=torch.long)
    levels = [0.05, 0.1, 0.15, 0.2, 0.3]
    out = minimal_threshold("threshold", OnePixelModel(), x, y, levels, popsize=24, max_iter=25)
    np.testing.assert_allclose(out.thresholds, [0.1, 0.15, 0.2, np.inf, 0.0])
    assert out.result.success.tolist() == [True, True, True, False, True]
    assert (out.result.norms[:3] <= torch.tensor([0.1, 0.15, 0.2]) + 1e-6).all()
    assert (out.queries[:4] > 0).all() and out.queries[4] == 1
    np.testing.assert_allclose(success_rate(out.thresholds, [0.0, 0.1, 0.3]), [0.2, 0.4, 0.8])


def test_minimal_pixels_search_with_per_image_thresholds():
    x = _images([0.1, 0.2])
    out = minimal_threshold("pixel", OnePixelModel(), x, torch.zeros(2, dtype=torch.long), [1, 2, 3],
                            popsize=20, max_iter=30)
    np.testing.assert_allclose(out.thresholds, [1, 1])


def test_seeded_attacks_are_deterministic():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 3))
    x, y = torch.rand(4, 1, 3, 3), torch.tensor([0, 1, 2, 0])
    r1 = pixel_attack(model, x, y, 2, seed=5, **FAST)
    r2 = pixel_attack(model, x, y, 2, seed=5, **FAST)
    assert torch.equal(r1.x_adv, r2.x_adv)


def test_bad_arguments():
    x, y = _images([0.4]), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="optimizer"):
        threshold_attack(OnePixelModel(), x, y, 0.1, optimizer="ga")
    with pytest.raises(ValueError, match="threshold"):
        threshold_attack(OnePixelModel(), x, y, -0.1)
    with pytest.raises(ValueError, match="levels"):
        minimal_threshold("threshold", OnePixelModel(), x, y, [0.2, 0.1])
    with pytest.raises(ValueError, match="attack"):
        minimal_threshold("boundary", OnePixelModel(), x, y, [0.1])
