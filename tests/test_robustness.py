"""robust_accuracy (worst case over an attack ensemble) and attack_diagnostics (checks that can fail)."""

import numpy as np
import pytest
import torch
from torch import nn

from reprobust.attacks import apgd, pgd
from reprobust.robustness import (RobustAccuracy, attack_diagnostics, ensemble_attacks, radius_for_accuracy,
                                  robust_accuracy)

FAST = dict(apgd_steps=30)


@pytest.fixture(scope="module")
def evaluation(adv_cnn, digits):
    x, y = digits.x_test[:120], digits.y_test[:120]
    return adv_cnn, x, y, robust_accuracy(adv_cnn, x, y, eps=0.15, seed=1, **FAST)


def test_worst_case_bookkeeping(evaluation):
    net, x, y, res = evaluation
    with torch.no_grad():
        clean_pred = net(x).argmax(1)
        adv_pred = net(res.x_adv).argmax(1)
    assert res.clean == pytest.approx(float((clean_pred == y).float().mean()))
    assert set(res.per_attack) == {"pgd", "apgd-ce", "apgd-t"}
    assert set(res.first_success) <= {"", "clean", "pgd", "apgd-ce", "apgd-t"}
    fs = res.first_success
    assert np.array_equal(fs == "clean", (clean_pred != y).numpy())
    # An image is robust iff no attack fooled it, and x_adv is what fooled it.
    assert res.robust == pytest.approx(float(np.mean(fs == "")))
    assert np.array_equal((adv_pred == y).numpy(), fs == "")
    assert torch.equal(res.x_adv[torch.as_tensor(fs == "clean")], x[torch.as_tensor(fs == "clean")])
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (res.x_adv - x).abs().amax() <= 0.15 + 1e-6
    # The worst case is at most each attack alone, and the ensemble adds something over PGD here.
    assert res.robust <= min(res.per_attack.values())
    assert res.robust < res.per_attack["pgd"]
    assert 0 < res.robust < res.clean


def test_per_attack_numbers_are_each_attack_alone(evaluation):
    """Recompute two members directly on the correctly classified images."""
    net, x, y, res = evaluation
    ok = torch.as_tensor(res.first_success != "clean")
    alone = pgd(net, x[ok], y[ok], eps=0.15, steps=10, seed=1)
    assert res.per_attack["pgd"] == pytest.approx(float((~alone.success).sum()) / len(x))
    alone = apgd(net, x[ok], y[ok], eps=0.15, loss="dlr-targeted", steps=30, n_target_classes=3, seed=1)
    assert res.per_attack["apgd-t"] == pytest.approx(float((~alone.success).sum()) / len(x))
    # First success follows the ensemble order: an image credited to APGD-T was not fooled by PGD.
    pgd_fooled = torch.zeros(len(x), dtype=torch.bool)
    pgd_fooled[ok] = pgd(net, x[ok], y[ok], eps=0.15, steps=10, seed=1).success
    assert not pgd_fooled[torch.as_tensor(np.isin(res.first_success, ["apgd-ce", "apgd-t", ""]))].any()


def test_standard_ensemble_is_at_least_as_strong(evaluation):
    """The standard ensemble repeats the fast one's first starts and targets, then adds more: it can only
    fool more images (same seed)."""
    net, x, y, fast = evaluation
    std = robust_accuracy(net, x, y, eps=0.15, ensemble="standard", seed=1, square_queries=200, **FAST)
    assert set(std.per_attack) == {"pgd", "apgd-ce", "apgd-t", "square"}
    fooled_fast = torch.as_tensor(fast.first_success != "")
    fooled_std = torch.as_tensor(std.first_success != "")
    assert (fooled_std | ~fooled_fast).all()
    assert std.robust <= fast.robust


def test_deterministic_under_a_seed(evaluation):
    net, x, y, res = evaluation
    again = robust_accuracy(net, x, y, eps=0.15, seed=1, **FAST)
    assert again.robust == res.robust and np.array_equal(again.first_success, res.first_success)
    assert torch.equal(again.x_adv, res.x_adv)


def test_round_trip_through_the_cache(evaluation, cache):
    _, _, _, res = evaluation
    cfg = {"model": "adv_cnn", "eps": 0.15}
    cache.get_or_compute("robust_accuracy", cfg, res.to_dict)
    back = RobustAccuracy.from_dict(cache.load("robust_accuracy", cfg))
    assert (back.clean, back.robust, back.per_attack) == (res.clean, res.robust, res.per_attack)
    assert np.array_equal(back.first_success, res.first_success) and torch.equal(back.x_adv, res.x_adv)


def test_bad_choices():
    with pytest.raises(ValueError, match="valid"):
        ensemble_attacks("strong", eps=0.1, norm="linf")
    with pytest.raises(ValueError, match="valid"):
        ensemble_attacks("fast", eps=0.1, norm="l1")


class Quantised(nn.Module):
    """Rounds its input to 4 grey levels before a trained network: the gradient is zero almost
    everywhere (the classic gradient masking of Athalye et al. 2018), yet the model is not robust."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 3) / 3)


def test_diagnostics_catch_gradient_masking(adv_cnn, digits):
    x, y = digits.x_test[:60], digits.y_test[:60]
    table = attack_diagnostics(Quantised(adv_cnn).eval(), x, y, eps=0.2, apgd_steps=20, square_queries=300, restarts=2,
                               steps_factor=2)
    assert list(table.columns) == ["check", "value", "threshold", "passed"] and len(table) == 5
    large = table.iloc[0]
    assert large.check.startswith("robust accuracy at large eps")
    assert not large.passed and large.value > 0          # white-box attacks fail even at a large budget
    square_row = table[table.check.str.startswith("Square")].iloc[0]
    assert not square_row.passed and square_row.value < square_row.threshold  # black-box beats white-box


def test_diagnostics_pass_on_an_honest_model(adv_cnn, digits):
    from reprobust.models import build_model
    from reprobust.train import fit

    torch.manual_seed(1)
    standard = build_model("mlp", **digits.model_kwargs())
    fit(standard, digits.x_train, digits.y_train, epochs=5, seed=1)
    x, y = digits.x_test[:80], digits.y_test[:80]
    table = attack_diagnostics(adv_cnn, x, y, eps=0.1, reference_model=standard.eval(), apgd_steps=30,
                               square_queries=300, restarts=2, steps_factor=2, tolerance=0.03)
    print(table.to_string())
    assert table.passed.all(), table.to_string()
    assert table.value.iloc[0] == 0.0


def test_diagnostics_without_a_reference_model_mark_transfer_as_not_run(adv_cnn, digits):
    x, y = digits.x_test[:20], digits.y_test[:20]
    table = attack_diagnostics(adv_cnn, x, y, eps=0.1, apgd_steps=10, square_queries=50, restarts=1)
    row = table[table.check.str.startswith("transfer")].iloc[0]
    assert row.passed is None and np.isnan(row.value)


def test_cached_helpers_key_on_the_settings_and_reuse_entries(adv_cnn, digits, cache, monkeypatch):
    from reprobust import robustness as R

    x, y = digits.x_test[:30], digits.y_test[:30]
    first = R.cached_robust_accuracy(cache, adv_cnn, x, y, config={"model": "adv_cnn", "n": 30}, eps=0.15, seed=1, **FAST)
    direct = robust_accuracy(adv_cnn, x, y, eps=0.15, seed=1, **FAST)
    assert (first["clean"], first["robust"], first["per_attack"]) == (direct.clean, direct.robust, direct.per_attack)
    assert first["first_success"] == list(direct.first_success) and "x_adv" not in first
    # a second call with the same settings is a cache hit; another ε is a new entry
    monkeypatch.setattr(R, "robust_accuracy", lambda *a, **k: pytest.fail("recomputed a cached entry"))
    assert R.cached_robust_accuracy(cache, adv_cnn, x, y, config={"model": "adv_cnn", "n": 30}, eps=0.15, seed=1,
                                    **FAST) == first
    with pytest.raises(pytest.fail.Exception):
        R.cached_robust_accuracy(cache, adv_cnn, x, y, config={"model": "adv_cnn", "n": 30}, eps=0.2, seed=1, **FAST)
    monkeypatch.undo()
    kw = dict(eps=0.1, apgd_steps=10, square_queries=50, restarts=1)
    table = R.cached_attack_diagnostics(cache, adv_cnn, x[:20], y[:20], config={"model": "adv_cnn"}, **kw)
    again = R.cached_attack_diagnostics(cache, adv_cnn, x[:20], y[:20], config={"model": "adv_cnn"}, **kw)
    assert list(table.columns) == ["check", "value", "threshold", "passed"] and table.equals(again)


def test_radius_for_accuracy_matches_a_target_and_reports_failure(adv_cnn, digits):
    x, y = digits.x_test[:60], digits.y_test[:60]
    clean = float((adv_cnn(x).argmax(1) == y).float().mean())
    # a start far below the radius needed: the bracket is widened, then bisected
    m = radius_for_accuracy(adv_cnn, x, y, target=clean - 0.3, eps_high=0.05, norm="l2", tolerance=1 / 60, seed=2)
    assert m.converged and abs(m.accuracy - (clean - 0.3)) <= 1 / 60 and m.eps > 0.05
    # the reported accuracy is that of the returned images, which lie in the ball
    assert float((adv_cnn(m.x_adv).argmax(1) == y).float().mean()) == pytest.approx(m.accuracy)
    assert (m.x_adv - x).flatten(1).norm(dim=1).max() <= m.eps + 1e-5
    # a target above clean accuracy cannot be reached: the closest radius (0, the clean images) and not converged
    m = radius_for_accuracy(adv_cnn, x, y, target=min(1.0, clean + 0.2), eps_high=1.0, max_evaluations=4)
    assert not m.converged and m.eps == 0.0 and m.accuracy == pytest.approx(clean) and m.evaluations == 4
    with pytest.raises(ValueError, match="target accuracy=1.5 is out of range"):
        radius_for_accuracy(adv_cnn, x, y, target=1.5, eps_high=1.0)


def test_publish_attack_diagnostics_saves_one_table_and_counts_failures(capsys):
    import pandas as pd

    from reprobust.robustness import publish_attack_diagnostics

    saved = {}

    class Ctx:
        def save_table(self, df, name, caption):
            saved[name] = (df, caption)

    a = pd.DataFrame({"check": ["x", "y"], "value": [0.1, 0.2], "threshold": [0.0, 0.3], "passed": [False, True],
                      "model": "A"})
    b = pd.DataFrame({"check": ["x"], "value": [0.0], "threshold": [0.0], "passed": [None], "model": "B"})
    out = publish_attack_diagnostics(Ctx(), [a, b], n=50, eps=0.1, ensemble="fast")
    assert list(out.columns) == ["model", "check", "value", "threshold", "passed"] and len(out) == 3
    df, caption = saved["attack_diagnostics"]
    assert df.equals(out) and "50 images" in caption and "ε=0.1" in caption and "'fast'" in caption
    assert "1 of 3 attack checks failed" in capsys.readouterr().out   # None (not run) is not a failure
