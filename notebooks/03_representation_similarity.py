# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 — Robust vs standard representations through CKA
#
# Cianfarani, Bhagoji, Sehwag, Zhao, Zheng & Mittal, *Understanding Robust Learning through the Lens of
# Representation Similarities* (NeurIPS 2022; code `inspire-group/robust_representation_similarity`).
#
# **The claims** (abstract and OpenReview summary): robust representations are *less specialised* — the
# block structure of standard networks (groups of consecutive layers with near-identical representations)
# fades and even distant layers stay similar; a standard and a robust network trained in the same set-up
# are dissimilar beyond the first layers; the early layers of a robust network barely change under
# adversarial inputs; robust overfitting acts mostly on the deeper layers; networks robust to different
# threat models (L∞, L2) resemble each other.
#
# **The metric.** Linear CKA with the *unbiased* HSIC₁ estimator accumulated over shuffled minibatches
# (Nguyen, Raghu & Kornblith 2021), exactly the authors' default: for every layer pair,
# CKA = mean HSIC₁(K, L) / √(mean HSIC₁(K, K) · mean HSIC₁(L, L)), 3 reshuffled passes, both models fed
# identical batches, model in eval mode. It lives in `reprobust.metrics.cka` (Gram-space, all layer pairs
# in one float64 matrix product; hooks clone outputs so in-place ReLUs and reused modules cannot corrupt
# the features — the authors' own code records post-ReLU values for its BatchNorm layers).
#
# **Layers.** Following the authors' `--model0_layers all`, every Conv2d, BatchNorm2d, ReLU, pooling and
# Linear module in *execution* order, each flattened per example (no pooling of conv maps).
#
# **At this scale.** The paper uses WRN-28-4 on CIFAR-10 (80 hooked layers) and ImageNet subsets. The quick
# profile uses scikit-learn's 8×8 digits and a 5-block CNN with BatchNorm (17 hooked layers), PGD
# adversarial training with 3 steps, robust accuracy from PGD-50 with restarts (PGD-10 beside it), five
# independently trained networks (seeds) per training regime; every claim row is computed from one number
# per network. Numbers are a check of the direction of a claim, not of its size. The paper's body (numbers, the exact robust-overfitting protocol,
# the L2 budget) was not available; the choices made where it is silent are listed in the next cell.

# %% tags=["parameters"]
profile = "quick"      # smoke | quick | full
seed = 0
device = "auto"
data_dir = None
cache_dir = None
output_dir = None
# notebook-specific parameters: None means "the profile's default"
n_seeds = None             # independently trained networks per training regime (replicates)
epochs = None              # training epochs of the main models
n_train = None             # class-stratified training subset of the main models (None: the whole split)
n_test = None              # test images for accuracies and CKA
eps_linf = None            # L∞ budget (training and evaluation), pixels in [0, 1]
eps_l2 = None              # L2 budget (training and evaluation)
train_steps = None         # PGD steps during adversarial training
attack_bn = None           # BatchNorm mode while crafting training attacks: "eval" or "train"
eval_steps = None          # PGD steps of the adversarial features and of the "PGD-k" column
robust_steps = None        # PGD steps of the reported robust accuracy
robust_restarts = None     # random restarts of the reported robust accuracy
n_robust = None            # test images of the reported robust accuracy
cka_batch_size = None      # minibatch size of the CKA estimator (at least 4)
cka_passes = None          # reshuffled passes over the test set
diag_batch_sizes = None    # batch sizes of the estimator diagnostics
overfit_n_train = None     # small training set of the robust-overfitting runs
overfit_epochs = None
overfit_width = None       # width multiplier of the robust-overfitting network (capacity to memorise)
overfit_train_steps = None  # PGD steps of the robust-overfitting training (Rice et al.: 10)
overfit_eval_every = None  # evaluate / compare every k-th checkpoint
widths = None              # width multipliers of the width sweep
width_n_train = None       # training subset of the width sweep
width_epochs = None
overrides = None           # dict of any of the profile's settings (tests use it to shrink the full profile)

# %% [markdown]
# **Defaults where the paper is silent** (all overridable above):
#
# * L∞ budget ε = 0.2 and L2 budget ε = 1.0 on digits in [0, 1] (the authors' CIFAR config uses
#   ε∞ = 8/255 and ε₂ = 1.0; 8×8 digits need a larger L∞ budget before a standard model breaks). Training
#   PGD: 3 steps (quick) of 2.5·ε/3 with a random start, attacks crafted with BatchNorm in **eval** mode
#   (`attack_bn`; Madry et al. and Rice et al. craft in train mode — set `attack_bn="train"` to match).
# * Reported robust accuracy (main models): PGD-50 with 2 random restarts on 100 test images (full: 5
#   restarts, 1,000 images); the PGD-10
#   number (what the features of experiment 3 use) is shown beside it because it overstates robustness,
#   and so is the worst case per image over PGD-10, APGD-CE and APGD-T (`robust_accuracy`, "fast"
#   ensemble, Croce & Hein 2020), the number reviewers accept; `attack_diagnostics` checks the attacks
#   on one robust network (robust accuracy 0 at a large ε, more steps/restarts, transfer, Square).
# * Adversarial features (experiment 3): each model attacks *itself* with L∞ PGD-10 (the authors' default);
#   the control is random-sign noise of the same L∞ norm ε (x + ε·s, s ∈ {±1} uniform, clipped).
# * CKA minibatches of 128 test images, 3 passes (the authors: 1,024 and 3 passes on 10k images; full).
# * Robust overfitting (Rice, Wong & Kolter 2020): L∞ PGD-7 adversarial training of a ×2-wide CNN on 100
#   images (batch 16), one ÷10 learning-rate decay at 40% then a long phase; checkpoints evaluated every few epochs;
#   "best" is chosen on a validation half of the test set and the drop best → last is measured on the other
#   half (McNemar per seed). Matched-drift control: standard training with the same schedule and epochs.
# * Width sweep: standard and L∞ training at width ×1, ×2 on a 300-image subset (full: WRN-28-k,
#   k = 1, 2, 4, 8, 10, on the whole training set).
# * Full profile: the paper's WRN-28-4 on CIFAR-10 with crop + flip, ε∞ = 8/255 / ε₂ = 1.0, PGD-10 training,
#   PGD-20 features, CKA batches of 1,024 × 3 passes over the 10k test images (settings and sources in
#   `reprobust.plan.FULL_SETTINGS`).
# * Block structure: (i) *stage contrast*, mean CKA within a resolution stage minus between stages;
#   (ii) *block contrast* with blocks found from the CKA matrix itself (the exact best segmentation into runs
#   of consecutive layers more similar than the network's average pair, `cka.contiguous_blocks`);
#   (iii) Nguyen et al.'s criterion: layers in runs that share a dominant first principal component
#   (explained variance ≥ 0.5, |cos| of the PC scores ≥ 0.9), reported as the fraction of layers in such blocks.

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from reprobust import stats
from reprobust.attacks import pgd
from reprobust.claims import ClaimsTable
from reprobust.robustness import RobustAccuracy, attack_diagnostics, robust_accuracy
from reprobust.context import setup_notebook
from reprobust.data import load_dataset
from reprobust.dispatch import train_grid
from reprobust.features import capture_activations
from reprobust.metrics import cka as C
from reprobust.plan import full_settings
from reprobust.plotting import heatmap
from reprobust.train import load_state, predict, trained_model

T0 = time.perf_counter()
phase = {}
ctx = setup_notebook("03_representation_similarity", profile=profile, seed=seed, device=device,
                     data_dir=data_dir, cache_dir=cache_dir, output_dir=output_dir)
S = ctx.settings({
    # `model` is the registry spec of every network; `width_option` names its option that the width
    # multipliers below set (`width` for the CNN, `widen` for the WRN); `width` is the main models' value.
    "smoke": dict(dataset="digits", model=dict(name="cnn", channels=(8, 8, 16, 16, 32), strides="11212",
                                               batchnorm=True), width_option="width", width=1, train={"lr": 0.05},
                  n_seeds=2, epochs=2, n_train=300, n_test=120,
                  eps_linf=0.2, eps_l2=1.0, train_steps=2, attack_bn="eval", eval_steps=3, robust_steps=5,
                  robust_restarts=1, n_robust=60, cka_batch_size=60, cka_passes=1, diag_batch_sizes=(16, 60),
                  overfit_n_train=60, overfit_epochs=4, overfit_width=1, overfit_train_steps=2,
                  overfit_eval_every=2, overfit_batch_size=16, widths=(1, 2), width_n_train=150, width_epochs=2),
    "quick": dict(dataset="digits", model=dict(name="cnn", channels=(16, 16, 32, 32, 64), strides="11212",
                                               batchnorm=True), width_option="width", width=1, train={"lr": 0.05},
                  n_seeds=5, epochs=10, n_train=None, n_test=None,
                  eps_linf=0.2, eps_l2=1.0, train_steps=3, attack_bn="eval", eval_steps=10, robust_steps=50,
                  robust_restarts=2, n_robust=100, cka_batch_size=128, cka_passes=3,
                  diag_batch_sizes=(16, 32, 64, 128, 256), overfit_n_train=100, overfit_epochs=40,
                  overfit_width=2, overfit_train_steps=7, overfit_eval_every=5, overfit_batch_size=16, widths=(1, 2),
                  width_n_train=300, width_epochs=15),
    # full: the paper's set-up, one source of truth with `--plan` (reprobust.plan.FULL_SETTINGS, each
    # choice commented there with its source in shared/papers/paperC_cka.md)
    "full": full_settings("03_representation_similarity"),
}, overrides=overrides, n_seeds=n_seeds, epochs=epochs, n_train=n_train, n_test=n_test, eps_linf=eps_linf, eps_l2=eps_l2,
   train_steps=train_steps, attack_bn=attack_bn, eval_steps=eval_steps, robust_steps=robust_steps,
   robust_restarts=robust_restarts, n_robust=n_robust, cka_batch_size=cka_batch_size, cka_passes=cka_passes,
   diag_batch_sizes=diag_batch_sizes, overfit_n_train=overfit_n_train, overfit_epochs=overfit_epochs,
   overfit_width=overfit_width, overfit_train_steps=overfit_train_steps, overfit_eval_every=overfit_eval_every,
   widths=widths, width_n_train=width_n_train, width_epochs=width_epochs)
torch.set_num_threads(min(2, torch.get_num_threads()))
ds = load_dataset(S["dataset"], data_dir=data_dir, n_test=S["n_test"], subset_seed=seed)
x_test, y_test = ds.x_test, ds.y_test
SEEDS = [seed + i for i in range(S["n_seeds"])]
print(f"{S['dataset']}: {len(ds.x_train)} train / {len(x_test)} test images; profile {profile}; seeds {SEEDS}")


def threat_config(threat, steps=None):
    if threat == "standard":
        return None
    cfg = {"attack": "pgd", "norm": threat, "eps": S["eps_linf"] if threat == "linf" else S["eps_l2"],
           "steps": steps or S["train_steps"]}
    if S["attack_bn"] != "eval":   # the default is left out of the spec so that existing cache keys still match
        cfg["attack_bn"] = S["attack_bn"]
    return cfg


def model_spec(threat, model_seed, *, n=S["n_train"], n_epochs=S["epochs"], width=None, schedule="cosine",
               batch_size=128, steps=None):
    """The full training configuration of one model (it is also its cache key).

    ``width`` sets the model option ``S["width_option"]`` (default: ``S["width"]``, the main models')."""
    data = {"name": S["dataset"], "n_train": n, "subset_seed": seed}
    if data_dir is not None:  # forwarded to training; absent from the key when unset (digits are bundled)
        data["data_dir"] = str(data_dir)
    model = {**S["model"], S["width_option"]: S["width"] if width is None else width}
    return {"data": data, "model": model,
            "train": {"epochs": n_epochs, "batch_size": batch_size, "schedule": schedule, **S["train"],
                      "adversarial": threat_config(threat, steps)},
            "seed": model_seed}


def correct_under(spec, model, x, y, tag, *, norm="linf", steps=None, restarts=1, n=None):
    """Per-image correctness (clean and under PGD) and the adversarial images, cached by configuration."""
    steps = steps or S["eval_steps"]
    eps = S["eps_linf"] if norm == "linf" else S["eps_l2"]
    x, y = (x, y) if n is None else (x[:n], y[:n])
    cfg = {"spec": spec, "on": tag, "n": len(x), "norm": norm, "eps": eps, "steps": steps, "restarts": restarts,
           "seed": seed}

    def compute():
        adv = pgd(model, x, y, eps=eps, norm=norm, steps=steps, restarts=restarts, seed=seed)
        return {"clean": (predict(model, x).argmax(1) == y).numpy(),
                "robust": (predict(model, adv.x_adv).argmax(1) == y).numpy(), "x_adv": adv.x_adv}

    return ctx.cache.get_or_compute("correct03", cfg, compute)


def cka_matrix(spec_a, model_a, spec_b=None, model_b=None, x_b=None, x_b_key=None, layers=None, estimator="unbiased",
               batch_size=None):
    """Layer × layer minibatch CKA on the test set (cached); ``x_b`` (named by ``x_b_key``) feeds model B."""
    bs = batch_size or S["cka_batch_size"]
    cfg = {"a": spec_a, "b": spec_b, "x_b": x_b_key, "n_test": len(x_test), "bs": bs, "passes": S["cka_passes"],
           "seed": seed, "layers": layers, "estimator": estimator}

    def compute():
        return C.layer_cka(model_a, model_b, x=x_test, x_b=x_b, layers_a=layers, layers_b=layers, batch_size=bs,
                           passes=S["cka_passes"], seed=seed, device=ctx.device, estimator=estimator)

    return np.asarray(ctx.cache.get_or_compute("cka03", cfg, compute))


def first_pc(spec, model):
    """Per-layer first-PC explained variance and PC scores on (up to) 512 test images (cached)."""
    cfg = {"spec": spec, "n_test": len(x_test), "seed": seed, "layers": layers}
    ev, sc = ctx.cache.get_or_compute("firstpc03b", cfg, lambda: C.layer_first_pc_components(
        model, x_test, layers, max_examples=512, seed=seed, device=ctx.device))
    return np.asarray(ev), np.asarray(sc)


def random_sign_noise(x, eps, noise_seed):
    """x + ε·s with s uniform in {−1, +1} per pixel, clipped to [0, 1]: the equal-L∞-norm control."""
    g = torch.Generator().manual_seed(noise_seed)
    s = torch.randint(0, 2, x.shape, generator=g).to(x.dtype) * 2 - 1
    return (x + eps * s).clamp(0, 1)


# %% [markdown]
# ## Models
#
# `n_seeds` networks per regime — standard, L∞-robust, L2-robust — trained together in one grid. Every
# model is listed with its clean accuracy, PGD-10 accuracy and the reported robust accuracy (PGD-50 with
# restarts), so that "robust" is seen to be robust and "trained" to be trained.

# %%
t = time.perf_counter()
REGIMES = ("standard", "linf", "l2")
specs = {(r, s): model_spec(r, s) for r in REGIMES for s in SEEDS}
models = dict(zip(specs, train_grid(list(specs.values()), cache=ctx.cache, device=ctx.device)))
phase["train main models"] = time.perf_counter() - t

layers = C.execution_order_layers(models["standard", seed], x_test)
short = [n.replace("block", "b").replace(".", "") for n in layers]
L = len(layers)
# resolution stage of each layer: its spatial size (pooling and strided convs start a new stage)
acts = capture_activations(models["standard", seed], x_test[:2], layers)
stage_size = [tuple(acts[n].shape[2:]) if acts[n].dim() == 4 else (1,) for n in layers]
stages = np.unique([str(s) for s in stage_size], return_inverse=True)[1]
stages = np.cumsum(np.r_[0, np.diff(stages) != 0])
print(f"{L} hooked layers in execution order: {', '.join(layers)}; resolution stages {stages.tolist()}")

t = time.perf_counter()
accuracy_rows = []
CLEAN_FLOOR = 0.85   # stated floor: a model below it is flagged as under-trained


def ensemble_accuracy(spec, model, norm):
    """Worst case per image over PGD-10, APGD-CE and APGD-T (``robust_accuracy``, "fast"), cached."""
    eps = S["eps_linf"] if norm == "linf" else S["eps_l2"]
    n = S["n_robust"]
    cfg = {"spec": spec, "n": n, "norm": norm, "eps": eps, "ensemble": "fast", "seed": seed}
    entry = ctx.cache.get_or_compute("ensemble03", cfg, lambda: robust_accuracy(
        model, x_test[:n], y_test[:n], eps=eps, norm=norm, ensemble="fast", seed=seed).to_dict())
    return RobustAccuracy.from_dict(entry)


def report(label, spec, model, regime, model_seed, epochs_trained, strong=True):
    """One accuracy-table row; ``strong`` adds the reported robust accuracy (PGD-50 with restarts)."""
    row = {"model": label, "regime": regime, "seed": model_seed, "epochs": epochs_trained}
    r10 = correct_under(spec, model, x_test, y_test, "test", steps=S["eval_steps"], n=S["n_robust"])
    row["clean"] = float(r10["clean"].mean())
    for norm in ("linf", "l2"):
        eps = S["eps_linf"] if norm == "linf" else S["eps_l2"]
        rk = r10 if norm == "linf" else correct_under(spec, model, x_test, y_test, "test", norm=norm,
                                                       steps=S["eval_steps"], n=S["n_robust"])
        row[f"PGD-{S['eval_steps']} {norm} ε={eps}"] = float(rk["robust"].mean())
        rr = correct_under(spec, model, x_test, y_test, "test", norm=norm, steps=S["robust_steps"],
                           restarts=S["robust_restarts"], n=S["n_robust"]) if strong else None
        row[f"PGD-{S['robust_steps']}×{S['robust_restarts']} {norm} ε={eps}"] = \
            float(rr["robust"].mean()) if strong else float("nan")
        row[f"ensemble {norm} ε={eps}"] = ensemble_accuracy(spec, model, norm).robust if strong else float("nan")
    row["below floor"] = row["clean"] < CLEAN_FLOOR
    accuracy_rows.append(row)
    return row


for (r, s), m in models.items():
    report(f"{r}#{s}", specs[r, s], m, r, s, S["epochs"])


def diagnostics(norm):
    """Attack-strength checks on the first L∞-robust network (transfer from the first standard one)."""
    eps = S["eps_linf"] if norm == "linf" else S["eps_l2"]
    key = ("linf", SEEDS[0])
    cfg = {"spec": specs[key], "reference": specs["standard", SEEDS[0]], "n": S["n_robust"], "norm": norm,
           "eps": eps, "seed": seed}
    n = S["n_robust"]
    return ctx.cache.get_or_compute("diagnostics03", cfg, lambda: attack_diagnostics(
        models[key], x_test[:n], y_test[:n], eps=eps, norm=norm, reference_model=models["standard", SEEDS[0]],
        seed=seed).to_dict("list"))


diag = pd.concat([pd.DataFrame(diagnostics(norm)).assign(norm=norm) for norm in ("linf",)], ignore_index=True)
ctx.save_table(diag, "attack_diagnostics", caption="Attack-strength checks on the first L∞-robust network "
               "(a check fails when the evaluation is suspect, e.g. gradient masking)")
phase["robust accuracy"] = time.perf_counter() - t
display(diag)
pd.DataFrame(accuracy_rows)

# %% [markdown]
# ## 1. Within-model layer × layer CKA: block structure
#
# Rows and columns are the layers of one network (layer 0 bottom-left, one colour scale [0, 1]). The
# paper's claim: the standard network shows blocks of similar consecutive layers; the robust networks show
# high similarity even between distant layers. The mean off-diagonal CKA measures *overall* similarity, not
# blocks, so the block statistics are the stage contrast, the contrast of the blocks found in the matrix
# (outlined in the heatmaps), and Nguyen et al.'s dominant-PC blocks (marked on the first-PC panel).

# %%
t = time.perf_counter()


def block_row(matrix, ev, sc):
    found = C.contiguous_blocks(matrix)
    pc_blocks = C.dominant_pc_blocks(ev, sc)
    return {"mean off-diagonal": C.mean_off_diagonal(matrix), "long-range": C.long_range_cka(matrix),
            "stage contrast": C.block_contrast(matrix, stages), "found-block contrast": C.block_contrast(matrix, found),
            "found blocks": int(found.max() + 1), "PC-block layer fraction": float((pc_blocks >= 0).mean()),
            "PC blocks": int(pc_blocks.max() + 1), "mean first-PC variance": float(np.mean(ev))}, found, pc_blocks


within, pcs, found_blocks, pc_block_labels, block_rows = {}, {}, {}, {}, []
for key, m in models.items():
    within[key] = cka_matrix(specs[key], m, layers=layers)
    pcs[key] = first_pc(specs[key], m)
    row, found_blocks[key], pc_block_labels[key] = block_row(within[key], *pcs[key])
    block_rows.append({"regime": key[0], "seed": key[1], **row})
blocks = pd.DataFrame(block_rows)
ctx.save_table(blocks, "block_structure", caption="Block-structure statistics per network (stage contrast = mean "
               "CKA within a resolution stage − between stages; found blocks = exact contiguous segmentation of the "
               "CKA matrix; PC blocks = runs of layers sharing a dominant first PC, Nguyen et al. 2021)")


def outline_blocks(ax, labels, color="cyan"):
    for b in np.unique(labels[labels >= 0]):
        idx = np.flatnonzero(labels == b)
        ax.add_patch(plt.Rectangle((idx[0] - 0.5, idx[0] - 0.5), len(idx), len(idx), fill=False, ec=color, lw=1.2))


titles = {"standard": "standard", "linf": f"L∞-robust (ε={S['eps_linf']})", "l2": f"L2-robust (ε={S['eps_l2']})"}
fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), constrained_layout=True)
for ax, r in zip(axes, REGIMES):
    im = heatmap(ax, within[r, seed], labels_x=short, labels_y=short, title=f"{titles[r]}, seed {seed}")
    outline_blocks(ax, found_blocks[r, seed])
fig.colorbar(im, ax=axes, shrink=0.8, label="minibatch CKA (unbiased HSIC)")
ctx.save_figure(fig, "within_model_cka", caption="Layer × layer CKA within a standard, an L∞- and an L2-robust CNN; "
                "cyan squares: the blocks found by contiguous segmentation")
plt.show()

fig, axes = plt.subplots(1, 2, figsize=(13, 3.4), constrained_layout=True)
for r in REGIMES:
    ev = np.array([pcs[r, s][0] for s in SEEDS])
    axes[0].plot(ev.mean(0), marker="o", ms=3, label=f"{titles[r]} (mean of {len(SEEDS)} seeds)")
    lab = pc_block_labels[r, seed]
    axes[0].scatter(np.flatnonzero(lab >= 0), ev[0][lab >= 0], s=40, facecolors="none", edgecolors="k")
axes[0].axhline(0.5, color="grey", ls=":")
axes[0].set_xticks(range(L), short, rotation=90)
axes[0].set_ylabel("first-PC explained variance")
axes[0].set_title(f"circles: layers in dominant-PC blocks (seed {seed})")
axes[0].legend(fontsize=7)
stat_cols = ["stage contrast", "found-block contrast", "PC-block layer fraction", "mean off-diagonal"]
for j, col in enumerate(stat_cols):
    for i, r in enumerate(REGIMES):
        v = blocks.loc[blocks.regime == r, col].to_numpy()
        axes[1].scatter(np.full(len(v), j + (i - 1) * 0.22), v, s=14, color=f"C{i}", label=titles[r] if j == 0 else None)
axes[1].set_xticks(range(len(stat_cols)), stat_cols, rotation=15)
axes[1].set_title("block statistics, one dot per network")
axes[1].legend(fontsize=7)
ctx.save_figure(fig, "first_pc_variance", caption="First-PC explained variance per layer, and the block statistics "
                "of every network")
plt.show()
phase["within-model CKA"] = time.perf_counter() - t
blocks.groupby("regime").mean(numeric_only=True)

# %% [markdown]
# ## 2. Cross-model CKA: standard vs robust, with seed controls
#
# Seed s of one regime against seed s+1 (cyclically) of the other, and the same for two networks of one
# regime (the seed controls), so every pair differs in initialisation and data order and only the
# standard-vs-robust pairs also differ in training.

# %%
t = time.perf_counter()
nxt = {s: SEEDS[(i + 1) % len(SEEDS)] for i, s in enumerate(SEEDS)}


def cross(ra, rb):
    return np.array([np.diag(cka_matrix(specs[ra, s], models[ra, s], specs[rb, nxt[s]], models[rb, nxt[s]],
                                        layers=layers)) for s in SEEDS])


cross_diag = {"standard vs L∞-robust": cross("standard", "linf"), "standard seeds": cross("standard", "standard"),
              "L∞-robust seeds": cross("linf", "linf"), "L2-robust seeds": cross("l2", "l2"),
              "L∞ vs L2-robust": cross("linf", "l2"), "standard vs L2-robust": cross("standard", "l2")}
m0 = cka_matrix(specs["standard", seed], models["standard", seed], specs["linf", nxt[seed]],
                models["linf", nxt[seed]], layers=layers)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
im = heatmap(axes[0], m0, labels_x=short, labels_y=short, title=f"standard #{seed} (rows) vs L∞-robust #{nxt[seed]}")
fig.colorbar(im, ax=axes[0], shrink=0.8, label="CKA")
for name in ("standard vs L∞-robust", "standard seeds", "L∞-robust seeds"):
    d = cross_diag[name]
    axes[1].errorbar(range(L), d.mean(0), yerr=d.std(0, ddof=1) if len(d) > 1 else None, marker="o", ms=3,
                     capsize=2, label=name)
axes[1].set_xticks(range(L), short, rotation=90)
axes[1].set_ylim(0, 1.02)
axes[1].set_title(f"same-layer CKA, mean ± sd over {len(SEEDS)} pairs")
axes[1].legend()
ctx.save_figure(fig, "cross_model_cka", caption="Cross-model CKA and its diagonal against seed controls")
plt.show()
phase["cross-model CKA"] = time.perf_counter() - t

# %% [markdown]
# ## 3. Clean vs adversarial inputs, against equal-norm random noise
#
# Per layer, CKA(f(x), f(x')) where x' is the model's own L∞ PGD-10 adversarial image, and the control
# where x' is x plus random-sign noise of the same L∞ norm. Random perturbations alone lower CKA; only the
# difference adversarial − noise is specific to the attack. The claim is tested as the interaction depth ×
# training of that difference.

# %%
t = time.perf_counter()
x_noise = random_sign_noise(x_test, S["eps_linf"], seed)
adv_diag, noise_diag = {}, {}
for r in REGIMES:
    for s in SEEDS:
        x_adv = correct_under(specs[r, s], models[r, s], x_test, y_test, "test")["x_adv"]
        adv_diag[r, s] = np.diag(cka_matrix(specs[r, s], models[r, s], specs[r, s], models[r, s], x_b=x_adv,
                                            x_b_key=["pgd", S["eps_linf"], S["eval_steps"]], layers=layers))
        noise_diag[r, s] = np.diag(cka_matrix(specs[r, s], models[r, s], specs[r, s], models[r, s], x_b=x_noise,
                                              x_b_key=["sign noise", S["eps_linf"], seed], layers=layers))
k3 = max(1, round(L / 3))
early, late = slice(0, k3), slice(L - k3, L)
fig, axes = plt.subplots(1, 2, figsize=(13, 3.4), constrained_layout=True)
for i, r in enumerate(REGIMES):
    a = np.array([adv_diag[r, s] for s in SEEDS])
    z = np.array([noise_diag[r, s] for s in SEEDS])
    axes[0].plot(a.mean(0), marker="o", ms=3, color=f"C{i}", label=f"{titles[r]}: adversarial")
    axes[0].plot(z.mean(0), ls="--", color=f"C{i}", label=f"{titles[r]}: random-sign noise")
    axes[1].plot((a - z).mean(0), marker="o", ms=3, color=f"C{i}", label=titles[r])
for ax in axes:
    ax.set_xticks(range(L), short, rotation=90)
    ax.axvspan(-0.5, k3 - 0.5, color="grey", alpha=0.1)
    ax.axvspan(L - k3 - 0.5, L - 0.5, color="grey", alpha=0.1)
axes[0].set_ylabel("CKA(f(x), f(x'))")
axes[0].legend(fontsize=7)
axes[1].set_ylabel("adversarial − noise")
axes[1].set_title("attack-specific change (shaded: first and last third)")
ctx.save_figure(fig, "clean_vs_adversarial", caption="Per-layer CKA between clean and adversarial features, and "
                "between clean and equal-norm noisy features (mean over seeds)")
plt.show()
phase["clean vs adversarial"] = time.perf_counter() - t

# %% [markdown]
# ## 4. Robust overfitting
#
# Rice et al.'s set-up at this scale: L∞ PGD adversarial training (more steps than the main models) of a wider
# network on a small training set, one learning-rate decay then a long phase, a checkpoint every epoch. The
# test set is split in two: a validation half picks the best checkpoint, the other half measures the drop
# best → last (McNemar per seed). The matched-drift control is standard training with the same schedule:
# any training drifts, so robust overfitting "acting on deeper layers" has to show as a *steeper* depth
# profile of 1 − CKA(best, last) than the same epochs of standard training.

# %%
t = time.perf_counter()
perm = np.random.default_rng(seed).permutation(len(x_test))
val_idx, hold_idx = np.sort(perm[: len(perm) // 2]), np.sort(perm[len(perm) // 2:])
ds_of = load_dataset(S["dataset"], data_dir=data_dir, n_train=S["overfit_n_train"], subset_seed=seed)
of_runs = {}
for r in ("linf", "standard"):
    for s in SEEDS:
        sp = model_spec(r, s, n=S["overfit_n_train"], n_epochs=S["overfit_epochs"], width=S["overfit_width"],
                        schedule="one_decay", batch_size=S["overfit_batch_size"], steps=S["overfit_train_steps"])
        of_runs[r, s] = (sp, trained_model(sp, cache=ctx.cache, device=ctx.device, checkpoints=True)[1])
n_ckpt = len(of_runs["linf", seed][1])
eval_epochs = sorted(set(range(S["overfit_eval_every"] - 1, n_ckpt, S["overfit_eval_every"])) | {n_ckpt - 1})
curve_rows, hold_correct = [], {}
for s in SEEDS:   # the standard runs only serve as the matched-drift control: no attack curves needed
    r, (sp, states) = "linf", of_runs["linf", s]
    for e in eval_epochs:
        m = load_state(sp, states[e], device=ctx.device)
        spe = {**sp, "checkpoint": e}
        te = correct_under(spe, m, x_test, y_test, "test")
        tr = correct_under(spe, m, ds_of.x_train, ds_of.y_train, "train")
        hold_correct[r, s, e] = te["robust"][hold_idx]
        curve_rows.append({"regime": r, "seed": s, "epoch": e + 1, "train clean": tr["clean"].mean(),
                           "train PGD": tr["robust"].mean(), "val clean": te["clean"][val_idx].mean(),
                           "val PGD": te["robust"][val_idx].mean(), "held-out PGD": te["robust"][hold_idx].mean(),
                           "held-out clean": te["clean"][hold_idx].mean()})
curves = pd.DataFrame(curve_rows)
ctx.save_table(curves, "robust_overfitting_curves", caption="Robust-overfitting runs: train / validation / held-out "
               f"accuracy (clean and L∞ PGD-{S['eval_steps']}) per evaluated epoch and seed")
of_rows, drift, drift_ctrl = [], [], []
for s in SEEDS:
    c = curves[(curves.regime == "linf") & (curves.seed == s)].reset_index(drop=True)
    best_e = int(c.loc[c["val PGD"].to_numpy().argmax(), "epoch"]) - 1   # first maximum: the earliest best
    last_e = n_ckpt - 1
    b, cc, p = stats.mcnemar(hold_correct["linf", s, best_e], hold_correct["linf", s, last_e])
    of_rows.append({"seed": s, "best epoch (validation)": best_e + 1, "held-out PGD best": c.loc[c.epoch == best_e + 1, "held-out PGD"].item(),
                    "held-out PGD last": c["held-out PGD"].iloc[-1], "train PGD last": c["train PGD"].iloc[-1],
                    "only best right": b, "only last right": cc, "McNemar p": p})
    profiles = []
    for r in ("linf", "standard"):
        sp, states = of_runs[r, s]
        mb, ml = load_state(sp, states[best_e], device=ctx.device), load_state(sp, states[last_e], device=ctx.device)
        profiles.append(1 - np.diag(cka_matrix({**sp, "checkpoint": best_e}, mb, {**sp, "checkpoint": last_e}, ml,
                                               layers=layers)))
    drift.append(profiles[0])
    drift_ctrl.append(profiles[1])
overfit = pd.DataFrame(of_rows)
drift, drift_ctrl = np.array(drift), np.array(drift_ctrl)
ctx.save_table(overfit, "robust_overfitting", caption="Best (by validation PGD accuracy) vs last checkpoint per seed, "
               "held-out half of the test set; McNemar exact test on the held-out images")
drop = (overfit["held-out PGD best"] - overfit["held-out PGD last"]).to_numpy()
drop_est = stats.paired(overfit["held-out PGD best"].to_numpy(), overfit["held-out PGD last"].to_numpy()) \
    if len(SEEDS) > 1 else None
overfitting_happened = bool(drop_est is not None and drop_est.low > 0 and drop_est.p_value < 0.05)
print(f"held-out PGD drop best → last per seed {np.round(drop, 3).tolist()}; train PGD at the end "
      f"{overfit['train PGD last'].round(3).tolist()}; robust overfitting {'occurred' if overfitting_happened else 'did not occur (not significant across seeds)'}")

fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), constrained_layout=True)
for col, color in (("train PGD", "C0"), ("val PGD", "C1"), ("held-out PGD", "C2"), ("held-out clean", "C3")):
    g = curves[curves.regime == "linf"].groupby("epoch")[col]
    axes[0].plot(g.mean().index, g.mean(), marker="o", ms=3, color=color, label=f"{col} (mean)")
    for s in SEEDS:
        c = curves[(curves.regime == "linf") & (curves.seed == s)]
        axes[0].plot(c.epoch, c[col], color=color, alpha=0.2, lw=0.8)
axes[0].axvline(round(0.4 * S["overfit_epochs"]) + 0.5, color="grey", ls=":", label="lr decay")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("accuracy")
axes[0].set_title("L∞ adversarial training on a small set")
axes[0].legend(fontsize=7)
for d, name in ((drift, "L∞ adversarial"), (drift_ctrl, "standard (matched drift)")):
    axes[1].errorbar(range(L), d.mean(0), yerr=d.std(0, ddof=1) if len(d) > 1 else None, marker="o", ms=3,
                     capsize=2, label=name)
axes[1].set_xticks(range(L), short, rotation=90)
axes[1].set_ylabel("1 − CKA(best, last)")
axes[1].set_title("drift best → last per layer")
axes[1].legend(fontsize=7)
rel = lambda d: d / d.mean(1, keepdims=True)   # the depth profile's shape, free of the drift's size
for d, name in ((drift, "L∞ adversarial"), (drift_ctrl, "standard")):
    axes[2].plot(rel(d).mean(0), marker="o", ms=3, label=name)
axes[2].set_xticks(range(L), short, rotation=90)
axes[2].set_title("drift / its mean over layers")
axes[2].legend(fontsize=7)
ctx.save_figure(fig, "robust_overfitting", caption="Robust-overfitting runs (thin: seeds) and the per-layer drift "
                "from the best to the last checkpoint, against standard training of the same length")
plt.show()
phase["robust overfitting"] = time.perf_counter() - t
overfit

# %% [markdown]
# ## 5. Threat models, against seed controls
#
# Same-layer CKA between an L∞- and an L2-robust network (different seeds), against two L∞-robust networks of
# different seeds (the seed control) and against a standard vs an L∞-robust network.

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.2))
for name in ("L∞ vs L2-robust", "L∞-robust seeds", "L2-robust seeds", "standard vs L∞-robust"):
    d = cross_diag[name]
    ax.errorbar(range(L), d.mean(0), yerr=d.std(0, ddof=1) if len(d) > 1 else None, marker="o", ms=3, capsize=2,
                label=name)
ax.set_xticks(range(L), short, rotation=90)
ax.set_ylabel("same-layer CKA")
ax.set_ylim(0, 1.02)
ax.legend(fontsize=7)
ctx.save_figure(fig, "threat_models", caption="Same-layer CKA between networks trained for different threat models, "
                "with seed controls (mean ± sd over seed pairs)")
plt.show()

# %% [markdown]
# ## 6. Width sweep
#
# Standard and L∞-robust training of the same CNN at increasing width on a small training subset, every seed.
# Nguyen et al. (2021) find block structure when capacity is large relative to the data.

# %%
t = time.perf_counter()
wspecs = {(w, r, s): model_spec(r, s, n=S["width_n_train"], n_epochs=S["width_epochs"], width=w)
          for w in S["widths"] for r in ("standard", "linf") for s in SEEDS}
train_grid(list(wspecs.values()), cache=ctx.cache, device=ctx.device, load=False)
width_within, width_rows = {}, []
for (w, r, s), sp in wspecs.items():
    m = trained_model(sp, cache=ctx.cache, device=ctx.device)
    report(f"width ×{w} {r}#{s} (n_train={S['width_n_train']})", sp, m, f"width ×{w} {r}", s, S["width_epochs"],
           strong=False)
    width_within[w, r, s] = cka_matrix(sp, m, layers=layers)
    row, _, _ = block_row(width_within[w, r, s], *first_pc(sp, m))
    width_rows.append({"width": w, "training": r, "seed": s, **row})
width_summary = pd.DataFrame(width_rows)
ctx.save_table(width_summary, "width_sweep", caption="Block-structure statistics along width, per network "
               "(small training subset)")
nw = len(S["widths"])
fig, axes = plt.subplots(2, nw + 1, figsize=(4.2 * (nw + 1), 7.6), constrained_layout=True, squeeze=False)
for j, w in enumerate(S["widths"]):
    for i, r in enumerate(("standard", "linf")):
        im = heatmap(axes[i, j], width_within[w, r, seed], title=f"{r}, width ×{w}, seed {seed}")
        outline_blocks(axes[i, j], C.contiguous_blocks(width_within[w, r, seed]))
for i, col in enumerate(("stage contrast", "found-block contrast")):
    for k, r in enumerate(("standard", "linf")):
        g = width_summary[width_summary.training == r].groupby("width")[col]
        axes[i, nw].errorbar(g.mean().index, g.mean(), yerr=g.std(), marker="o", capsize=3, color=f"C{k}", label=r)
    axes[i, nw].set_xscale("log", base=2)
    axes[i, nw].set_xlabel("width multiplier")
    axes[i, nw].set_title(col)
    axes[i, nw].legend()
fig.colorbar(im, ax=axes[:, :nw], shrink=0.6, label="CKA")
ctx.save_figure(fig, "width_sweep", caption="Within-model CKA along width, standard (top) and L∞-robust (bottom), "
                "and the block statistics per width (mean ± sd over seeds)")
plt.show()
phase["width sweep"] = time.perf_counter() - t
width_summary.groupby(["width", "training"]).mean(numeric_only=True)

# %% [markdown]
# ## 7. Estimator diagnostics on these networks
#
# The unbiased minibatch estimator is the paper's; the biased (HSIC₀) estimator inflates CKA at small batch
# sizes. Left: the two estimators' within-model matrices, as the difference biased − unbiased. Right: the
# block statistics against the CKA batch size — a block statistic that moves with the batch size is a
# property of the estimator, not of the network.

# %%
t = time.perf_counter()
diag_rows = []
for r in ("standard", "linf"):
    for est in ("unbiased", "biased"):
        for bs in S["diag_batch_sizes"]:
            mtx = cka_matrix(specs[r, seed], models[r, seed], layers=layers, estimator=est, batch_size=bs)
            diag_rows.append({"regime": r, "estimator": est, "batch size": bs,
                              "mean off-diagonal": C.mean_off_diagonal(mtx),
                              "stage contrast": C.block_contrast(mtx, stages)})
diagnostics = pd.DataFrame(diag_rows)
ctx.save_table(diagnostics, "cka_diagnostics", caption=f"Within-model CKA (seed {seed}) by estimator and batch size")
bs_max = max(S["diag_batch_sizes"])
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), constrained_layout=True)
bias = cka_matrix(specs["standard", seed], models["standard", seed], layers=layers, estimator="biased",
                  batch_size=min(S["diag_batch_sizes"])) - within["standard", seed]
im = heatmap(axes[0], bias, labels_x=short, labels_y=short, vmin=-0.5, vmax=0.5, cmap="RdBu_r",
             title=f"biased − unbiased, batch {min(S['diag_batch_sizes'])}, standard")
fig.colorbar(im, ax=axes[0], shrink=0.8)
for j, col in enumerate(("mean off-diagonal", "stage contrast")):
    for (r, est), g in diagnostics.groupby(["regime", "estimator"]):
        axes[j + 1].plot(g["batch size"], g[col], marker="o", ls="-" if est == "unbiased" else "--", label=f"{r}, {est}")
    axes[j + 1].set_xscale("log", base=2)
    axes[j + 1].set_xlabel("CKA batch size")
    axes[j + 1].set_title(col)
    axes[j + 1].legend(fontsize=7)
ctx.save_figure(fig, "cka_diagnostics", caption="Biased vs unbiased estimator and batch-size sensitivity")
plt.show()
phase["diagnostics"] = time.perf_counter() - t
diagnostics

# %% [markdown]
# ## Accuracy and training of every model

# %%
acc_table = pd.DataFrame(accuracy_rows)
ctx.save_table(acc_table, "model_accuracy", caption=f"Clean, PGD-{S['eval_steps']} and PGD-{S['robust_steps']}×"
               f"{S['robust_restarts']} accuracy on {S['n_robust']} test images of every model (fixed epochs; "
               f"'below floor': clean accuracy under {CLEAN_FLOOR})")
print("models below the clean-accuracy floor:", acc_table.loc[acc_table["below floor"], "model"].tolist() or "none")
acc_table

# %% [markdown]
# ## Claims
#
# One number per network (seed) in every row; how it is summarised is in the row's `summary`. Verdicts and
# Holm adjustment within families: `reprobust.claims`. The smoke profile has 2 seeds, so its rows are "not
# testable here" by design.

# %%
claims = ClaimsTable()
per = lambda r, col: blocks.loc[blocks.regime == r, col].to_numpy()
fam = "block structure (robust vs standard)"
for col, what in (("stage contrast", "mean CKA within a resolution stage − between stages"),
                  ("found-block contrast", "block contrast of the contiguous blocks found in the CKA matrix"),
                  ("PC-block layer fraction", "fraction of layers in runs sharing a dominant first PC (Nguyen et al.)")):
    claims.add("robust networks have a weaker block structure", f"{what}: L∞-robust − standard", "welch",
               per("linf", col), per("standard", col), expected="negative", family=fam,
               summary="one within-model matrix per network", replicates=SEEDS)
claims.add("robust networks show higher long-range similarity", "long-range CKA (first vs last third of layers), "
           "L∞-robust − standard", "welch", per("linf", "long-range"), per("standard", "long-range"),
           expected="positive", family=fam, summary="per-network mean over first-third × last-third layer pairs",
           replicates=SEEDS)
ws = width_summary
for w in S["widths"]:
    g = ws[ws.width == w]
    claims.add("robust networks have a weaker block structure, at every width",
               f"stage contrast at width ×{w}: L∞-robust − standard", "welch",
               g.loc[g.training == "linf", "stage contrast"], g.loc[g.training == "standard", "stage contrast"],
               expected="negative", family="block structure along width", summary="one matrix per network",
               replicates=SEEDS)
Yw = np.array([[ws.loc[(ws.width == w) & (ws.training == "standard") & (ws.seed == s), "stage contrast"].item()
                for w in S["widths"]] for s in SEEDS])
claims.add("block structure grows with width relative to the data (standard training)",
           "slope of stage contrast against log2(width), standard", "replicate_slope", np.log2(S["widths"]), Yw,
           expected="positive", family="block structure along width", summary="per-seed slope over the widths",
           replicates=SEEDS)
deep = slice(k3, L)
ctrl = (cross_diag["standard seeds"] + cross_diag["L∞-robust seeds"]) / 2
claims.add("standard-vs-robust similarity is low beyond the early layers",
           "same-layer CKA(standard, L∞-robust) − mean of the two seed controls, layers after the first third",
           "paired", cross_diag["standard vs L∞-robust"][:, deep].mean(1), ctrl[:, deep].mean(1), expected="negative",
           summary="per seed pair (s, s+1): mean over layers after the first third", unit="seed pair",
           replicates=SEEDS)
adv_noise = {r: np.array([adv_diag[r, s] - noise_diag[r, s] for s in SEEDS]) for r in REGIMES}
fam = "clean vs adversarial (noise-controlled)"
claims.add("early layers of robust networks barely change under attack",
           "first-third CKA(clean, adversarial) − CKA(clean, equal-norm noise): L∞-robust − standard", "welch",
           adv_noise["linf"][:, early].mean(1), adv_noise["standard"][:, early].mean(1), expected="positive",
           family=fam, summary="per-network mean over the first third of layers", replicates=SEEDS)
claims.add("robustness protects the deep layers from the attack more than the early ones (depth × training)",
           "[last − first third] of CKA(clean, adv) − CKA(clean, noise): L∞-robust − standard", "welch",
           adv_noise["linf"][:, late].mean(1) - adv_noise["linf"][:, early].mean(1),
           adv_noise["standard"][:, late].mean(1) - adv_noise["standard"][:, early].mean(1), expected="positive",
           family=fam, summary="per network: last-third mean − first-third mean of the noise-controlled CKA",
           replicates=SEEDS)
claims.add("assumption: an equal-norm random perturbation barely changes early-layer features",
           "first-third CKA(clean, noise), L∞-robust − standard", "welch",
           np.array([noise_diag["linf", s][early].mean() for s in SEEDS]),
           np.array([noise_diag["standard", s][early].mean() for s in SEEDS]), expected="equivalent", margin=0.05,
           family=fam, summary="per-network mean over the first third",
           # 0.05: larger than the whole early-layer robust − standard effect before the noise control (0.02)
           replicates=SEEDS)
of_pre = (overfitting_happened, "no significant drop of held-out PGD accuracy from the best (validation) to the last "
          "checkpoint across seeds, so there is no robust overfitting to locate")
claims.add("robust overfitting occurs (held-out robust accuracy falls after the best checkpoint)",
           "held-out PGD accuracy, best (by validation) − last checkpoint", "paired",
           overfit["held-out PGD best"].to_numpy(), overfit["held-out PGD last"].to_numpy(), expected="positive",
           family="robust overfitting", summary="per seed; McNemar p per seed in robust_overfitting.csv",
           replicates=SEEDS)
xL = np.arange(L) / (L - 1)
claims.add("robust overfitting concentrates in deeper layers",
           "slope over relative depth of (1 − CKA(best, last)) / its layer mean: L∞ − matched standard drift",
           "mean", stats.per_replicate_slopes(xL, rel(drift)) - stats.per_replicate_slopes(xL, rel(drift_ctrl)),
           expected="positive", family="robust overfitting", precondition=of_pre,
           summary="per seed: slope of the normalised drift profile, minus the same for standard training over the "
           "same epochs", replicates=SEEDS)
lin_l2 = cross_diag["L∞ vs L2-robust"].mean(1)
claims.add("L∞- and L2-robust models are closer to each other than to the standard model",
           "same-layer CKA(L∞, L2) − CKA(standard, L∞), all layers", "paired", lin_l2,
           cross_diag["standard vs L∞-robust"].mean(1), expected="positive", family="threat models",
           summary="per seed pair (s, s+1): mean over layers", unit="seed pair", replicates=SEEDS)
claims.add("L∞- and L2-robust models are as similar as two L∞-robust seeds",
           "same-layer CKA(L∞, L2) − CKA(L∞ seed s, L∞ seed s+1), all layers", "paired", lin_l2,
           cross_diag["L∞-robust seeds"].mean(1), expected="equivalent", margin=0.05, family="threat models",
           # 0.05: a tenth of the standard-vs-robust gap in deep layers; smaller differences are seed noise here
           summary="per seed pair: mean over layers", unit="seed pair", replicates=SEEDS)
rob = {r: acc_table.loc[acc_table.regime == r, f"PGD-{S['robust_steps']}×{S['robust_restarts']} linf ε={S['eps_linf']}"].to_numpy()
       for r in REGIMES}
claims.add("assumption: L∞ adversarial training makes the networks robust",
           f"PGD-{S['robust_steps']}×{S['robust_restarts']} L∞ accuracy, L∞-robust − standard", "welch",
           rob["linf"], rob["standard"], expected="positive", kind="check",
           family="assumptions", summary="per network, on the fixed robust-accuracy subset", replicates=SEEDS)
claims_df = claims.save(ctx)
claims_df[["id", "claim", "statistic", "n", "estimate", "ci_low", "ci_high", "p_holm", "verdict", "stability"]]

# %% [markdown]
# **Reading the table.** "Not supported at this scale", "inconclusive" and "not testable here" are results: 8×8
# digits and a 17-layer CNN are far from WRN-28-4 on CIFAR-10, and the robust-overfitting row is only tested
# when overfitting occurred (the curves and `robust_overfitting.csv` show whether it did).
#
# **Not reproduced here:** ImageNet subsets, WRN architectures, non-Lp threat models (snow, Gabor, JPEG),
# the other similarity measures (CCA, SVCCA, PWCCA, Procrustes) the paper may use as checks.

# %%
phase["total"] = time.perf_counter() - T0
print("phase times (s, this process; wall clock on a shared machine): "
      + ", ".join(f"{k} {v:.1f}" for k, v in phase.items()))
