"""Tests for the minimal-perturbation attacks (C&W L2, EAD, greedy L0) and rubbish inputs."""

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from reprobust.attacks import AttackResult
from reprobust.attacks.minimal import carlini_wagner_l2, elastic_net, greedy_pixel_attack
from reprobust.attacks.rubbish import rubbish_inputs


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Attacks on 8x8 images are chains of tiny ops: a second thread only adds synchronisation."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fragile(one_thread):
    """A linear softmax classifier on 8x8 digits (small margins; exact boundary distances known)."""
    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(d.target)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:1200]), y[:1200]).backward()
        opt.step()
    net.eval()
    xt, yt = x[1200:1300], y[1200:1300]
    with torch.no_grad():
        keep = net(xt).argmax(1) == yt
    return net, xt[keep][:24], yt[keep][:24]


def _boundary_lower_bound(net, x, y, dual: str):
    """Distance to the nearest linear decision boundary (no box): margin / ||w_y - w_j||_dual."""
    w = net[1].weight.detach()
    with torch.no_grad():
        z = net(x)
    bounds = []
    for i in range(len(x)):
        diff = w[y[i]][None] - w  # (10, 64)
        margin = z[i, y[i]] - z[i]
        ord_ = 2 if dual == "l2" else float("inf")
        dist = margin / diff.norm(p=ord_, dim=1).clamp_min(1e-12)
        dist[y[i]] = float("inf")
        bounds.append(dist.min())
    return torch.stack(bounds)


def _check_result(net, x, y, res, norm):
    assert isinstance(res, AttackResult)
    assert res.x_adv.shape == x.shape and res.success.shape == (len(x),)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    with torch.no_grad():
        pred = net(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred != y)
    delta = (res.x_adv - x).flatten(1)
    expected = {"l2": delta.norm(dim=1), "l1": delta.abs().sum(1)}[norm]
    torch.testing.assert_close(res.norms, expected)


def test_carlini_wagner_is_minimal_and_consistent(fragile):
    net, x, y = fragile
    res = carlini_wagner_l2(net, x, y, steps=100, binary_search_steps=6, initial_const=0.1, lr=0.05)
    _check_result(net, x, y, res, "l2")
    assert res.success.float().mean() >= 0.95
    bound = _boundary_lower_bound(net, x, y, "l2")
    ok = res.success
    # Never below the exact minimal distance; close to it (the box only makes it larger).
    assert (res.norms[ok] >= bound[ok] - 1e-4).all()
    assert res.norms[ok].median() <= 1.5 * bound[ok].median()
    again = carlini_wagner_l2(net, x, y, steps=100, binary_search_steps=6, initial_const=0.1, lr=0.05,
                              batch_size=12)
    # Per-image search: splitting the batch changes nothing but the early-abort schedule.
    assert again.success.float().mean() >= 0.95
    torch.testing.assert_close(again.norms.median(), res.norms.median(), rtol=0.2, atol=0.0)


def test_carlini_wagner_confidence_margin(fragile):
    net, x, y = fragile
    res = carlini_wagner_l2(net, x[:16], y[:16], kappa=2.0, steps=100, binary_search_steps=5,
                            initial_const=0.5, lr=0.05)
    assert res.success.float().mean() >= 0.9
    with torch.no_grad():
        z = net(res.x_adv[res.success])
    yy = y[:16][res.success]
    other = z.clone()
    other[torch.arange(len(yy)), yy] = -float("inf")
    assert (other.amax(1) - z[torch.arange(len(yy)), yy] >= 2.0 - 1e-3).all()


def test_elastic_net_is_sparse_l1(fragile):
    net, x, y = fragile
    kw = dict(steps=100, binary_search_steps=6, initial_const=0.1, lr=0.05)
    ead = elastic_net(net, x, y, beta=0.01, **kw)
    _check_result(net, x, y, ead, "l1")
    assert ead.success.float().mean() >= 0.95
    bound = _boundary_lower_bound(net, x, y, "l1")
    assert (ead.norms[ead.success] >= bound[ead.success] - 1e-4).all()
    cw = carlini_wagner_l2(net, x, y, **kw)
    cw_l1 = (cw.x_adv - x).flatten(1).abs().sum(1)
    both = ead.success & cw.success
    # The L1 attack needs less L1 distortion and changes fewer pixels than the L2 attack.
    assert ead.norms[both].median() < cw_l1[both].median()
    sparsity = lambda r: ((r.x_adv - x).abs().flatten(1) > 1e-3).sum(1).float().median()
    assert sparsity(ead) < sparsity(cw)
    ista = elastic_net(net, x[:8], y[:8], beta=0.01, fista=False, decision_rule="en", **kw)
    assert ista.success.float().mean() >= 0.75


def test_greedy_pixel_attack_respects_budget(fragile):
    net, x, y = fragile
    res = greedy_pixel_attack(net, x, y, max_pixels=8, levels=5)
    assert res.success.float().mean() >= 0.8
    changed = ((res.x_adv - x).abs() > 1e-8).flatten(1).sum(1)
    assert (changed <= 8).all()
    torch.testing.assert_close(res.norms, changed.float())
    # Changed pixels take values of the 5-level grid.
    vals = res.x_adv[(res.x_adv - x).abs() > 1e-8]
    grid = torch.linspace(0, 1, 5)
    assert torch.isclose(vals[:, None], grid[None]).any(1).all()
    with torch.no_grad():
        assert torch.equal(res.success, net(res.x_adv).argmax(1) != y)
    # A confidence target needs at least as many pixels as plain misclassification.
    confident = greedy_pixel_attack(net, x, y, max_pixels=20, levels=5, min_confidence=0.9)
    with torch.no_grad():
        p = net(confident.x_adv).softmax(1).amax(1)
    fooled = confident.success & (confident.norms < 20)
    assert (p[fooled] >= 0.9).all()
    both = res.success & fooled
    assert (confident.norms[both] >= res.norms[both]).all()


def test_greedy_pixel_attack_colour_images():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).eval()
    x = torch.rand(6, 3, 4, 4)
    with torch.no_grad():
        y = net(x).argmax(1)
    res = greedy_pixel_attack(net, x, y, max_pixels=16, levels=3, max_candidates=50)
    assert res.x_adv.shape == x.shape
    assert (res.norms <= 16).all()
    with torch.no_grad():
        assert torch.equal(res.success, net(res.x_adv).argmax(1) != y)


def test_bad_input_raises(fragile):
    net, x, y = fragile
    with pytest.raises(ValueError, match="kappa"):
        carlini_wagner_l2(net, x, y, kappa=-1)
    with pytest.raises(ValueError, match="decision_rule"):
        elastic_net(net, x, y, decision_rule="l2")
    with pytest.raises(ValueError, match="levels"):
        greedy_pixel_attack(net, x, y, levels=1)
    with pytest.raises(ValueError, match="init"):
        rubbish_inputs(net, 4, input_shape=(1, 8, 8), num_classes=10, init="zeros")


@pytest.mark.parametrize("init", ["uniform", "gaussian", "constant"])
def test_rubbish_inputs_reach_threshold(fragile, init):
    net = fragile[0]
    res = rubbish_inputs(net, 30, input_shape=(1, 8, 8), num_classes=10, threshold=0.9, init=init, seed=3)
    assert res.success.all()
    assert (res.confidence >= 0.9).all()
    assert torch.equal(res.target, torch.arange(30) % 10)
    with torch.no_grad():
        assert torch.equal(net(res.x).argmax(1), res.target)
    assert res.x.min() >= 0 and res.x.max() <= 1
    again = rubbish_inputs(net, 30, input_shape=(1, 8, 8), num_classes=10, threshold=0.9, init=init, seed=3)
    assert torch.equal(again.x, res.x)


def test_elastic_net_defaults_are_an_l1_attack_on_a_trained_mlp():
    """EAD with its paper defaults (β = 1e-2, elastic-net decision rule) and notebook 02's settings
    needs less L1 distortion than C&W L2 on the same images of a trained MLP (with β = 1e-3 the two
    nearly coincide)."""
    torch.manual_seed(1)
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(d.target)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:1200]), y[:1200]).backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        keep = net(x[1200:1300]).argmax(1) == y[1200:1300]
    xt, yt = x[1200:1300][keep][:32], y[1200:1300][keep][:32]
    kw = dict(kappa=0.9, steps=100, binary_search_steps=5, initial_const=0.1, lr=0.05)
    ead = elastic_net(net, xt, yt, **kw)
    cw = carlini_wagner_l2(net, xt, yt, **kw)
    both = ead.success & cw.success
    assert both.float().mean() >= 0.8
    cw_l1 = (cw.x_adv - xt).flatten(1).abs().sum(1)
    assert ead.norms[both].median() < 0.9 * cw_l1[both].median()


# --- matching the wrong-class confidence (scale_to_confidence, PGD's stop rule) -------------------------
def _matched(net, x, y, name, target):
    from reprobust.attacks import pgd

    run = {"pgd": lambda: pgd(net, x, y, eps=0.6, steps=40, step_size=0.05, stop_confidence=target, loss="confidence"),
           "cw": lambda: carlini_wagner_l2(net, x, y, kappa=6.0, steps=60, binary_search_steps=4, initial_const=1.0,
                                           lr=0.05),
           "ead": lambda: elastic_net(net, x, y, kappa=6.0, steps=60, binary_search_steps=4, initial_const=1.0,
                                      lr=0.05),
           "l0": lambda: greedy_pixel_attack(net, x, y, max_pixels=40, levels=5, min_confidence=target)}[name]
    return run()


@pytest.mark.parametrize("name", ["pgd", "cw", "ead", "l0"])
def test_scale_to_confidence_ends_at_the_target_and_still_fools(fragile, name):
    from reprobust.attacks import scale_to_confidence, wrong_class_confidence

    net, x, y = fragile
    target = 0.95
    raw = _matched(net, x, y, name, target)
    res = scale_to_confidence(net, x, raw.x_adv, y, target=target, steps=30, norm="l2")
    with torch.no_grad():
        logits_raw, logits = net(raw.x_adv), net(res.x_adv)
    conf_raw, conf = wrong_class_confidence(logits_raw, y), wrong_class_confidence(logits, y)
    ok = res.success
    assert ok.sum() >= len(x) // 2, f"{name}: only {int(ok.sum())} of {len(x)} reached the target"
    # Success means the attack's own image reached the target; the scaled image still fools, at the target.
    assert torch.equal(ok, (logits_raw.argmax(1) != y) & (conf_raw >= target))
    assert bool((logits[ok].argmax(1) != y[ok]).all())
    assert bool((conf[ok] >= target).all())
    assert float((conf[ok] - target).max()) < 2e-3, f"{name}: confidence overshoots by {(conf[ok] - target).max():.4f}"
    # Only the distance along the attack's direction changed: δ' = t·δ with t ≤ 1 ...
    d_raw, d = (raw.x_adv - x).flatten(1)[ok], (res.x_adv - x).flatten(1)[ok]
    t = (d * d_raw).sum(1) / d_raw.pow(2).sum(1)
    assert bool((t <= 1 + 1e-6).all()) and torch.allclose(d, t[:, None] * d_raw, atol=1e-5)
    # ... so an L0 perturbation keeps the pixels it changed and nothing else.
    assert bool(((d.abs() > 0) <= (d_raw.abs() > 0)).all())
    # Images that never reached the target are returned unchanged.
    assert torch.equal(res.x_adv[~ok], raw.x_adv[~ok])


def test_pgd_stop_confidence_freezes_at_the_target(fragile):
    from reprobust.attacks import pgd, wrong_class_confidence

    net, x, y = fragile
    free = pgd(net, x, y, eps=0.6, steps=40, step_size=0.05, seed=0)
    stop = pgd(net, x, y, eps=0.6, steps=40, step_size=0.05, seed=0, stop_confidence=0.95)
    with torch.no_grad():
        c_free, c_stop = wrong_class_confidence(net(free.x_adv), y), wrong_class_confidence(net(stop.x_adv), y)
    assert bool(stop.success.all()) and bool((c_stop >= 0.95).all())
    # Without the rule PGD runs to the end of its budget, far past the target; with it, it stops early.
    assert float(c_free.median()) > 0.999 and float(c_stop.median()) < float(c_free.median())
    # The random start already sits at L∞ = ε, so the shorter path shows in L2.
    l2 = lambda r: (r.x_adv - x).flatten(1).norm(dim=1).median()  # noqa: E731
    assert float(l2(stop)) < float(l2(free))


@pytest.mark.parametrize("bad", [0.5, 1.0, 1.2])
def test_scale_to_confidence_refuses_a_target_outside_half_to_one(fragile, bad):
    from reprobust.attacks import scale_to_confidence

    net, x, y = fragile
    with pytest.raises(ValueError, match=f"target.*{bad}"):
        scale_to_confidence(net, x, x, y, target=bad)


def test_pgd_confidence_loss_is_untargeted_only(fragile):
    from reprobust.attacks import pgd

    net, x, y = fragile
    with pytest.raises(ValueError, match="targeted=True"):
        pgd(net, x, y, eps=0.1, loss="confidence", targeted=True)
    with pytest.raises(ValueError, match="'hinge'"):
        pgd(net, x, y, eps=0.1, loss="hinge")
