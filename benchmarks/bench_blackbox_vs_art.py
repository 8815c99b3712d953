"""Benchmark for issue 13: our batched black-box attacks vs ART's ``PixelAttack`` / ``ThresholdAttack``.

Same trained digits models (notebook 01's quick-profile specs: linear, lenet, capsnet; read from the
default cache, trained once if absent), same correctly classified test images, untargeted attacks:

* pixel attack at 1 and 2 pixels (L0), threshold attack at 1 grey level (L∞ 16/255 ≈ 1/16).

ART (adversarial-robustness-toolbox, a benchmark-only extra) works on the 8-bit grid: it rescales
images to [0, 255], its threshold ``th`` is an integer there and it floors every candidate value to an
integer. So every image here is first rounded to the 8-bit grid (``round(255 x) / 255``; no model
changes its prediction on the digits test set) and the threshold is 16/255 for both libraries (one
digits grey level is 1/16 = 15.94/255).

ART's searches run one image at a time, each with its own default optimiser: the pixel attack with
differential evolution (``es=1``: scipy's DE modified by ART, best1bin, population ``400 // dim`` × dim
≈ 400, early stop when the best member fools the model), the threshold attack with CMA-ES (``es=0``,
population 16; with DE, ART — like ours without the vertex pass — fools almost no image at one grey
level). Each scores one image's whole population per forward pass; its only budget knob is
``max_iter`` (generations). ART's DE is seeded here through numpy's global generator; its CMA-ES is
not (``cma`` seeds from the clock), so the threshold rows vary by an image or two between runs.
ART's model is wrapped with a softmax, so that it minimises the true-class *probability*, as ours
does (``PyTorchClassifier`` returns the module's outputs), and its ``predict`` batch is raised from 128
to 4096 so that a generation is one forward pass, as ours.

Equal success: ART runs at a fixed budget (≈ 400 × ``--art-iter``); ours climbs a ladder of budgets
(population × generations, + greedy vertex passes for the threshold attack: the notebook's quick
setting) on the *same images*, and the smallest budget that fools every image ART fooled (a superset of
ART's successes, less luck-dependent on few images than equal rates) is the one timed, batched over
images (the library default) and as the per-image loop (``batch_images=False``), best of
``--repeats``; ART once. Two more tables: ours at ART's own budget (equal budget: how much stronger at
the same number of queries), and ours at the equal-success budget on ``--images`` images (a tighter
success estimate, and batching at a realistic size).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_blackbox_vs_art.py`` (≈ 4 min on one thread).
Needs ART: ``pip install --no-deps adversarial-robustness-toolbox==1.20.1``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

from reprobust.attacks.blackbox import pixel_attack, threshold_attack
from _timing import best_time
from reprobust.data import load_dataset
from reprobust.train import predict, trained_model

ART_PIP = "pip install --no-deps adversarial-robustness-toolbox==1.20.1"
ARCHS = ("linear", "lenet", "capsnet")
TH = 16  # threshold attack: 16/255 (ART's integer threshold on the 8-bit grid) ≈ one digits grey level
# Our budgets, smallest first (max model queries per image): (popsize, generations, vertex passes).
LADDER = {
    "pixel": [(10, 5, 0), (20, 10, 0), (40, 20, 0), (60, 30, 0), (100, 50, 0), (100, 100, 0), (400, 100, 0)],
    "threshold": [(10, 5, 0), (20, 10, 0), (20, 10, 1), (40, 20, 1), (100, 50, 1), (100, 100, 1),
                  (400, 100, 1)],
}


def require_art():
    try:
        from art.attacks.evasion import PixelAttack, ThresholdAttack
        from art.estimators.classification import PyTorchClassifier
    except ImportError as err:
        raise SystemExit(f"bench_blackbox_vs_art.py needs ART (benchmark-only extra, {err}): {ART_PIP}") from None
    return PixelAttack, ThresholdAttack, PyTorchClassifier


def model_spec(arch):
    """Notebook 01's quick-profile spec of the undefended full model, seed 0."""
    train = dict(epochs=60, batch_size=64, lr=2e-3, optimizer="adam", weight_decay=0.0, schedule="cosine",
                 loss="margin" if arch == "capsnet" else "ce", val_fraction=0.1, patience=5)
    return {"data": {"name": "digits", "n_train": None, "exclude_class": None},
            "model": {"name": arch, **({"primary_types": 4, "class_dim": 8} if arch == "capsnet" else {})},
            "train": train, "seed": 0}


def art_classifier(model, PyTorchClassifier, batch):
    clf = PyTorchClassifier(nn.Sequential(model, nn.Softmax(dim=1)).eval(), loss=nn.CrossEntropyLoss(),
                            input_shape=(1, 8, 8), nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    plain = clf.predict
    clf.predict = lambda x, batch_size=batch, **kw: plain(x, batch_size=batch_size, **kw)
    return clf


def check_norms(x_adv, x, attack, th, who):
    d = (x_adv - x).abs()
    if attack == "pixel":
        worst = int((d.flatten(2).amax(1) > 1e-6).sum(1).max())
        ok = worst <= th
    else:
        worst = float(d.flatten(1).amax(1).max()) * 255
        ok = worst <= TH + 1e-3
    if not ok:
        warnings.warn(f"{who} {attack}: perturbation {worst} exceeds the budget {th}")


def run_ours(model, x, y, attack, th, budget, batched):
    pop, gens, polish = budget
    if attack == "pixel":
        return pixel_attack(model, x, y, th, popsize=pop, max_iter=gens, seed=0, batch_images=batched)
    return threshold_attack(model, x, y, TH / 255, popsize=pop, max_iter=gens, polish_passes=polish, seed=0,
                            batch_images=batched)


def fmt_budget(budget):
    pop, gens, polish = budget
    return f"{pop}×{gens}" + (f" + {polish} vertex pass" if polish else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--art-images", type=int, default=10, help="images attacked by ART (slow) and by ours")
    p.add_argument("--art-iter", type=int, default=30, help="ART pixel attack: DE generations (population ≈ 400)")
    p.add_argument("--art-cma-iter", type=int, default=60, help="ART threshold attack: CMA-ES iterations")
    p.add_argument("--images", type=int, default=64, help="images for ours' last table")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--art-batch", type=int, default=4096, help="ART predict batch size (ART default 128)")
    a = p.parse_args()
    PixelAttack, ThresholdAttack, PyTorchClassifier = require_art()
    import art

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="cma")  # ART's CMA path is unused; silence its import noise
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, ART {art.__version__}")

    ds = load_dataset("digits")
    x_all = torch.round(ds.x_test * 255) / 255  # the 8-bit grid ART assumes
    models = {arch: trained_model(model_spec(arch), device="cpu") for arch in a.archs}
    correct = torch.ones(len(x_all), dtype=torch.bool)
    for m in models.values():
        correct &= predict(m, x_all).argmax(1) == ds.y_test
    pool = torch.nonzero(correct).flatten()
    pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))]
    x_big, y_big = x_all[pool[:a.images]], ds.y_test[pool[:a.images]]
    x, y = x_big[:a.art_images], y_big[:a.art_images]
    print(f"{len(pool)} test images classified correctly by every model; ART and ours on the first "
          f"{len(x)}, ours also on {len(x_big)}")

    rows, eq_rows, big_rows = [], [], []
    attacks = [("pixel", 1), ("pixel", 2), ("threshold", TH)]
    for arch, model in models.items():
        clf = art_classifier(model, PyTorchClassifier, a.art_batch)
        for attack, th in attacks:
            name = f"pixel@{th}" if attack == "pixel" else f"threshold@{TH}/255"
            cls = PixelAttack if attack == "pixel" else ThresholdAttack
            np.random.seed(0)  # ART's DE (and CMA-ES's default seed) draw from numpy's global generator
            es, iters = (1, a.art_iter) if attack == "pixel" else (0, a.art_cma_iter)  # ART's own defaults
            art_attack = cls(clf, th=th, es=es, max_iter=iters, targeted=False, verbose=False)
            t0 = time.perf_counter()
            x_art = torch.as_tensor(art_attack.generate(x.numpy(), y=y.numpy()))
            t_art = time.perf_counter() - t0
            check_norms(x_art, x, attack, th, "ART")
            s_art = float((predict(model, x_art).argmax(1) != y).float().mean())
            if attack == "pixel":  # ART's DE population: (400 // dim) × dim, dim = 3 genes per pixel
                art_budget = (400 // (3 * th) * 3 * th, iters)
            else:  # CMA-ES's default population 4 + floor(3 ln 64) = 16
                art_budget = (4 + int(3 * np.log(64)), iters)

            art_ok = predict(model, x_art).argmax(1) != y
            chosen = LADDER[attack][-1]
            for budget in LADDER[attack]:  # smallest budget that fools every image ART fooled
                if not bool((art_ok & ~run_ours(model, x, y, attack, th, budget, True).success).any()):
                    chosen = budget
                    break
            t_b, res = best_time(lambda: run_ours(model, x, y, attack, th, chosen, True), a.repeats)
            t_l, _ = best_time(lambda: run_ours(model, x, y, attack, th, chosen, False), a.repeats)
            check_norms(res.x_adv, x, attack, th, "ours")
            s_ours = float(res.success.float().mean())
            art_name = f"{'DE' if es else 'CMA-ES'} {art_budget[0]}×{art_budget[1]}"
            rows.append((arch, name, art_name, s_art, len(x) / t_art, fmt_budget(chosen), s_ours,
                         len(x) / t_b, len(x) / t_l, t_art / t_b, t_art / t_l))
            same = (*art_budget, 0)
            t_e, res_e = best_time(lambda: run_ours(model, x, y, attack, th, same, True), 1)
            check_norms(res_e.x_adv, x, attack, th, "ours")
            eq_rows.append((arch, name, fmt_budget(same), s_art, float(res_e.success.float().mean()),
                            len(x) / t_art, len(x) / t_e, t_art / t_e))
            tb_big, rb = best_time(lambda: run_ours(model, x_big, y_big, attack, th, chosen, True), 1)
            big_rows.append((arch, name, fmt_budget(chosen), float(rb.success.float().mean()), len(x_big) / tb_big))
            print(f"  done {arch} {name}", flush=True)

    print(f"\nEqual success: ours vs ART on the same {len(x)} images (our budget: the smallest on the ladder "
          f"that fools every image ART fooled; budget = population × generations, max queries per image; "
          f"ratio = ours / ART images/s)\n")
    print("| model | attack | ART budget | ART success | ART img/s | our budget | our success | "
          "ours batched img/s | ours per-image img/s | ratio batched | ratio per-image |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratios = f"{r[9]:.0f}× | {r[10]:.0f}×" if r[3] > 0 else "— | — (ART fooled none: vacuous)"
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]} | {r[6]:.2f} | {r[7]:.1f} | "
              f"{r[8]:.1f} | {ratios} |")
    print(f"\nEqual budget: ours (DE, batched) at ART's population × generations on the same {len(x)} images\n")
    print("| model | attack | budget | ART success | our success | ART img/s | ours batched img/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in eq_rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.1f} | {r[7]:.0f}× |")
    print(f"\nOurs at the equal-success budget on {len(x_big)} images\n")
    print("| model | attack | our budget | success | batched img/s |")
    print("|---|---|---|---|---|")
    for r in big_rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.1f} |")


if __name__ == "__main__":
    main()
