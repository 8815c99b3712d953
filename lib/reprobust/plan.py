"""The ``full`` profile's grids, declared once per notebook, and their cost before anything runs.

Each notebook's paper-scale set-up is a plain settings dictionary here (:data:`FULL_SETTINGS`, from the
papers' specs in ``shared/papers/``) plus a small function that turns settings into the grid's work: the
models to train (:class:`TrainJob`) and the attack / metric evaluations (:class:`EvalJob`). A notebook
can import its settings so that the plan and the run never disagree::

    from reprobust.plan import full_settings
    S = ctx.settings({"smoke": {...}, "quick": {...}, "full": full_settings("05_feature_maps")}, ...)

``./run_all.sh --profile full --plan`` (:func:`print_plan`) prints, per notebook, the models to train,
the attack evaluations, the cache size and the estimated GPU-hours, without running anything. The cost
of one image through one model comes either from a measurement on the current device (a few timed
training steps, when it is a GPU, or with ``--plan-measure``) or from the model's counted FLOPs at the
stated reference throughput :data:`REFERENCE_FLOPS` (so the plan is also available on a laptop).

Adding a notebook's plan: write its settings into :data:`FULL_SETTINGS` and a function
``settings -> (list[TrainJob], list[EvalJob])`` into :data:`GRIDS` (see the five below); the work per
image is counted in *passes*: one forward + backward pass of one image is one training pass, a PGD step
is one forward + backward pass, a black-box query is one forward pass (a third of a training pass).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

from .validation import check_choice

#: Sustained throughput assumed when the per-image cost is not measured: 40 % of an H100/H200's dense
#: bf16 peak (989 TFLOP/s). Large convolutional networks reach roughly this with AMP and channels-last;
#: small CIFAR networks (ResNet-20, LeNet) reach far less, so their estimates are optimistic — measure
#: with ``--plan-measure`` on the GPU for real figures.
REFERENCE_FLOPS = 0.4 * 989e12
#: ... and at most this many training passes per second however small the model (kernel launches and
#: memory traffic bound tiny networks), so LeNet-sized models are not costed at nearly nothing.
REFERENCE_MAX_IMAGES_PER_S = 50_000
REFERENCE_NAME = ("reference: 40% of an H100/H200's bf16 peak (396 TFLOP/s) on counted FLOPs, at most "
                  "50,000 training images/s")

#: (C, H, W) and train-set size of each data set the plans use.
DATA = {"mnist": ((1, 28, 28), 60_000, 10_000), "fashion_mnist": ((1, 28, 28), 60_000, 10_000),
        "cifar10": ((3, 32, 32), 50_000, 10_000), "tiny_imagenet": ((3, 64, 64), 100_000, 10_000)}


@dataclass(frozen=True)
class TrainJob:
    """``count`` models of one architecture trained on one data set.

    ``passes_per_image`` is the forward + backward passes per training image and epoch: 1 for standard
    training, ``1 + steps`` for PGD adversarial training (the attack's steps plus the update), 2 + steps
    for Paper A's clean-then-adversarial batches.
    """

    label: str
    model: dict
    dataset: str
    count: int
    epochs: int
    n_train: int
    passes_per_image: float = 1.0
    states_per_model: int = 1  # state dicts cached per model (epochs + 1 with per-epoch checkpoints)


@dataclass(frozen=True)
class EvalJob:
    """An attack or metric over ``n_images`` images on ``count`` models.

    ``passes_per_image`` in training-pass units: a gradient attack of ``s`` steps is ``s`` (+ restarts),
    a black-box attack of ``q`` queries is ``q / 3`` (forward only). ``stored_bytes_per_image``: what
    the cache keeps per image (adversarial images, soft labels, ...).
    """

    label: str
    model: dict
    dataset: str
    count: int
    n_images: int
    passes_per_image: float
    stored_bytes_per_image: int = 0


@dataclass
class NotebookPlan:
    notebook: str
    trains: list = field(default_factory=list)
    evals: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------
# The papers' set-ups
# ------------------------------------------------------------------------------------------------------
_PAPER_A_ARCHS = {
    # Paper A §2.2 (Kotyan et al.'s code): SGD, batch 64, 200 epochs (CapsNet 50, Adam)
    "lenet": dict(model={"name": "lenet"}, epochs=200),
    "resnet32": dict(model={"name": "resnet", "depth": 32, "preact": True}, epochs=200),
    "wrn16_8": dict(model={"name": "wide_resnet", "depth": 16, "widen": 8}, epochs=200),
    "nin": dict(model={"name": "nin"}, epochs=200),
    "allconv": dict(model={"name": "allconv"}, epochs=200),
    "densenet_bc100": dict(model={"name": "densenet_bc", "depth": 100, "growth": 12}, epochs=200),
    "capsnet": dict(model={"name": "capsnet", "conv_kernel": 8}, epochs=50),
}

FULL_SETTINGS = {
    "01_raw_zero_shot": dict(
        dataset="cifar10", architectures=list(_PAPER_A_ARCHS), arch_specs=_PAPER_A_ARCHS,
        defences=["none", "adversarial", "gaussian_noise", "label_smoothing", "feature_squeezing",
                  "spatial_smoothing"],
        training_defences=["adversarial", "gaussian_noise", "label_smoothing"],
        batch_size=64, at_steps=10, n_attack=1000, pixel_levels=[1, 3, 5, 10], threshold_levels=[1, 3, 5, 10],
        optimizer="cmaes", popsize=400, max_iter=100),
    "02_manifold_proximity": dict(
        # Paper B: MNIST small CNN (25 epochs) and the CIFAR-10 VGG-like CONV net (40 epochs); PGD ε 0.12 /
        # 0.04 with 1,000 steps, C&W / EAD 1,000 / 200 iterations, k = 300 neighbours.
        datasets=["mnist", "cifar10"], models={"mnist": {"name": "cnn"},
                                               "cifar10": {"name": "cifar_conv"}},
        epochs={"mnist": 25, "cifar10": 40}, n_attack=1000, pgd_steps=1000, cw_steps={"mnist": 1000, "cifar10": 200},
        cw_search={"mnist": 50, "cifar10": 30}, l0_max_pixels=50, k=300),
    "03_representation_similarity": dict(
        # Paper C: WRN-28-4 on CIFAR-10, standard and PGD-10 (8/255) training, PGD-20 evaluation features,
        # minibatch CKA with batches of 1,024 over the 10k test images, 3 passes; robust overfitting from
        # per-epoch checkpoints; a width sweep WRN-28-k.
        dataset="cifar10", model={"name": "wide_resnet", "depth": 28, "widen": 4}, epochs=200, train_steps=10,
        eval_steps=20, n_test=10_000, cka_batch_size=1024, cka_passes=3, widths=[1, 2, 4, 8, 10],
        overfit_epochs=200),
    "04_class_selectivity": dict(
        # In notebook 04's own settings keys; `setups` holds Paper D's two set-ups (the `dataset` parameter
        # picks one, each replaces the shared keys). Source: shared/papers/paperD_selectivity.md (§ per
        # line); [U] where the spec marks the paper's value as unverified; "our default" where it is silent.
        dataset="tiny_imagenet",                                  # §2.1: ResNet18 on Tiny ImageNet(-C), the headline set-up
        setups={
            "tiny_imagenet": dict(
                model={"name": "resnet18"},                       # §2.1 [V]: ResNet18 (our CIFAR-stem variant, 64×64 input)
                image_size=64, epochs=90,                         # 64×64 (§2.1); 90 epochs our default
                train_extra=dict(schedule="multistep", milestones=[30, 60],  # §2.1 [U]: lr 0.1 with step decay
                                 augment={"padding": 8, "flip": True}),      # §2.1 [U]: crop + flip (padding ours)
                batch_size=256,                                   # our default: ≥ 1 image of each of 200 classes (§8.5)
                early_layers=["stem", "layer1.0", "layer1.1"],    # §3 "early layers", pre-declared (ours)
                acc_floor=0.45),                                  # §5: ResNet18 baseline ≈ 51–52% (ours: 6 points below)
            "cifar10": dict(
                model={"name": "resnet", "depth": 20, "width": 16, "strides": "122"},  # §2.1 [V]: ResNet20 on CIFAR-10
                image_size=32, epochs=200,                        # 32×32; 200 epochs our default
                train_extra=dict(schedule="multistep", milestones=[100, 150],  # §2.1 [U]: lr 0.1, step decay
                                 augment={"padding": 4, "flip": True}),        # §2.1 [U]: crop + flip
                batch_size=128,                                   # our default (stratified: every class in a batch)
                early_layers=["stem", "layer1.0", "layer1.1", "layer1.2"],  # §3, pre-declared (ours)
                acc_floor=0.85)},                                 # our default (ResNet-20 reaches ≈ 0.91)
        n_train=None, n_test=None,                                # the whole splits (10% of train held out for validation)
        alphas=[-2.0, -1.0, -0.5, -0.2, 0.0, 0.2, 0.5, 1.0, 2.0],  # §1.3 [U] α ∈ [−2, 2], §7.1's subset of the paper grid
        n_seeds=5,                                                # §2.1 [U]: 5–20 seeds per α; 5 = the evidence rules' minimum
        lr=0.1, patience=None,                                    # §2.1 [U]: lr 0.1; all epochs, best validation epoch kept
        noise_std=0.1,                                            # our default (claim 6's naturalistic-robustness arm)
        adv_eps=8 / 255, adv_steps=7,                             # our default (claim 6's adversarial arm; Madry's PGD-7)
        n_eval=10_000, corruptions=None, severities=[1, 2, 3, 4, 5],  # §2.2: the whole releases, 5 severities
        eps_linf=[0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255],  # §7.2 item 3: ε ∈ {0.5,…,16}/255
        pgd_steps=20, n_attack=1000,                              # §2.3: PGD 10–20 steps, random start; 1,000 images ours
        n_dim=500, n_grad=200, grad_units=64,                     # §4: ≤ 200 samples, ≤ 64 units per layer; n_dim ours
        ensemble="standard", ensemble_eps=1 / 255,                # our default: AutoAttack-style, at an ε of the grid
        n_ensemble=1000, n_diag=500, apgd_steps=100, square_queries=5000),  # AutoAttack's budgets; image counts ours
    "05_feature_maps": dict(
        # In notebook 05's own settings keys. Source: shared/papers/paperE_featuremaps.md (§ per line), i.e.
        # the authors' code (MTandHJ/rcm); "our default" where the spec is silent.
        data={"name": "cifar10", "n_test": None},                 # §3 Data: CIFAR-10, the whole test set
        model={"name": "resnet18"},                               # §2.2 / §6 main.py: ResNet-18 (CIFAR stem)
        strides=["1222", "1122"], base_strides="1222",           # §2.2: baseline 1222, stride method 1122
        factors=[1, 2],                                           # §2.1 README: --scale-factor=2 (gains up to ×2)
        upsample_mode="nearest",                                  # §2.1: --mode=nearest, inside the model
        n_seeds=5,                                                # §3 Seeds: main.py runs seeds 0–4
        epochs=110, patience=None,                                # §3 AT.py: 110 epochs, no early stopping
        batch_size=128, lr=0.1,                                   # §3 common: SGD lr 0.1, batch 128
        train_extra=dict(schedule="multistep", milestones=[100, 105], gamma=0.1,  # §3 AT.py: MultiStep [100,105] ×0.1
                         momentum=0.9, weight_decay=5e-4,         # §3: momentum 0.9 (no Nesterov), wd 5e-4
                         augment={"padding": 4, "flip": True, "pad_mode": "reflect"}),  # §3 Pad(4, reflect) + crop + flip
        # our default: 10% of the training set held out for selecting the epoch (the authors select on the
        # test set, §8 pitfall 3); standard training uses the PGD-AT recipe (STD.py's 164 epochs differ) so
        # that the standard models are a matched control
        val_fraction=0.1,
        eps=8 / 255, at_steps=10, at_step_size=2 / 255,           # §3 AT.py: ℓ∞ PGD 8/255, step 2/255, 10 steps
        eval_attacks=dict(pgd_steps=20, pgd_restarts=2,           # §4 white_box_attack.py: PGD-20; 2 restarts ours
                          sweep_steps=10, deepfool_steps=50),     # §4: DeepFool steps 50 (--steps default ours)
        eps_l2=0.5,                                               # our default (the L2 budget is not stated)
        eps_grid=[2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255, 64 / 255],  # §4: ε sweep to 0 (grid ours)
        n_eval=10_000, n_ensemble=10_000,                         # §4: AutoAttack on the 10k test images
        ensemble="standard", apgd_steps=100, square_queries=5000,  # §4: AutoAttack standard (FAB-T → PGD restarts)
        ensemble_trainings=["standard", "pgd_at"],                # every model (our default)
        n_diag=1000,                                              # our default (attack-strength checks)
        accuracy_floor=0.7,                                       # our default (below it a model is left out)
        # §2.2 table / §2 Key: the other architectures with their own stride semantics, PGD-AT, one seed each
        extra_architectures=[dict(model={"name": "preact_resnet18"}, strides=["1222", "1122"]),
                             dict(model={"name": "vgg16_bn"}, strides=["11222", "11122"]),
                             dict(model={"name": "alexnet"}, strides=["1122", "1112"])],
        extra_seeds=1,                                            # our default
        synthetic_trials=500, synthetic_sides=[8, 16, 32, 64], synthetic_seeds=5),  # our default (§1.3 ran 200–300)
}


def full_settings(notebook: str) -> dict:
    """A copy of one notebook's full-profile settings (the paper's set-up)."""
    check_choice("notebook", notebook, FULL_SETTINGS)
    return copy.deepcopy(FULL_SETTINGS[notebook])


def _grid_01(s):
    trains, evals = [], []
    (c, h, w), n_train, _ = DATA[s["dataset"]]
    image_bytes = c * h * w * 4
    for arch in s["architectures"]:
        spec = s["arch_specs"][arch]
        for defence in ["none"] + [d for d in s["defences"] if d in s["training_defences"]]:
            passes = {"adversarial": 2 + s["at_steps"], "gaussian_noise": 2}.get(defence, 1)
            # the full model plus 10 leave-one-out models (each trained without one class: 9/10 of the data)
            trains.append(TrainJob(f"{arch} / {defence}: full", spec["model"], s["dataset"], 1, spec["epochs"],
                                   n_train, passes))
            trains.append(TrainJob(f"{arch} / {defence}: leave-one-out", spec["model"], s["dataset"], 10,
                                   spec["epochs"], n_train * 9 // 10, passes))
        # Black-box attacks on every defended full model: binary search over the levels (1 + log2 runs),
        # each at most popsize × max_iter forward queries per image.
        runs = 1 + math.ceil(math.log2(len(s["pixel_levels"])))
        queries = runs * s["popsize"] * s["max_iter"]
        for attack in ("pixel", "threshold"):
            evals.append(EvalJob(f"{arch}: {attack} attack ({s['optimizer']}, ≤{queries:,} queries/image)",
                                 spec["model"], s["dataset"], len(s["defences"]), s["n_attack"], queries / 3,
                                 image_bytes))
    return trains, evals


def _grid_02(s):
    trains, evals = [], []
    for ds in s["datasets"]:
        (c, h, w), n_train, _ = DATA[ds]
        model = s["models"][ds]
        trains.append(TrainJob(f"{ds}: {model['name']}", model, ds, 1, s["epochs"][ds], n_train))
        for label, passes in ((f"L∞ PGD-{s['pgd_steps']}", s["pgd_steps"]),
                              (f"L2 C&W ({s['cw_search'][ds]} × {s['cw_steps'][ds]})", s["cw_search"][ds] * s["cw_steps"][ds]),
                              (f"L1 EAD ({s['cw_search'][ds]} × {s['cw_steps'][ds]})", s["cw_search"][ds] * s["cw_steps"][ds]),
                              (f"L0 pixel ({s['l0_max_pixels']} px × {10 if c == 1 else 1000} values)",
                               s["l0_max_pixels"] * (10 if c == 1 else 1000) / 3)):
            evals.append(EvalJob(f"{ds}: {label}", model, ds, 1, s["n_attack"], passes, c * h * w * 4))
        # Methods 1 and 2 and the SNNL run on activations (CPU/GPU linear algebra), not counted here.
    return trains, evals


def _grid_03(s):
    (c, h, w), n_train, n_test = DATA[s["dataset"]]
    m = s["model"]
    steps = s["train_steps"]
    trains = [TrainJob("WRN-28-4 standard", m, s["dataset"], 1, s["epochs"], n_train),
              TrainJob(f"WRN-28-4 PGD-{steps} L∞ (per-epoch checkpoints)", m, s["dataset"], 1, s["overfit_epochs"],
                       n_train, 1 + steps, states_per_model=s["overfit_epochs"] + 1),
              TrainJob(f"WRN-28-4 PGD-{steps} L2", m, s["dataset"], 1, s["epochs"], n_train, 1 + steps)]
    for k in s["widths"]:
        wm = dict(m, widen=k)
        # one standard and one robust model per width: (1 + (1 + steps)) / 2 passes per image on average
        trains.append(TrainJob(f"WRN-28-{k} width sweep (standard + robust)", wm, s["dataset"], 2, s["epochs"],
                               n_train, (2 + steps) / 2))
    cka_passes = s["cka_passes"] / 3  # forward passes of the 10k test images per CKA matrix
    evals = [EvalJob(f"PGD-{s['eval_steps']} adversarial test features", m, s["dataset"], 3, s["n_test"],
                     s["eval_steps"], c * h * w * 4),
             EvalJob(f"minibatch CKA ({s['cka_batch_size']}-image batches × {s['cka_passes']} passes), "
                     "clean/adversarial × models", m, s["dataset"], 8, s["n_test"], cka_passes),
             EvalJob("robust-overfitting CKA along the checkpoints", m, s["dataset"], s["overfit_epochs"] + 1,
                     s["n_test"], cka_passes)]
    return trains, evals


def _grid_04(s):
    """Both of Paper D's set-ups: a full reproduction runs the notebook once per data set (``-p dataset``)."""
    from .corruptions import CIFAR10C_FILES, TINY_IMAGENET_C_CORRUPTIONS

    trains, evals = [], []
    for ds, setup in s["setups"].items():
        r = {**{k: v for k, v in s.items() if k != "setups"}, **setup}
        (c, h, w), n_train, n_test = DATA[ds]
        n_train = round((r["n_train"] or n_train) * 0.9)  # the notebook holds 10% out for validation
        m, n_seeds, name = r["model"], r["n_seeds"], r["model"]["name"]
        trains.append(TrainJob(f"{ds}: {name} × {len(r['alphas'])} α × {n_seeds} seeds", m, ds,
                               len(r["alphas"]) * n_seeds, r["epochs"], n_train))
        trains.append(TrainJob(f"{ds}: {name} α = 0, Gaussian-noise arm", m, ds, n_seeds, r["epochs"], n_train))
        trains.append(TrainJob(f"{ds}: {name} α = 0, PGD-{r['adv_steps']} adversarial arm", m, ds, n_seeds,
                               r["epochs"], n_train, 1 + r["adv_steps"]))
        n_models = (len(r["alphas"]) + 2) * n_seeds
        n_eval = min(r["n_eval"], n_test)
        k = len(r["corruptions"] or (TINY_IMAGENET_C_CORRUPTIONS if ds == "tiny_imagenet" else CIFAR10C_FILES))
        evals.append(EvalJob(f"{ds}-C: {k} corruptions × {len(r['severities'])} severities", m, ds, n_models,
                             n_eval * k * len(r["severities"]), 1 / 3))
        n_att = min(r["n_attack"], n_eval)
        evals.append(EvalJob(f"{ds}: FGSM and PGD-{r['pgd_steps']} at {len(r['eps_linf'])} ε", m, ds, n_models,
                             n_att, len(r["eps_linf"]) * (r["pgd_steps"] + 1)))
        # claim 4: PGD-L2 at the matched size and at 4 smaller radii (effect matching)
        evals.append(EvalJob(f"{ds}: PGD-{r['pgd_steps']} L2 for the dimensionality analysis (5 radii)", m, ds,
                             n_models, min(r["n_dim"], n_eval), 5 * r["pgd_steps"]))
        ens = _ensemble_passes({**r, "eval_attacks": {"pgd_steps": r["pgd_steps"]}})
        evals.append(EvalJob(f"{ds}: '{r['ensemble']}' attack ensemble at ε = {r['ensemble_eps']:.4g}", m, ds, n_models,
                             min(r["n_ensemble"], n_eval), ens))
    return trains, evals


def _ensemble_passes(s) -> float:
    """Gradient passes per image of :func:`reprobust.robustness.robust_accuracy` when no image falls early
    (an upper bound: every attack runs on every correctly classified image)."""
    standard = s["ensemble"] == "standard"
    starts, targets = (5, 9) if standard else (1, 3)
    return (starts * s["eval_attacks"]["pgd_steps"] + (starts + targets) * s["apgd_steps"]
            + (s["square_queries"] / 3 if standard else 0))


def _grid_05(s):
    trains, evals = [], []
    (c, h, w), n_train, n_test = DATA[s["data"]["name"]]
    n_train = round(n_train * (1 - s["val_fraction"]))
    n_eval, n_ens = min(s["n_eval"], n_test), min(s["n_ensemble"], n_test)
    a = s["eval_attacks"]
    # per model and evaluated image: PGD (robust and consistency, with restarts), FGSM, DeepFool (at most
    # its steps), L2 PGD and the PGD ε sweep (the ε chosen from the data included)
    metric_passes = (2 * a["pgd_restarts"] * a["pgd_steps"] + 1 + a["deepfool_steps"] + a["pgd_steps"]
                     + (len(s["eps_grid"]) + 1) * a["sweep_steps"])
    ens = _ensemble_passes(s)
    configs = [(st, 1) for st in s["strides"]] + [(s["base_strides"], u) for u in s["factors"] if u != 1]
    for strides, up in configs:
        for head in ("avg", "max"):
            m = {**s["model"], "strides": strides, "head": head, "upsample": up}
            label = f"{m['name']} {strides}{f' ×{up}' if up > 1 else ''} {head} head"
            for training, passes in (("standard", 1), ("PGD-AT", 1 + s["at_steps"])):
                trains.append(TrainJob(f"{label}: {training}", m, s["data"]["name"], s["n_seeds"], s["epochs"],
                                       n_train, passes))
            evals.append(EvalJob(f"{label}: PGD-{a['pgd_steps']}, FGSM, DeepFool, L2 PGD, ε sweep", m,
                                 s["data"]["name"], 2 * s["n_seeds"], n_eval, metric_passes))
            evals.append(EvalJob(f"{label}: '{s['ensemble']}' attack ensemble", m, s["data"]["name"],
                                 len(s["ensemble_trainings"]) * s["n_seeds"], n_ens, ens))
    for extra in s["extra_architectures"]:
        for strides in extra["strides"]:
            m = {**extra["model"], "strides": strides, "head": "avg", "upsample": 1}
            label = f"{m['name']} {strides}"
            trains.append(TrainJob(f"{label}: PGD-AT", m, s["data"]["name"], s["extra_seeds"], s["epochs"], n_train,
                                   1 + s["at_steps"]))
            evals.append(EvalJob(f"{label}: PGD-{a['pgd_steps']} ... and the '{s['ensemble']}' ensemble", m,
                                 s["data"]["name"], s["extra_seeds"], n_eval,
                                 metric_passes + ("pgd_at" in s["ensemble_trainings"]) * ens * n_ens / n_eval))
    return trains, evals


GRIDS = {"01_raw_zero_shot": _grid_01, "02_manifold_proximity": _grid_02,
         "03_representation_similarity": _grid_03, "04_class_selectivity": _grid_04, "05_feature_maps": _grid_05}


def notebook_plan(notebook: str, overrides: dict | None = None) -> NotebookPlan:
    """The full-profile work of one notebook (settings overridden by ``overrides``, as ``-p`` does)."""
    s = full_settings(notebook)
    for k, v in (overrides or {}).items():
        if k in s:
            s[k] = v
    trains, evals = GRIDS[notebook](s)
    return NotebookPlan(notebook, trains, evals)


# ------------------------------------------------------------------------------------------------------
# Cost of one image
# ------------------------------------------------------------------------------------------------------
def _build(model: dict, dataset: str):
    import torch

    from .models import build_model

    shape, _, _ = DATA[dataset]
    opts = dict(model)
    name = opts.pop("name")
    torch.manual_seed(0)
    return build_model(name, input_shape=shape, num_classes=200 if dataset == "tiny_imagenet" else 10, **opts), shape


def forward_flops(model: dict, dataset: str) -> float:
    """FLOPs of one forward pass of one image (torch's ``FlopCounterMode``: convolutions and matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net, shape = _build(model, dataset)
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.rand(1, *shape))
    return float(counter.get_total_flops())


def measured_pass_seconds(model: dict, dataset: str, device, batch_size: int = 128, steps: int = 5) -> float:
    """Seconds per image of one training pass (forward + backward + SGD step), timed on ``device`` with
    bf16 autocast and channels-last on CUDA (as :func:`reprobust.train.fit` trains there)."""
    import torch
    import torch.nn.functional as F

    net, shape = _build(model, dataset)
    dev = torch.device(device)
    net.to(dev).train()
    cuda = dev.type == "cuda"
    if cuda:
        net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(batch_size, *shape, device=dev)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), device=dev)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (cuDNN autotuning, allocator)
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / (steps * batch_size)


def _param_bytes(model: dict, dataset: str) -> int:
    net, _ = _build(model, dataset)
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


def plan_table(notebooks, *, overrides=None, measure: bool = False, device="cpu") -> tuple:
    """Rows ``(notebook, models, model-epochs, evaluations, cache GB, GPU-hours)`` and a note on the cost source.

    Parameters
    ----------
    notebooks : sequence of notebook names (keys of :data:`FULL_SETTINGS`)
    overrides : dict, optional, settings overrides (``-p NAME VALUE``)
    measure : bool, time a training pass of each distinct model on ``device`` instead of the FLOP reference
    device : str, where to measure

    Returns
    -------
    rows : list of dict
    source : str, how the per-image cost was obtained
    """
    per_image = {}

    def cost(model, dataset):
        key = (repr(sorted(model.items())), dataset)
        if key not in per_image:
            if measure:
                per_image[key] = measured_pass_seconds(model, dataset, device)
            else:
                # fwd + bwd ≈ 3 × fwd FLOPs
                per_image[key] = max(3 * forward_flops(model, dataset) / REFERENCE_FLOPS,
                                     1.0 / REFERENCE_MAX_IMAGES_PER_S)
        return per_image[key]

    sizes = {}
    rows = []
    for nb in notebooks:
        plan = notebook_plan(nb, overrides)
        seconds, cache_bytes = 0.0, 0
        for t in plan.trains:
            seconds += t.count * t.epochs * t.n_train * t.passes_per_image * cost(t.model, t.dataset)
            key = (repr(sorted(t.model.items())), t.dataset)
            sizes.setdefault(key, _param_bytes(t.model, t.dataset))
            cache_bytes += t.count * t.states_per_model * sizes[key]
        for e in plan.evals:
            seconds += e.count * e.n_images * e.passes_per_image * cost(e.model, e.dataset)
            cache_bytes += e.count * e.n_images * e.stored_bytes_per_image
        rows.append({"notebook": nb, "models": sum(t.count for t in plan.trains),
                     "model_epochs": sum(t.count * t.epochs for t in plan.trains),
                     "evaluations": sum(e.count for e in plan.evals),
                     "cache_gb": cache_bytes / 1e9, "gpu_hours": seconds / 3600, "plan": plan})
    source = (f"measured on {device} (one training pass, batch 128, bf16 + channels-last on CUDA)" if measure
              else REFERENCE_NAME)
    return rows, source


def format_plan(rows, source: str, details: bool = True) -> str:
    """Markdown: one summary table (per notebook) and, with ``details``, the grid lines of each."""
    lines = [f"Full-profile plan (nothing was run). Cost per image: {source}.", "",
             "| notebook | models to train | model-epochs | attack / metric evaluations | cache | est. GPU-hours |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['notebook']} | {r['models']:,} | {r['model_epochs']:,} | {r['evaluations']:,} | "
                     f"{r['cache_gb']:.1f} GB | {r['gpu_hours']:,.1f} |")
    lines.append(f"| **total** | {sum(r['models'] for r in rows):,} | {sum(r['model_epochs'] for r in rows):,} | "
                 f"{sum(r['evaluations'] for r in rows):,} | {sum(r['cache_gb'] for r in rows):.1f} GB | "
                 f"{sum(r['gpu_hours'] for r in rows):,.1f} |")
    if details:
        for r in rows:
            lines += ["", f"{r['notebook']}:"]
            for t in r["plan"].trains:
                lines.append(f"  train {t.count:>3} × {t.label}: {t.epochs} epochs on {t.n_train:,} {t.dataset} images"
                             + (f", {t.passes_per_image:g} passes/image" if t.passes_per_image != 1 else ""))
            for e in r["plan"].evals:
                lines.append(f"  eval  {e.count:>3} × {e.label}: {e.n_images:,} images")
    return "\n".join(lines)


def print_plan(notebooks, *, profile: str = "full", overrides=None, device: str = "auto", measure=None,
               details: bool = True) -> int:
    """``--plan``: print the plan of the selected notebooks; returns the exit status (0, or 2 when the
    profile has no plan)."""
    import sys

    if profile != "full":
        print(f"error: --plan describes the full profile; got --profile {profile} (use --profile full --plan)",
              file=sys.stderr)
        return 2
    from .device import resolve_device

    dev = resolve_device(device)
    measure = dev.type == "cuda" if measure is None else measure
    known = [n for n in notebooks if n in FULL_SETTINGS]
    rows, source = plan_table(known, overrides=overrides, measure=measure, device=str(dev))
    print(format_plan(rows, source, details=details))
    return 0
