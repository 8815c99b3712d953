"""The one training loop of the project, and cached training by configuration.

:func:`fit` covers every regime the notebooks need: standard training, adversarial training
(PGD/FGSM examples replace the clean batch, Madry et al. 2018), label smoothing, Gaussian-noise
augmentation, a custom loss (e.g. CapsNet's margin loss) and an extra-loss hook computed on
captured activations (e.g. the class-selectivity regulariser).

:func:`trained_model` is a pure function of a configuration dictionary that reads and writes the
cache, so an expensive grid point can be computed anywhere and reused everywhere.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import shutil

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .attacks import fgsm, pgd
from .augment import random_crop_flip
from .cache import Cache, atomic_write_bytes
from .data import leave_one_out, load_dataset, stratified_batches, validation_split
from .defences import wrap_defence
from .device import resolve_device
from .features import ActivationRecorder
from .models import build_model
from .validation import check_choice, check_range

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step", "multistep", "exponential", "one_decay")

#: Named losses ``fn(logits, y, label_smoothing) -> scalar``; "ce" is cross-entropy.
LOSSES: dict = {}
#: Named regularisers: ``factory(model, **params) -> (layers, fn(activations, y, logits) -> scalar)``,
#: the scalar is *added* to the loss.
REGULARIZERS: dict = {}


#: Modules that register regularisers when imported; looked up lazily so that a spec naming one
#: trains in a fresh process (e.g. a cluster job) without the caller importing it first.
REGULARIZER_PROVIDERS = {"class_selectivity": "reprobust.metrics.selectivity"}


def _regularizer(name):
    if name not in REGULARIZERS and name in REGULARIZER_PROVIDERS:
        import importlib

        importlib.import_module(REGULARIZER_PROVIDERS[name])
    return REGULARIZERS[check_choice("regularizer", name, set(REGULARIZERS) | set(REGULARIZER_PROVIDERS))]


def register_loss(name):
    def wrap(fn):
        LOSSES[name] = fn
        return fn
    return wrap


def register_regularizer(name):
    def wrap(factory):
        REGULARIZERS[name] = factory
        return factory
    return wrap


@register_loss("ce")
def cross_entropy(logits, y, label_smoothing: float = 0.0):
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing)


@register_loss("margin")
def capsule_margin(logits, y, label_smoothing: float = 0.0):
    """CapsNet margin loss (Sabour et al. 2017 eq. 4) on ``logits = log ‖v_c‖``; smoothed targets if asked."""
    from .models.capsnet import margin_loss  # lazy: models must not import train

    if label_smoothing > 0:
        n = logits.shape[1]
        y = F.one_hot(y, n).to(logits.dtype) * (1 - label_smoothing) + label_smoothing / n
    return margin_loss(logits, y)


@register_regularizer("capsule_reconstruction")
def capsule_reconstruction(model, weight: float = 0.0005):
    """CapsNet reconstruction regulariser (Sabour et al. 2017 §4.1): ``weight`` × the sum of squared
    pixel errors of the image decoded from the true class's capsule, averaged over the batch.

    Needs a CapsNet built with ``reconstruction=True``; records its raw input (``pixels``) and class
    capsules, so under adversarial training it reconstructs the adversarial input, as the original does.
    """
    if getattr(model, "decoder", None) is None:
        raise ValueError("regularizer 'capsule_reconstruction' needs a model built with "
                         "build_model('capsnet', ..., reconstruction=True)")

    def fn(activations, y, logits):
        x, v = activations["pixels"], activations["class_caps"]
        recon = model.reconstruct(v.float(), y)
        return weight * (recon - x.float()).pow(2).flatten(1).sum(1).mean()

    return ["pixels", "class_caps"], fn


def _lr_at(schedule, lr, epoch, epochs, milestones=(), gamma=0.1):
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))
    if schedule == "multistep":
        return lr * multistep_factor(epoch, milestones, gamma)
    if schedule == "exponential":
        return lr * gamma ** epoch
    if schedule == "one_decay":  # Rice et al. 2020's set-up for robust overfitting: one ÷10 decay, then a long phase
        return lr if epoch < max(1, round(0.4 * epochs)) else 0.1 * lr
    return lr * (0.1 ** (epoch // max(1, epochs // 3)))  # "step": ÷10 at 1/3 and 2/3


def multistep_factor(epoch: int, milestones, gamma) -> float:
    """Learning-rate factor of a multi-step schedule at ``epoch`` (0-based).

    ``gamma`` is either one factor applied at every milestone (torch's ``MultiStepLR``: Paper E's PGD-AT,
    110 epochs, ``milestones=(100, 105)``, ``gamma=0.1``) or one factor per milestone, each multiplying
    the previous ones (Paper A's LeNet: 0.01 → 0.005 → 0.001 is ``milestones=(100, 150), gamma=(0.5, 0.2)``).

    Example
    -------
    >>> [round(multistep_factor(e, (2, 4), 0.1), 4) for e in range(6)]
    [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    """
    gammas = [float(gamma)] * len(milestones) if isinstance(gamma, (int, float)) else [float(g) for g in gamma]
    if len(gammas) != len(milestones):
        raise ValueError(f"gamma={gamma!r} needs one factor per milestone ({len(milestones)}) or a single number")
    factor = 1.0
    for m, g in zip(milestones, gammas):
        if epoch >= m:
            factor *= g
    return factor


def _resolve_auto(flag, dev) -> bool:
    """``None`` means on for CUDA only (mixed precision and channels-last change nothing on the CPU path)."""
    return dev.type == "cuda" if flag is None else bool(flag)


def _fit_signature(model, x, y, settings: dict) -> str:
    """Key identifying a training run for its resume checkpoint: the settings, the data's shape and a
    checksum of its labels, and the model's parameter names and shapes."""
    from .cache import config_key

    shapes = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    return config_key({"settings": settings, "x": list(x.shape), "y": int((y.long().cpu() * 31 + 7).sum()),
                       "model": shapes})


class _BatchNormTrainView(torch.nn.Module):
    """The model as an attack sees it with BatchNorm in *train* mode (batch statistics, as Madry et al. and
    Rice et al. craft their training attacks): ``eval()`` on the view does not reach the wrapped model."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def forward(self, x):
        return self.inner(x)


def _adversarial_batch(model, xb, yb, adv, seed):
    kind = adv.get("attack", "pgd")
    check_choice("adversarial attack", kind, ("pgd", "fgsm"))
    # "attack_bn": BatchNorm mode while crafting training attacks; "eval" (default, running statistics) or
    # "train" (batch statistics; running statistics are then also updated by the attack's forward passes)
    if check_choice("attack_bn", adv.get("attack_bn", "eval"), ("eval", "train")) == "train" and model.training:
        model = _BatchNormTrainView(model)
    if kind == "fgsm":
        return fgsm(model, xb, yb, eps=adv["eps"], norm=adv.get("norm", "linf")).x_adv
    return pgd(model, xb, yb, eps=adv["eps"], norm=adv.get("norm", "linf"), steps=adv.get("steps", 7),
               step_size=adv.get("step_size"), random_start=True, seed=seed).x_adv


def fit(model, x, y, *, epochs: int = 10, batch_size: int = 128, lr: float = 0.05, optimizer: str = "sgd",
        momentum: float = 0.9, weight_decay: float = 5e-4, schedule: str = "cosine", seed: int = 0,
        nesterov: bool = True, device=None, adversarial: dict | None = None, label_smoothing: float = 0.0,
        noise_std: float = 0.0, loss: str = "ce", regularizer: dict | None = None, stratified: bool = False,
        validation: tuple | None = None, patience: int | None = None, monitor: str = "accuracy",
        on_epoch_end=None, progress: bool = False, milestones=(), gamma=0.1, augment: dict | None = None,
        amp: bool | None = None, channels_last: bool | None = None, checkpoint_path=None) -> dict:
    """Train ``model`` in place on ``(x, y)``.

    Parameters
    ----------
    model : nn.Module
    x : Tensor (N, C, H, W) in [0, 1]; y : LongTensor (N,)
    epochs, batch_size, lr, momentum, weight_decay : training hyper-parameters
    optimizer : {'sgd', 'adam'}
    nesterov : bool, default True
        Nesterov momentum for SGD (Paper A's code); False gives plain heavy-ball momentum (Paper E's AT.py).
    schedule : {'constant', 'cosine', 'step'}, learning rate per epoch
    seed : int, seeds batch order, noise and attack starts (deterministic on CPU)
    adversarial : dict, optional
        ``{"attack": "pgd"|"fgsm", "norm": "linf"|"l2", "eps": float, "steps": int, "step_size": float}``;
        adversarial examples (crafted in eval mode) replace the clean batch.
    label_smoothing : float in [0, 1)
    noise_std : float ≥ 0, Gaussian-noise augmentation (clipped to [0, 1])
    loss : str, a key of :data:`LOSSES`
    regularizer : dict, optional, ``{"name": key of REGULARIZERS, **params}``
    stratified : bool, every class in every batch (:func:`reprobust.data.stratified_batches`)
    validation : (x_val, y_val), optional
        Held-out data scored after every epoch (``history["val_accuracy"]``); the weights of the best
        epoch are restored at the end (ties: the earliest), so the model is selected on validation
        data, never on the test set.
    patience : int, optional
        With ``validation``: stop once the monitored accuracy has not improved for this many epochs
        (``epochs`` is then the maximum). ``None`` trains all ``epochs``.
    monitor : {'accuracy', 'robust_accuracy'}
        What ``validation`` scores: clean accuracy, or accuracy under the ``adversarial`` attack
        (robust training selects on robust validation accuracy, as Rice et al. 2020 do).
    on_epoch_end : callable(epoch, model, history), optional, e.g. to snapshot checkpoints
    milestones, gamma : schedule ``'multistep'``: epochs where the rate is multiplied by ``gamma`` (one
        number, or one per milestone, see :func:`multistep_factor`); ``'exponential'``: ``lr · gamma^epoch``
        (Paper A's CapsNet: ``gamma = exp(-1/10)``)
    augment : dict, optional
        ``{"padding": 4, "flip": True, "pad_mode": "zeros"|"reflect"}``: random crop of the padded image
        and horizontal flip, per batch on the device (:func:`reprobust.augment.random_crop_flip`); applied
        before adversarial examples are crafted.
    amp : bool, optional
        bfloat16 autocast for the forward passes (training and the attack inside adversarial training).
        Default (None): on when training on CUDA, off on the CPU.
    channels_last : bool, optional
        Channels-last memory format for the model and batches. Default (None): CUDA only.
    checkpoint_path : path, optional
        Write the full training state there after every epoch and, when the file already holds the
        state of this same run, resume after its last epoch (:mod:`reprobust.checkpoint`): on the CPU a
        resumed run ends bit-identical to an uninterrupted one. The state is written after
        ``on_epoch_end`` and the validation (best epoch, early stop included), so ``on_epoch_end`` is
        not called again for epochs saved before the restart (an epoch interrupted after its hook ran
        is trained again and calls it again).

    Returns
    -------
    history : dict with lists ``loss`` and ``train_accuracy`` (one entry per epoch); with
        ``validation`` also ``val_accuracy``, ``best_epoch`` (1-based) and ``epochs_trained``
    """
    check_range("epochs", epochs, low=0)
    check_range("batch_size", batch_size, low=1)
    check_range("lr", lr, low=0, low_inclusive=False)
    check_range("label_smoothing", label_smoothing, low=0, high=1, high_inclusive=False)
    check_range("noise_std", noise_std, low=0)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("schedule", schedule, SCHEDULES)
    check_choice("loss", loss, LOSSES)
    check_choice("validation monitor", monitor, ("accuracy", "robust_accuracy"))
    if patience is not None:
        check_range("patience", patience, low=1)
        if validation is None:
            raise ValueError(f"patience={patience!r} needs validation data; pass validation=(x_val, y_val)")
    if monitor == "robust_accuracy" and not adversarial:
        raise ValueError("monitor='robust_accuracy' needs an adversarial training config; valid choices: accuracy")
    if schedule == "multistep":
        multistep_factor(0, milestones, gamma)  # validates gamma against milestones
    if augment is not None:
        unknown = set(augment) - {"padding", "flip", "pad_mode"}
        if unknown:
            raise ValueError(f"unknown augment option {sorted(unknown)[0]!r}; valid choices: flip, pad_mode, padding")
    dev = resolve_device(device)
    use_amp, use_cl = _resolve_auto(amp, dev), _resolve_auto(channels_last, dev)
    signature = None
    if checkpoint_path is not None:
        # Before moving anything: the signature must not depend on the device or memory format.
        signature = _fit_signature(model, x, y, dict(
            epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
            # nesterov only when off, so that the signatures of existing checkpoints are unchanged
            **({} if nesterov else {"nesterov": False}), weight_decay=weight_decay, schedule=schedule, seed=seed,
            adversarial=adversarial,
            label_smoothing=label_smoothing, noise_std=noise_std, loss=loss, regularizer=regularizer,
            stratified=stratified, milestones=list(milestones), gamma=gamma, augment=augment,
            amp=use_amp, channels_last=use_cl, patience=patience, monitor=monitor,
            validation=None if validation is None else [list(validation[0].shape),
                                                        int((validation[1].long().cpu() * 31 + 7).sum())]))
    model.to(dev)
    x, y = x.to(dev), y.to(dev)
    if use_cl and x.ndim == 4:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                              nesterov=nesterov and momentum > 0)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    loss_fn = LOSSES[loss]
    reg_layers, reg_fn = [], None
    if regularizer:
        reg = dict(regularizer)
        reg_layers, reg_fn = _regularizer(reg.pop("name", None))(model, **reg)
    history = {"loss": [], "train_accuracy": []}
    best = None  # (validation score, epoch, state dict)
    step = 0
    start = 0
    if checkpoint_path is not None:
        from .checkpoint import load_training_state, restore_training_state

        state = load_training_state(checkpoint_path, signature)
        if state is not None:
            restore_training_state(state, model=model, optimizer=opt, generator=gen)
            start, step, history = state["epoch"] + 1, state["step"], state["history"]
            extra = state.get("extra", {})
            if "best" in extra:
                b = extra["best"]
                best = (b["score"], b["epoch"], {k: v.to(dev) for k, v in b["state"].items()})
            if extra.get("stopped"):
                start = epochs  # the run had already stopped early
    for epoch in tqdm(range(start, epochs), desc="train", disable=not progress, mininterval=2, leave=False,
                      initial=start, total=epochs):
        for g in opt.param_groups:
            g["lr"] = _lr_at(schedule, lr, epoch, epochs, milestones, gamma)
        if stratified:
            batches = stratified_batches(y.cpu(), batch_size, gen)
        else:
            batches = torch.split(torch.randperm(len(y), generator=gen), batch_size)
        total, correct, seen = 0.0, 0, 0
        model.train()
        for idx in batches:
            idx = idx.to(dev)
            xb, yb = x[idx], y[idx]
            if augment is not None:
                xb = random_crop_flip(xb, gen, **augment)
            if noise_std > 0:
                noise = torch.randn(xb.shape, generator=gen).to(dev)
                xb = (xb + noise_std * noise).clamp(0, 1)
            if use_cl and xb.ndim == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)  # indexing and augmentation drop it
            if adversarial:
                with autocast():
                    xb = _adversarial_batch(model, xb, yb, adversarial, seed=seed * 100003 + step)
                model.train()
            with autocast():
                if reg_fn is not None:
                    with ActivationRecorder(model, reg_layers, detach=False) as rec:
                        logits = model(xb)
                    acts = rec.activations
                    if use_amp:  # regularisers average over units and classes: do it in float32
                        acts = {k: v.float() for k, v in acts.items()}
                    batch_loss = loss_fn(logits.float(), yb, label_smoothing) + reg_fn(acts, yb, logits)
                else:
                    logits = model(xb)
                    batch_loss = loss_fn(logits.float(), yb, label_smoothing)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            step += 1
            total += float(batch_loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        history["loss"].append(total / max(seen, 1))
        history["train_accuracy"].append(correct / max(seen, 1))
        if on_epoch_end is not None:
            on_epoch_end(epoch, model, history)
        stop = False
        if validation is not None:
            score = _validation_score(model, validation, adversarial if monitor == "robust_accuracy" else None,
                                      seed=seed)
            history.setdefault("val_accuracy", []).append(score)
            if best is None or score > best[0]:
                best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
            stop = patience is not None and epoch - best[1] >= patience
        if checkpoint_path is not None:
            from .checkpoint import save_training_state

            # After validation, so that the best epoch and an early stop survive a restart too.
            extra = {"stopped": stop}
            if best is not None:
                extra["best"] = {"score": best[0], "epoch": best[1],
                                 "state": {k: v.detach().cpu() for k, v in best[2].items()}}
            save_training_state(checkpoint_path, epoch=epoch, step=step, model=model, optimizer=opt,
                                generator=gen, history=history, signature=signature, extra=extra)
        if stop:
            break
    if validation is not None and best is not None:
        model.load_state_dict(best[2])
        history["best_epoch"] = best[1] + 1
        history["epochs_trained"] = len(history["loss"])
    model.eval()
    return history


def _validation_score(model, validation, adversarial, seed):
    """Clean accuracy on ``validation``, or accuracy under the training attack when ``adversarial``."""
    x_val, y_val = validation
    if adversarial:
        dev = next(model.parameters()).device
        model.eval()
        x_val = torch.cat([_adversarial_batch(model, xb.to(dev), yb.to(dev), adversarial, seed=seed).cpu()
                           for xb, yb in zip(torch.split(x_val, 512), torch.split(y_val, 512))])
    return accuracy(model, x_val, y_val)


@torch.no_grad()
def predict(model, x, *, batch_size: int = 1024, device=None) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (eval mode, batched), returned on CPU: ``(N, num_classes)``."""
    dev = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out = torch.cat([model(xb.to(dev)).cpu() for xb in torch.split(x, batch_size)])
    model.train(was)
    return out


def accuracy(model, x, y, **kw) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return float((predict(model, x, **kw).argmax(1) == y.cpu()).float().mean())


def spec_dataset(spec: dict):
    """The training/test data a spec describes (leave-one-out applied to both splits)."""
    data = dict(spec["data"])
    excluded = data.pop("exclude_class", None)
    ds = load_dataset(**data)
    return ds, excluded


def build_from_spec(spec: dict, ds=None):
    """Build the (untrained) model of a spec, seeded by ``spec['seed']``.

    ``spec['model']`` may hold ``input_defence``: ``{"name": "feature_squeezing" | "spatial_smoothing",
    **params}``, an input transformation of :mod:`reprobust.defences` built into the model, so that it is
    applied in training as well as at test time (the Raw Zero-Shot paper's "also during training" variant
    of spatial smoothing, spec §2.3).
    """
    if ds is None:
        ds, excluded = spec_dataset(spec)
    else:
        excluded = spec["data"].get("exclude_class")
    torch.manual_seed(spec.get("seed", 0))
    opts = dict(spec["model"])
    name = opts.pop("name")
    defence = dict(opts.pop("input_defence", None) or {})
    num_classes = ds.num_classes - (excluded is not None)
    model = build_model(name, input_shape=ds.input_shape, num_classes=num_classes, mean=ds.mean, std=ds.std, **opts)
    if defence:
        model = wrap_defence(model, defence.pop("name", None), **defence)
    return model


def trained_model(spec: dict, *, cache: Cache | None = None, device=None, checkpoints: bool = False,
                  progress: bool = False, resume: bool | None = None):
    """Train (or load from the cache) the model a configuration describes.

    Parameters
    ----------
    spec : dict
        ``{"data": {load_dataset kwargs, "exclude_class": int | None},
        "model": {"name": str, **options}, "train": {fit kwargs}, "seed": int}``.
        ``train`` may hold ``val_fraction``: a stratified share of the training data held out (by the
        spec's seed) as ``fit``'s ``validation`` for early stopping (``patience``) and best-epoch
        selection.
        Everything that changes the result must be in the spec: it is the cache key.
    cache : Cache, optional (default: the default cache folder)
    device : str or torch.device, optional
    checkpoints : bool, default False
        Also return the state dict after every epoch (cached with the model).
    resume : bool, optional
        Keep the training state after every epoch under ``<cache>/_resume/<key>/`` so that an
        interrupted training (a killed job) restarts from its last finished epoch, bit-identical on the
        CPU (:mod:`reprobust.checkpoint`); the folder is removed once the model is cached. Default
        (None): on when training on CUDA (long runs), off on the CPU.

    Returns
    -------
    model : nn.Module in eval mode on ``device`` (with ``model.history`` set)
    states : list of state dicts, only when ``checkpoints=True``

    Example
    -------
    >>> spec = {"data": {"name": "digits"}, "model": {"name": "mlp"},
    ...         "train": {"epochs": 5}, "seed": 0}
    >>> net = trained_model(spec)
    """
    for key in ("data", "model", "train"):
        if key not in spec:
            raise ValueError(f"model spec is missing {key!r}; a spec needs keys: data, model, train, seed")
    cache = cache or Cache()
    dev = resolve_device(device)
    ds, excluded = spec_dataset(spec)

    kind = "checkpoints" if checkpoints else "model"
    use_resume = dev.type == "cuda" if resume is None else bool(resume)
    resume_dir = cache.root / "_resume" / f"{kind}-{cache.paths(kind, spec)[0].stem}"

    def compute():
        model = build_from_spec(spec, ds)
        x, y = ds.x_train, ds.y_train
        if excluded is not None:
            x, y = leave_one_out(x, y, excluded)
        train_kw = dict(spec["train"])
        val_fraction = train_kw.pop("val_fraction", None)
        if val_fraction:
            (x, y), train_kw["validation"] = validation_split(x, y, val_fraction, seed=spec.get("seed", 0))
        states = []
        hook = None
        if checkpoints and use_resume:
            # Per-epoch states go to disk so that a resumed run still returns all of them.
            def hook(epoch, m, hist):
                buf = io.BytesIO()
                torch.save({k: v.detach().cpu().clone() for k, v in m.state_dict().items()}, buf)
                atomic_write_bytes(resume_dir / f"epoch-{epoch:04d}.pt", buf.getvalue())
        elif checkpoints:
            def hook(epoch, m, hist):
                states.append({k: v.detach().cpu().clone() for k, v in m.state_dict().items()})
        extra = {"checkpoint_path": resume_dir / "state.pt"} if use_resume else {}
        hist = fit(model, x, y, seed=spec.get("seed", 0), device=dev, on_epoch_end=hook, progress=progress,
                   **extra, **train_kw)
        if checkpoints and use_resume:
            # every epoch trained (early stopping may end before spec["train"]["epochs"])
            states = [torch.load(resume_dir / f"epoch-{e:04d}.pt", map_location="cpu", weights_only=True)
                      for e in range(len(hist["loss"]))]
        out = {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": hist}
        if checkpoints:
            out["checkpoints"] = states
        return out

    entry = cache.get_or_compute(kind, spec, compute)
    if use_resume and resume_dir.exists():
        shutil.rmtree(resume_dir, ignore_errors=True)  # the model is cached now
    model = build_from_spec(spec, ds)
    model.load_state_dict(entry["state_dict"])
    model.to(dev).eval()
    model.history = entry["history"]
    if checkpoints:
        return model, entry["checkpoints"]
    return model


def load_state(spec: dict, state_dict: dict, *, device=None):
    """A fresh model of ``spec`` holding ``state_dict`` (e.g. one of the checkpoints), in eval mode."""
    model = build_from_spec(spec)
    model.load_state_dict(state_dict)
    return model.to(resolve_device(device)).eval()


def clone_model(model):
    """A deep copy in eval mode (e.g. to attach test-time defences without touching the original)."""
    return copy.deepcopy(model).eval()
