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
def _sgd_multistep(lr, milestones, gamma, weight_decay=1e-4):
    """Paper A's per-architecture SGD schedule (spec §2.2: momentum 0.9, Nesterov in the code — `fit`'s
    default), as :func:`reprobust.train.fit` settings."""
    return dict(optimizer="sgd", lr=lr, momentum=0.9, weight_decay=weight_decay, schedule="multistep",
                milestones=milestones, gamma=gamma)


FULL_SETTINGS = {
    "01_raw_zero_shot": dict(
        # In notebook 01's own settings keys. Source: shared/papers/paperA_rawzeroshot.md (§ named per line;
        # the paper body was not available, the spec reads the authors' code); "our default" where silent.
        dataset="cifar10",                                         # §2.1
        # §2.2: the DQA companion's set (WideResNet, ResNet, AllConv, DenseNet, NIN, LeNet, CapsNet)
        architectures=["wide_resnet", "resnet", "nin", "allconv", "densenet_bc", "lenet", "capsnet"],
        model_options={"wide_resnet": dict(depth=16, widen=8),    # §2.2 WideResNet 16-8
                       "resnet": dict(depth=32, preact=True),      # §2.2 pre-activation, stack_n 5 → 32 layers
                       "densenet_bc": dict(depth=100, growth=12, compression=0.5),  # §2.2 DenseNet-BC
                       # §2.2: conv 256 (8×8) → 32 × 8-D primary capsules (9×9, stride 2) → 10 × 16-D, 3 routings,
                       # reconstruction decoder
                       "capsnet": dict(conv_channels=256, conv_kernel=8, primary_types=32, primary_dim=8,
                                       primary_kernel=9, primary_stride=2, class_dim=16, routing_iterations=3,
                                       reconstruction=True)},
        train=_sgd_multistep(0.1, (80, 150), 0.1),                # §2.2 defaults (ResNet's schedule, wd 1e-4)
        arch_train={                                               # §2.2 per-architecture optimiser and schedule
            "wide_resnet": _sgd_multistep(0.1, (60, 120, 160), 0.2, weight_decay=5e-4),
            "resnet": _sgd_multistep(0.1, (80, 150), 0.1),
            "nin": _sgd_multistep(0.05, (60, 120, 160), 0.2),
            "allconv": dict(optimizer="adam", lr=1e-4, schedule="constant", weight_decay=1e-4),
            "densenet_bc": _sgd_multistep(0.1, (75, 150), 0.1),
            "lenet": _sgd_multistep(0.01, (100, 150), (0.5, 0.2)),
            # Adam 1e-3 · exp(−epoch/10), 50 epochs; margin loss + 0.1 × MSE reconstruction (MSE: mean over the
            # 3,072 pixels; our regulariser sums squared errors, hence 0.1 / 3072)
            "capsnet": dict(optimizer="adam", lr=1e-3, schedule="exponential", gamma=math.exp(-0.1),
                            weight_decay=0.0, epochs=50,
                            regularizer={"name": "capsule_reconstruction", "weight": 0.1 / 3072})},
        epochs=200, batch_size=64,                                 # §2.2 defaults
        patience=None,                                             # §2.2: fixed epochs (best val. epoch kept: ours)
        seeds=[0, 1, 2, 3, 4],                                     # our default (≥ 5 replicates)
        n_train=None,                                              # the whole training split
        defences=["none", "adversarial", "gaussian_noise", "label_smoothing", "feature_squeezing",
                  "spatial_smoothing"],                            # §2.3 ids 1, 7, 8, 2, 4 (JPEG, TV, thermometer: not here)
        at_steps=10,                                               # §2.3: PGD 10 iterations (ε 8/255)
        n_attack=1000,                                             # §2.4: --samples 1000
        pixel_levels=[1, 3, 5, 10], threshold_levels=[1, 3, 5, 10],  # §2.4 (probably, from DQA)
        optimizer="cmaes",                                         # §2.4: CMA-ES
        attack_budget={"pixel": dict(popsize=400, max_iter=100),   # §2.4: popsize 400, maxiter 100
                       "threshold": dict(popsize=400, max_iter=100, polish_passes=1)},  # + our vertex pass
        reference_pixels=1, reference_threshold=3,                 # our default
        accuracy_floor=0.8, max_defence_cost=0.05),                # our default
    "02_manifold_proximity": dict(
        # In notebook 02's own settings keys. Source: shared/papers/paperB_manifolds.md (§ named per line; [F]
        # is the follow-up code the spec reads); "our default" where it is silent. A dict keyed by data set
        # is the value for that data set (for_dataset): `dataset="mnist"` runs the paper's MNIST set-up.
        dataset="cifar10",                                         # §0.1 MNIST and CIFAR-10; CIFAR-10 by default
        models={"mlp": ("FC", {"name": "mlp", "hidden": (128, 128)}),   # §4 MNIST FC 784→128→128→10
                "lenet": ("CONV", {"name": "lenet"}),              # §4 MNIST CONV (2 conv 5×5 + pool): our LeNet
                "cifar_conv": ("CONV", {"name": "cifar_conv"})},   # §4 CIFAR-10 CONV (VGG-like, BN, dropout)
        models_list={"mnist": "mlp,lenet", "cifar10": "cifar_conv"},    # §4
        train=dict(batch_size=64, lr=1e-3, optimizer="adam",      # §4: Adam, lr 1e-3, batch 64,
                   schedule="multistep", milestones=(10, 20, 30), gamma=0.1,  # StepLR(step 10, γ 0.1)
                   weight_decay=0.0, val_fraction=0.1, patience=None),  # fixed epochs (§4); best val. epoch: ours
        accuracy_floor={"mnist": 0.9, "cifar10": 0.8},           # our default (§4: CONV ≈ 87 %, MNIST ≥ 98 %)
        n_seeds=5,                                                 # our default (≥ 5 networks per architecture)
        n_train=None, n_test=None,                                 # §4 the whole splits
        epochs={"mnist": 25, "cifar10": 40},                       # §4
        n_attack=1000,                                             # our default (§1.2: 256 for L∞, 2048 others)
        pgd_eps={"mnist": 0.12, "cifar10": 0.04},                  # §1.2: ε the analysis scripts load
        pgd_steps=1000,                                            # §1.2: max_iter 1000 (our step ε/10)
        cw_steps={"mnist": 1000, "cifar10": 200},                  # §1.2: C&W / EAD max_iter
        cw_search={"mnist": 50, "cifar10": 30},                    # §1.2: binary_search_steps
        l0_max_pixels=50,                                          # §1.2: L0 max_iter 50 pixels
        n_rubbish=500,                                             # our default
        k=300, k_layer=300, k_input=300,                           # §2 Methods 1 and 2: k = 300 for FC/CONV
        k_sweep=(20, 50, 100, 200, 300),                           # our default
        embedding="umap",                                          # §3.1
        umap_n_test=2000, umap_n_adv=500, snnl_n=500, snnl_grid=61),    # our default
    "03_representation_similarity": dict(
        # In notebook 03's own settings keys. Source: shared/papers/paperC_cka.md (§ named per line);
        # "our default" where the paper is silent (its training code is not released, spec §2).
        dataset="cifar10",                                         # §2 Datasets (CIFAR-10; ImageNet subsets not here)
        model=dict(name="wide_resnet", depth=28),                  # §2 Architectures: pre-activation WRN-28-k
        width_option="widen", width=4,                             # §2/§3: WRN-28-4, the released checkpoints
        train=dict(lr=0.1, augment={"padding": 4, "flip": True}),  # §2 Datasets: RandomCrop 32 pad 4 + flip; lr our default
        n_seeds=5,                                                 # our default (≥ 5 networks per regime)
        epochs=200,                                                # our default (epochs unverified, §2)
        n_train=None,                                              # the whole training split
        n_test=10_000,                                             # §1.1: the 10k test images
        eps_linf=8 / 255, eps_l2=1.0,                              # §2 TrainAttack: ℓ∞ 0.031, ℓ₂ 1.0
        train_steps=10,                                            # §2 TrainAttack: 10 steps
        attack_bn="train",                                         # our default (Madry / Rice et al. craft in train mode)
        eval_steps=20,                                             # §2 EvalAttack: PGD-20
        robust_steps=50, robust_restarts=5, n_robust=1000,         # our default (reported robust accuracy)
        cka_batch_size=1024, cka_passes=3,                         # §1.1: --batch_size 1024, 3 passes
        diag_batch_sizes=(256, 1024),                              # our default (estimator diagnostics)
        overfit_n_train=None,                                      # our default (protocol unverified, §3.4): full split
        overfit_epochs=200, overfit_width=4,                       # our default: the main WRN-28-4, Rice et al.'s 200 epochs
        overfit_train_steps=10,                                    # §2 TrainAttack: 10 steps (Rice et al. too)
        overfit_eval_every=10,                                     # our default (every 10th of the per-epoch checkpoints)
        overfit_batch_size=128,                                    # our default
        widths=(1, 2, 4, 8, 10),                                   # §2 Architectures: WRN-28-k, k = 1…10 (sweep unverified)
        width_n_train=None, width_epochs=100),                     # our default
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
        epochs=110, at_epochs=None, patience=None,                # §3 AT.py: 110 epochs (None: PGD-AT as `epochs`), no early stopping
        batch_size=128, lr=0.1,                                   # §3 common: SGD lr 0.1, batch 128
        train_extra=dict(schedule="multistep", milestones=[100, 105], gamma=0.1,  # §3 AT.py: MultiStep [100,105] ×0.1
                         momentum=0.9, nesterov=False, weight_decay=5e-4,  # §3: momentum 0.9 (no Nesterov), wd 5e-4
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
        throughput_repeats=5,                                     # our default (timing repeats, §8 item 8: time both)
        accuracy_floor=0.7,                                       # our default (below it a model is left out)
        matched_rf=None,                                          # the digits CNN's matched-receptive-field design only
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


def for_dataset(name: str, value, dataset: str):
    """The value of setting ``name`` for ``dataset``: ``value[dataset]`` when ``value`` is a dict keyed by
    data set names (a paper's per-data-set choice, e.g. ``{"mnist": 25, "cifar10": 40}``), else ``value``.

    Raises ``ValueError`` when such a dict has no entry for ``dataset``.
    """
    if isinstance(value, dict) and value and set(value) <= set(DATA) | {"digits"}:
        if dataset not in value:
            raise ValueError(f"setting {name!r} has no value for dataset {dataset!r}; given for: "
                             + ", ".join(sorted(value)))
        return value[dataset]
    return value


_TRAINING_DEFENCES_01 = ("adversarial", "gaussian_noise", "label_smoothing")


def _grid_01(s):
    trains, evals = [], []
    (c, h, w), n_train, _ = DATA[s["dataset"]]
    n_train = s["n_train"] or n_train
    image_bytes = c * h * w * 4
    n_seeds = len(s["seeds"])
    for arch in s["architectures"]:
        model = {"name": arch, **s["model_options"].get(arch, {})}
        epochs = min(s["epochs"], s["arch_train"].get(arch, {}).get("epochs", s["epochs"]))
        for defence in ["none"] + [d for d in s["defences"] if d in _TRAINING_DEFENCES_01]:
            # adversarial: the attack's steps plus the update; Gaussian noise: as the notebook trains it, one pass
            passes = 1 + s["at_steps"] if defence == "adversarial" else 1
            # per seed, the full model plus 10 leave-one-out models (each trained without one class: 9/10 of the data)
            trains.append(TrainJob(f"{arch} / {defence}: full", model, s["dataset"], n_seeds, epochs, n_train, passes))
            trains.append(TrainJob(f"{arch} / {defence}: leave-one-out", model, s["dataset"], 10 * n_seeds, epochs,
                                   n_train * 9 // 10, passes))
        # Black-box attacks on every defended full model: binary search over the levels (1 + log2 runs),
        # each at most popsize × max_iter forward queries per image.
        for attack, levels in (("pixel", s["pixel_levels"]), ("threshold", s["threshold_levels"])):
            budget = s["attack_budget"][attack]
            runs = 1 + math.ceil(math.log2(len(levels)))
            queries = runs * budget["popsize"] * budget["max_iter"]
            evals.append(EvalJob(f"{arch}: {attack} attack ({s['optimizer']}, ≤{queries:,} queries/image)", model,
                                 s["dataset"], len(s["defences"]) * n_seeds, s["n_attack"], queries / 3, image_bytes))
    return trains, evals


def _grid_02(s):
    ds = s["dataset"]
    s = {k: for_dataset(k, v, ds) for k, v in s.items()}
    (c, h, w), n_train, _ = DATA[ds]
    n_train = s["n_train"] or n_train
    trains, evals = [], []
    for key in s["models_list"].split(","):
        label, model = s["models"][key.strip()]
        trains.append(TrainJob(f"{ds}: {label} ({model['name']})", model, ds, s["n_seeds"], s["epochs"], n_train))
        for name, passes in ((f"L∞ PGD-{s['pgd_steps']}", s["pgd_steps"]),
                             (f"L2 C&W ({s['cw_search']} × {s['cw_steps']})", s["cw_search"] * s["cw_steps"]),
                             (f"L1 EAD ({s['cw_search']} × {s['cw_steps']})", s["cw_search"] * s["cw_steps"]),
                             (f"L0 pixel ({s['l0_max_pixels']} px × {10 ** c} values)",
                              s["l0_max_pixels"] * 10 ** c / 3)):
            # two panels (matched / unmatched) except PGD, whose settings do not depend on the panel
            evals.append(EvalJob(f"{ds} {label}: {name}", model, ds, s["n_seeds"] * (1 if "PGD" in name else 2),
                                 s["n_attack"], passes, c * h * w * 4))
        # Methods 1 and 2 and the SNNL run on activations (CPU/GPU linear algebra), not counted here.
    return trains, evals


def _grid_03(s):
    (c, h, w), n_train, n_test = DATA[s["dataset"]]
    n_train = s["n_train"] or n_train
    n_test = min(s["n_test"] or n_test, n_test)
    opt = s["width_option"]

    def model(width):
        return {**s["model"], opt: width}

    def name(width):
        return _model_label(model(width))

    m, seeds, steps = model(s["width"]), s["n_seeds"], s["train_steps"]
    of_train = s["overfit_n_train"] or DATA[s["dataset"]][1]
    width_train = s["width_n_train"] or DATA[s["dataset"]][1]
    trains = [TrainJob(f"{name(s['width'])} standard", m, s["dataset"], seeds, s["epochs"], n_train),
              TrainJob(f"{name(s['width'])} PGD-{steps} L∞ and L2", m, s["dataset"], 2 * seeds, s["epochs"], n_train,
                       1 + steps),
              # robust-overfitting runs (L∞ and the matched standard control) keep every epoch's state
              TrainJob(f"{name(s['overfit_width'])} robust overfitting, PGD-{s['overfit_train_steps']} L∞",
                       model(s["overfit_width"]), s["dataset"], seeds, s["overfit_epochs"], of_train,
                       1 + s["overfit_train_steps"], states_per_model=s["overfit_epochs"] + 1),
              TrainJob(f"{name(s['overfit_width'])} robust overfitting, standard control", model(s["overfit_width"]),
                       s["dataset"], seeds, s["overfit_epochs"], of_train, states_per_model=s["overfit_epochs"] + 1)]
    for k in s["widths"]:
        # one standard and one L∞ model per width and seed: (1 + (1 + steps)) / 2 passes per image on average
        trains.append(TrainJob(f"{name(k)} width sweep (standard + L∞)", model(k), s["dataset"], 2 * seeds,
                               s["width_epochs"], width_train, (2 + steps) / 2))
    cka = s["cka_passes"] / 3  # forward passes of the test images per CKA matrix (a third of a training pass)
    n_ckpt = len(range(s["overfit_eval_every"] - 1, s["overfit_epochs"], s["overfit_eval_every"])) + 1
    evals = [EvalJob(f"PGD-{s['eval_steps']} adversarial test features (L∞, L2)", m, s["dataset"], 3 * seeds * 2,
                     n_test, s["eval_steps"], c * h * w * 4),
             EvalJob(f"PGD-{s['robust_steps']} × {s['robust_restarts']} reported robust accuracy (L∞, L2)", m,
                     s["dataset"], 3 * seeds * 2, s["n_robust"], s["robust_steps"] * s["robust_restarts"]),
             EvalJob(f"minibatch CKA ({s['cka_batch_size']}-image batches × {s['cka_passes']} passes), "
                     "within / across models, clean and adversarial", m, s["dataset"], 8 * seeds, n_test, cka),
             EvalJob(f"robust-overfitting checkpoints: PGD-{s['eval_steps']} and CKA", model(s["overfit_width"]),
                     s["dataset"], 2 * seeds * n_ckpt, n_test, s["eval_steps"] + cka)]
    return trains, evals


def _model_label(model: dict) -> str:
    """Short readable name of a model spec: ``wide_resnet depth=28 widen=4``."""
    opts = " ".join(f"{k}={v}" for k, v in model.items() if k != "name")
    return f"{model['name']} {opts}".strip()


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
            for training, passes, epochs in (("standard", 1, s["epochs"]), ("PGD-AT", 1 + s["at_steps"], s["at_epochs"] or s["epochs"])):
                trains.append(TrainJob(f"{label}: {training}", m, s["data"]["name"], s["n_seeds"], epochs,
                                       n_train, passes))
            evals.append(EvalJob(f"{label}: PGD-{a['pgd_steps']}, FGSM, DeepFool, L2 PGD, ε sweep", m,
                                 s["data"]["name"], 2 * s["n_seeds"], n_eval, metric_passes))
            evals.append(EvalJob(f"{label}: '{s['ensemble']}' attack ensemble", m, s["data"]["name"],
                                 len(s["ensemble_trainings"]) * s["n_seeds"], n_ens, ens))
    for extra in s["extra_architectures"]:
        for strides in extra["strides"]:
            m = {**extra["model"], "strides": strides, "head": "avg", "upsample": 1}
            label = f"{m['name']} {strides}"
            trains.append(TrainJob(f"{label}: PGD-AT", m, s["data"]["name"], s["extra_seeds"], s["at_epochs"] or s["epochs"], n_train,
                                   1 + s["at_steps"]))
            evals.append(EvalJob(f"{label}: PGD-{a['pgd_steps']} ... and the '{s['ensemble']}' ensemble", m,
                                 s["data"]["name"], s["extra_seeds"], n_eval,
                                 metric_passes + ("pgd_at" in s["ensemble_trainings"]) * ens * n_ens / n_eval))
    return trains, evals


GRIDS = {"01_raw_zero_shot": _grid_01, "02_manifold_proximity": _grid_02,
         "03_representation_similarity": _grid_03, "04_class_selectivity": _grid_04, "05_feature_maps": _grid_05}


def notebook_plan(notebook: str, overrides: dict | None = None) -> NotebookPlan:
    """The full-profile work of one notebook (settings overridden by ``overrides``, as ``-p`` does).

    ``overrides`` holds ``-p NAME VALUE`` pairs; names that are not settings of the notebook are
    ignored (another notebook's parameter), and an ``overrides`` entry (the notebooks' generic dict of
    settings) is merged key by key, as :meth:`reprobust.context.NotebookContext.settings` does.
    """
    from .context import _merged

    s = full_settings(notebook)
    overrides = dict(overrides or {})
    generic = overrides.pop("overrides", None) or {}
    for source in (overrides, generic):
        for k, v in source.items():
            if k in s and v is not None:
                s[k] = _merged(s[k], v)
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
