import numpy as np
import pytest
import torch

from reprobust.attacks import pgd
from reprobust.train import REGULARIZERS, accuracy, fit, register_regularizer, trained_model
from reprobust.models import build_model

SPEC = {"data": {"name": "digits", "n_train": 400}, "model": {"name": "mlp", "hidden": [64]},
        "train": {"epochs": 4, "batch_size": 64}, "seed": 0}


def test_training_learns_and_is_deterministic(cache, digits):
    a = trained_model(SPEC, cache=cache)
    from reprobust.cache import Cache

    b = trained_model(SPEC, cache=Cache(cache.root.parent / "second"))  # trained again from scratch
    assert accuracy(a, digits.x_test, digits.y_test) > 0.8
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_cache_hit_does_not_retrain(cache, monkeypatch):
    import reprobust.train as tr

    trained_model(SPEC, cache=cache)
    calls = []
    monkeypatch.setattr(tr, "fit", lambda *a, **k: calls.append(1))
    net = trained_model(SPEC, cache=cache)
    assert calls == [] and net.history["loss"]
    trained_model(dict(SPEC, seed=1), cache=cache)  # a new configuration really trains
    assert calls == [1]


def test_checkpoints_one_per_epoch(cache):
    net, states = trained_model(SPEC, cache=cache, checkpoints=True)
    assert len(states) == SPEC["train"]["epochs"]
    assert all(torch.equal(states[-1][k], v) for k, v in net.state_dict().items())
    assert not torch.equal(states[0]["fc1.weight"], states[-1]["fc1.weight"])


def test_leave_one_out_spec_trains_on_n_minus_one_classes(cache):
    spec = {**SPEC, "data": {**SPEC["data"], "exclude_class": 3}}
    net = trained_model(spec, cache=cache)
    assert net.classifier.out_features == 9


def test_adversarial_training_lowers_pgd_success(cache, digits):
    base = {"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [128]},
            "train": {"epochs": 6, "batch_size": 128}, "seed": 0}
    adv = {**base, "train": {**base["train"], "adversarial": {"eps": 0.1, "steps": 3}}}
    x, y = digits.x_test[:300], digits.y_test[:300]
    std_net, adv_net = trained_model(base, cache=cache), trained_model(adv, cache=cache)
    s_std = pgd(std_net, x, y, eps=0.1, steps=10).success.float().mean()
    s_adv = pgd(adv_net, x, y, eps=0.1, steps=10).success.float().mean()
    assert s_adv < s_std - 0.1


def test_label_smoothing_and_noise_change_the_result(digits):
    outs = []
    for kw in ({}, {"label_smoothing": 0.2}, {"noise_std": 0.3}):
        torch.manual_seed(0)
        net = build_model("mlp", **digits.model_kwargs(), hidden=(32,))
        fit(net, digits.x_train[:300], digits.y_train[:300], epochs=2, seed=0, **kw)
        outs.append(net.classifier.weight.detach().clone())
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_regulariser_hook_sees_activations_with_gradients(digits):
    seen = []

    @register_regularizer("_test_l1")
    def factory(model, weight=1.0):
        def fn(acts, y, logits):
            seen.append(acts["act1"].requires_grad)
            return weight * acts["act1"].abs().mean()
        return ["act1"], fn

    try:
        torch.manual_seed(0)
        a = build_model("mlp", **digits.model_kwargs(), hidden=(32,))
        fit(a, digits.x_train[:256], digits.y_train[:256], epochs=3, seed=0, regularizer={"name": "_test_l1", "weight": 5.0})
        torch.manual_seed(0)
        b = build_model("mlp", **digits.model_kwargs(), hidden=(32,))
        fit(b, digits.x_train[:256], digits.y_train[:256], epochs=3, seed=0)
        xs = digits.x_test[:100]
        from reprobust.features import capture_activations
        assert seen and all(seen)
        assert capture_activations(a, xs)["act1"].abs().mean() < capture_activations(b, xs)["act1"].abs().mean()
    finally:
        REGULARIZERS.pop("_test_l1", None)


@pytest.mark.parametrize("kw", [dict(epochs=-1), dict(optimizer="lbfgs"), dict(lr=0), dict(label_smoothing=1.5),
                                dict(regularizer={"name": "nope"}), dict(loss="hinge2")])
def test_bad_training_options(digits, kw):
    net = build_model("mlp", **digits.model_kwargs())
    with pytest.raises(ValueError, match="valid"):
        fit(net, digits.x_train[:10], digits.y_train[:10], **kw)


def test_spec_missing_keys(cache):
    with pytest.raises(ValueError, match="missing 'train'"):
        trained_model({"data": {"name": "digits"}, "model": {"name": "mlp"}}, cache=cache)


def test_validation_split_is_stratified_disjoint_and_seeded(digits):
    from reprobust.data import validation_split

    x, y = digits.x_train, digits.y_train
    (xf, yf), (xv, yv) = validation_split(x, y, 0.2, seed=1)
    assert len(yf) + len(yv) == len(y)
    counts, vcounts = torch.bincount(y), torch.bincount(yv, minlength=len(torch.bincount(y)))
    assert torch.all((vcounts - 0.2 * counts).abs() <= 1)
    (_, _), (xv2, _) = validation_split(x, y, 0.2, seed=1)
    assert torch.equal(xv, xv2)
    (_, _), (xv3, _) = validation_split(x, y, 0.2, seed=2)
    assert not torch.equal(xv, xv3)
    with pytest.raises(ValueError, match="validation fraction"):
        validation_split(x, y, 1.5)


def test_early_stopping_restores_the_best_validation_epoch(digits):
    from reprobust.models import build_model
    from reprobust.train import accuracy, fit

    x, y = digits.x_train[:400], digits.y_train[:400]
    xv, yv = digits.x_test[:200], digits.y_test[:200]
    torch.manual_seed(0)
    net = build_model("mlp", input_shape=digits.input_shape, num_classes=10, mean=digits.mean, std=digits.std)
    seen = []
    hist = fit(net, x, y, epochs=40, lr=0.5, validation=(xv, yv), patience=3, seed=0,
               on_epoch_end=lambda e, m, h: seen.append(accuracy(m, xv, yv)))
    assert hist["epochs_trained"] == len(hist["val_accuracy"]) == len(seen)
    best = int(np.argmax(hist["val_accuracy"]))
    assert hist["best_epoch"] == best + 1
    assert accuracy(net, xv, yv) == pytest.approx(max(hist["val_accuracy"]))
    if hist["epochs_trained"] < 40:  # stopped early: exactly `patience` epochs without improvement
        assert hist["epochs_trained"] - hist["best_epoch"] == 3
    with pytest.raises(ValueError, match="needs validation"):
        fit(net, x, y, epochs=1, patience=2)


def test_trained_model_val_fraction_records_the_selection(cache):
    from reprobust.train import trained_model

    spec = {"data": {"name": "digits", "n_train": 300, "n_test": 100}, "model": {"name": "mlp"},
            "train": {"epochs": 6, "val_fraction": 0.2, "patience": 2}, "seed": 0}
    net = trained_model(spec, cache=cache)
    h = net.history
    assert 1 <= h["best_epoch"] <= h["epochs_trained"] <= 6 and len(h["val_accuracy"]) == h["epochs_trained"]


def test_one_decay_schedule():
    from reprobust.train import _lr_at
    lrs = [_lr_at("one_decay", 1.0, e, 10) for e in range(10)]
    assert lrs == [1.0] * 4 + [pytest.approx(0.1)] * 6


def test_attack_bn_mode_crafts_with_batch_statistics():
    from torch import nn

    from reprobust.train import _adversarial_batch
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():  # running statistics far from the batch's: the two modes must then differ
        net[2].running_mean.fill_(5.0)
        net[2].running_var.fill_(0.01)
    x, y = torch.rand(32, 1, 4, 4), torch.randint(0, 3, (32,))
    adv = {"attack": "pgd", "norm": "linf", "eps": 0.3, "steps": 3}
    net.train()
    mean_before = net[2].running_mean.clone()
    x_eval = _adversarial_batch(net, x, y, adv, seed=1)
    assert torch.equal(net[2].running_mean, mean_before) and net.training
    x_train = _adversarial_batch(net, x, y, {**adv, "attack_bn": "train"}, seed=1)
    assert net.training and not torch.equal(net[2].running_mean, mean_before)  # train-mode forwards update them
    # with running statistics this far off, batch-statistics gradients lead elsewhere
    assert not torch.allclose(x_eval, x_train)
    with pytest.raises(ValueError, match="attack_bn"):
        _adversarial_batch(net, x, y, {**adv, "attack_bn": "batch"}, seed=1)


def test_nesterov_switch_matches_torch_sgd(digits):
    """``nesterov`` reaches torch's SGD: one step of ``fit`` equals one step of a hand-made optimiser."""
    x, y = digits.x_train[:64], digits.y_train[:64]
    for nesterov in (True, False):
        a = build_model("linear", input_shape=(1, 8, 8), num_classes=10)
        b = build_model("linear", input_shape=(1, 8, 8), num_classes=10)
        b.load_state_dict(a.state_dict())
        fit(a, x, y, epochs=2, batch_size=64, lr=0.1, momentum=0.9, weight_decay=0.0, schedule="constant",
            nesterov=nesterov, device="cpu")
        opt = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov)
        for _ in range(2):   # one batch per epoch: the whole 64 images, order irrelevant for the mean loss
            opt.zero_grad()
            torch.nn.functional.cross_entropy(b(x), y).backward()
            opt.step()
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
