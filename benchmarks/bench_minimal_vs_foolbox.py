"""Benchmark for issue 14: our C&W L2 and EAD (elastic net, L1) vs foolbox 3.3.4 at equal settings.

One digits network (notebook 02's quick-profile CNN, ``lenet``, seed 0; read from the default cache,
trained once if absent), the first ``--images`` correctly classified test images, one batch for both
libraries. Equal settings, those of notebook 02's quick profile with κ = 0: ``--search`` binary-search
steps over the constant c, ``--steps`` optimiser steps per search step, learning rate / initial step
size 0.05, initial constant 0.1, κ = 0 (foolbox's ``confidence``), EAD β = 1e-2 (foolbox's
``regularization``), decision rule EN, FISTA (foolbox's only EAD variant). Early abort: on for C&W in
both (the C&W default; each checks the batch loss every tenth of the steps), off for EAD in foolbox
because ours has none.

Reported per attack and library: success rate, the median norm of the successful images (L2 for C&W,
L1 for EAD), the median over the images *both* fooled, the median per-image ratio ours / foolbox on
those images, and seconds per image (wall time of the batch / images; best of ``--repeats``).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_minimal_vs_foolbox.py`` (≈ 1 min on one thread).
Needs foolbox: ``pip install --no-deps foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12
smmap==5.0.3``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from reprobust.attacks.minimal import carlini_wagner_l2, elastic_net
from _timing import best_time
from reprobust.data import load_dataset
from reprobust.train import predict, trained_model

FOOLBOX_PIP = "pip install --no-deps foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3"
BETA = 1e-2


def require_foolbox():
    try:
        import foolbox
    except ImportError as err:
        raise SystemExit(f"bench_minimal_vs_foolbox.py needs foolbox (benchmark-only extra, {err}): "
                         f"{FOOLBOX_PIP}") from None
    if foolbox.__version__ != "3.3.4":
        print(f"warning: foolbox {foolbox.__version__} installed; the reference is 3.3.4 ({FOOLBOX_PIP})")
    return foolbox


def model_spec(seed=0):
    """Notebook 02's quick-profile CNN (``lenet`` on digits)."""
    return {"data": {"name": "digits", "n_train": None, "n_test": None, "subset_seed": 0},
            "model": {"name": "lenet"},
            "train": {"epochs": 40, "batch_size": 64, "lr": 1e-3, "optimizer": "adam", "schedule": "constant",
                      "weight_decay": 0.0, "val_fraction": 0.1, "patience": 5},
            "seed": seed}


def norm(delta, p):
    flat = delta.flatten(1)
    return flat.norm(dim=1) if p == "l2" else flat.abs().sum(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--search", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--initial-const", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    fb = require_foolbox()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, foolbox {fb.__version__}")

    ds = load_dataset("digits")
    model = trained_model(model_spec(), device="cpu").eval()
    ok = torch.nonzero(predict(model, ds.x_test).argmax(1) == ds.y_test).flatten()[:a.images]
    x, y = ds.x_test[ok].contiguous(), ds.y_test[ok].contiguous()
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device="cpu")
    common = dict(steps=a.steps, binary_search_steps=a.search, initial_const=a.initial_const, kappa=0.0)
    print(f"lenet (notebook 02 quick spec, seed 0), {len(x)} correctly classified test images; "
          f"{a.search} binary-search steps × {a.steps} steps, lr {a.lr}, initial const {a.initial_const}, "
          f"κ 0, EAD β {BETA} rule EN (FISTA)")

    attacks = {
        "C&W L2": ("l2",
                   lambda: carlini_wagner_l2(model, x, y, lr=a.lr, abort_early=True, **common),
                   fb.attacks.L2CarliniWagnerAttack(binary_search_steps=a.search, steps=a.steps, stepsize=a.lr,
                                                    confidence=0.0, initial_const=a.initial_const,
                                                    abort_early=True)),
        "EAD L1": ("l1",
                   lambda: elastic_net(model, x, y, beta=BETA, lr=a.lr, decision_rule="en", fista=True, **common),
                   fb.attacks.EADAttack(binary_search_steps=a.search, steps=a.steps, initial_stepsize=a.lr,
                                        confidence=0.0, initial_const=a.initial_const, regularization=BETA,
                                        decision_rule="EN", abort_early=False)),
    }
    rows = []
    for name, (pnorm, ours_fn, fb_attack) in attacks.items():
        t_ours, res = best_time(ours_fn, a.repeats)
        t_fb, (_, clipped, is_adv) = best_time(lambda: fb_attack(fmodel, x, fb.criteria.Misclassification(y),
                                                                 epsilons=None), a.repeats)
        with torch.no_grad():  # success as the model sees the returned images, for both
            s_ours = (model(res.x_adv).argmax(1) != y) & res.success
            s_fb = (model(clipped).argmax(1) != y) & is_adv
        n_ours, n_fb = norm(res.x_adv - x, pnorm), norm(clipped - x, pnorm)
        both = s_ours & s_fb
        rows.append((name, pnorm.upper(), float(s_ours.float().mean()), float(s_fb.float().mean()),
                     float(n_ours[s_ours].median()), float(n_fb[s_fb].median()),
                     float(n_ours[both].median()), float(n_fb[both].median()),
                     float((n_ours[both] / n_fb[both]).median()), t_ours / len(x), t_fb / len(x)))
        print(f"  done {name}", flush=True)

    print(f"\nOurs vs foolbox {fb.__version__}, same model, images and settings (norms: median over the successful "
          f"images; 'both': over the images both fooled; ratio = ours / foolbox)\n")
    print("| attack | norm | success ours | success foolbox | median ours | median foolbox | median ours (both) "
          "| median foolbox (both) | per-image norm ratio (median) | s/image ours | s/image foolbox | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.3f} | {r[5]:.3f} | {r[6]:.3f} | {r[7]:.3f} | "
              f"{r[8]:.3f} | {r[9] * 1e3:.2f} ms | {r[10] * 1e3:.2f} ms | {r[10] / r[9]:.2f}× |")


if __name__ == "__main__":
    main()
