"""Feature-map size and robustness (Xu, Zhang, Wang & Yang, "Understanding Adversarial Robustness from
Feature Maps of Convolutional Layers", arXiv 2202.12435 / IEEE TNNLS 2024).

Two families of tools:

*Synthetic theory check.* One random convolution → ReLU → global pooling "unit". The paper's argument
(reconstructed in the spec, not quoted): if the per-position output changes ``Δz_ij`` are zero-mean,
bounded by ``B = ε‖w‖₁`` and independent, Hoeffding gives for global **average** pooling

    P(|ΔGAP| ≥ γ) ≤ 2 exp(−HW γ² / (2B²))   ⇒   γ ∝ (HW)^(−1/2),

so the pooled change shrinks with slope −½ against the map area on log–log axes, while for global
**max** pooling a union bound gives γ ≈ B √(2 ln(2HW/p)), which grows slowly. The functions below grow
the pre-pool map in three ways (conv stride, input size with independent noise, nearest upsampling
with the perturbation applied *before* upsampling as the authors' code does) under three perturbations
(random sign·ε, Gaussian, and the worst case for a linear readout), so the notebook can show where the
assumptions hold and where they fail.

*Trained-network measurements.* Pre-pool map size, receptive field of the conv stack, the relative
perturbation of the pooled features, consistency accuracy ``P[f(x+δ) = f(x)]`` and a cost profiler
(FLOPs, memory, wall time per forward pass).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_choice, check_range

GROWTHS = ("stride", "input_size", "upsample", "upsample_independent")
PERTURBATIONS = ("sign", "gaussian", "worst_case")
POOLINGS = ("avg", "max")


# --------------------------------------------------------------------------------------------------
# Synthetic theory check
# --------------------------------------------------------------------------------------------------

def random_conv_weight(channels: int = 16, in_channels: int = 1, kernel_size: int = 3, seed: int = 0) -> torch.Tensor:
    """He-scaled Gaussian filters of a random convolution.

    Returns
    -------
    Tensor (channels, in_channels, kernel_size, kernel_size)

    Example
    -------
    >>> random_conv_weight(4, seed=0).shape
    torch.Size([4, 1, 3, 3])
    """
    check_range("channels", channels, low=1)
    check_range("kernel_size", kernel_size, low=1)
    gen = torch.Generator().manual_seed(seed)
    fan_in = in_channels * kernel_size**2
    return torch.randn(channels, in_channels, kernel_size, kernel_size, generator=gen) * math.sqrt(2.0 / fan_in)


def conv_relu_pool(x: torch.Tensor, weight: torch.Tensor, *, pooling: str = "avg", stride: int = 1,
                   upsample: int = 1) -> torch.Tensor:
    """The synthetic unit: [nearest upsampling] → conv (padding k//2) → ReLU → global pooling.

    Parameters
    ----------
    x : Tensor (N, C_in, H, W)
    weight : Tensor (C, C_in, k, k)
    pooling : {'avg', 'max'}
    stride : int ≥ 1, convolution stride
    upsample : int ≥ 1, nearest-neighbour factor applied to ``x`` first

    Returns
    -------
    Tensor (N, C), the pooled feature vector.
    """
    check_choice("pooling", pooling, POOLINGS)
    if upsample > 1:
        x = F.interpolate(x, scale_factor=upsample, mode="nearest")
    z = F.relu(F.conv2d(x, weight, stride=stride, padding=weight.shape[-1] // 2))
    return z.mean(dim=(2, 3)) if pooling == "avg" else z.amax(dim=(2, 3))


def _growth_setting(growth: str, side: int, sides) -> dict:
    """Input side, conv stride and upsampling factor giving a ``side × side`` pre-pool map."""
    largest, smallest = max(sides), min(sides)
    if growth == "stride":
        if largest % side:
            raise ValueError(f"map side {side} does not divide the largest side {largest} (needed for growth='stride')")
        return dict(input_side=largest, stride=largest // side, upsample=1)
    if growth == "input_size":
        return dict(input_side=side, stride=1, upsample=1)
    if side % smallest:
        raise ValueError(f"map side {side} is not a multiple of the smallest side {smallest} (needed for growth={growth!r})")
    return dict(input_side=smallest, stride=1, upsample=side // smallest)


def synthetic_sensitivity(*, growths=GROWTHS, perturbations=PERTURBATIONS, poolings=POOLINGS,
                          map_sides=(8, 16, 32, 64), epsilon: float = 8 / 255, trials: int = 200,
                          channels: int = 16, kernel_size: int = 3, seed: int = 0):
    """Pooled-output change of a random conv → ReLU → global-pool unit versus pre-pool map size.

    For every growth mode and map side, ``trials`` random images ``x ~ U[0,1]`` and perturbations ``δ``
    are drawn, and ``‖pool(x+δ) − pool(x)‖₂`` (over the ``channels`` pooled outputs) is recorded.

    Growth modes (how the ``s × s`` pre-pool map is obtained):

    - ``'stride'``: input of the largest side, conv stride ``largest / s``;
    - ``'input_size'``: an ``s × s`` input with independent perturbation entries, stride 1;
    - ``'upsample'``: an input of the smallest side, ``δ`` drawn at that resolution, then ``x + δ``
      nearest-upsampled by ``s / smallest`` (the authors' code), so ``δ``'s entries are replicated;
    - ``'upsample_independent'``: the same upsampled image, but ``δ`` drawn independently at the
      upsampled resolution (the contrasting case: the bound's independence assumption holds again).

    Perturbations: ``'sign'`` (``ε·sign`` with random signs), ``'gaussian'`` (i.i.d. ``N(0, ε²)``),
    ``'worst_case'`` (``ε·sign ∇ₓ ⟨r, pool(x)⟩`` for a fixed random readout ``r``, the first-order
    worst case of a linear readout; computed separately for each pooling head).

    Parameters
    ----------
    growths, perturbations, poolings : iterables of names (see :data:`GROWTHS`, :data:`PERTURBATIONS`,
        :data:`POOLINGS`)
    map_sides : sequence of int
        Pre-pool map sides; for ``'stride'`` each must divide the largest, for ``'upsample'`` each
        must be a multiple of the smallest.
    epsilon : float > 0, default 8/255
    trials : int ≥ 2, default 200
    channels, kernel_size : int, the random convolution (one input channel)
    seed : int, seeds the filters, the readout and every draw

    Returns
    -------
    pandas.DataFrame
        One row per (growth, perturbation, pooling, map side) with columns ``growth, perturbation,
        pooling, input_side, stride, upsample, map_side, map_area, mean_change, p95_change``
        (``p95_change`` is the empirical γ at p = 0.05).

    Example
    -------
    >>> df = synthetic_sensitivity(growths=["input_size"], perturbations=["sign"], trials=50)
    >>> sorted(df.columns)[:3]
    ['growth', 'input_side', 'map_area']
    """
    import pandas as pd

    growths = [check_choice("growth", g, GROWTHS) for g in growths]
    perturbations = [check_choice("perturbation", p, PERTURBATIONS) for p in perturbations]
    poolings = [check_choice("pooling", p, POOLINGS) for p in poolings]
    check_range("epsilon", epsilon, low=0, low_inclusive=False)
    check_range("trials", trials, low=2)
    sides = sorted(int(s) for s in map_sides)
    if not sides or sides[0] < 1:
        raise ValueError(f"map_sides={tuple(map_sides)!r} must be positive integers")
    weight = random_conv_weight(channels, 1, kernel_size, seed=seed)
    readout = torch.randn(channels, generator=torch.Generator().manual_seed(seed + 1)) / math.sqrt(channels)

    rows = []
    for gi, growth in enumerate(growths):
        for side in sides:
            st = _growth_setting(growth, side, sides)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + gi * 10_007 + side)
            n = st["input_side"]
            x = torch.rand(trials, 1, n, n, generator=gen)
            if growth == "upsample_independent":
                # upsample the clean image first; δ is then drawn (below) at the upsampled resolution
                x = F.interpolate(x, scale_factor=st["upsample"], mode="nearest")
            random_deltas = {
                "sign": epsilon * (2 * torch.randint(0, 2, x.shape, generator=gen) - 1).to(x.dtype),
                "gaussian": epsilon * torch.randn(x.shape, generator=gen),
            }
            unit = dict(stride=st["stride"], upsample=1 if growth == "upsample_independent" else st["upsample"])
            for pooling in poolings:
                clean = conv_relu_pool(x, weight, pooling=pooling, **unit)
                for pert in perturbations:
                    if pert == "worst_case":
                        xg = x.clone().requires_grad_(True)
                        (g,) = torch.autograd.grad((conv_relu_pool(xg, weight, pooling=pooling, **unit) @ readout).sum(), xg)
                        delta = epsilon * g.sign()
                    else:
                        delta = random_deltas[pert]
                    with torch.no_grad():
                        change = (conv_relu_pool(x + delta, weight, pooling=pooling, **unit) - clean).norm(dim=1)
                    rows.append(dict(growth=growth, perturbation=pert, pooling=pooling, **st,
                                     map_side=side, map_area=side * side,
                                     mean_change=float(change.mean()),
                                     p95_change=float(torch.quantile(change.detach(), 0.95))))
    return pd.DataFrame(rows)


def fit_loglog_slope(map_area, values) -> float:
    """Least-squares slope of ``log(values)`` on ``log(map_area)``.

    Parameters
    ----------
    map_area, values : array-like (n,), n ≥ 2, positive

    Returns
    -------
    float, the exponent ``a`` in ``values ∝ map_area^a`` (−½ is the average-pooling bound).

    Example
    -------
    >>> round(fit_loglog_slope([1, 4, 16], [1.0, 0.5, 0.25]), 3)
    -0.5
    """
    a = np.asarray(map_area, dtype=float)
    v = np.asarray(values, dtype=float)
    if a.shape != v.shape or a.size < 2:
        raise ValueError(f"map_area and values need the same length >= 2, got {a.shape} and {v.shape}")
    if (a <= 0).any() or (v <= 0).any():
        raise ValueError("map_area and values must be positive for a log-log fit")
    return float(np.polyfit(np.log(a), np.log(v), 1)[0])


def synthetic_slopes(df, value: str = "mean_change"):
    """Fitted log–log slope per (growth, perturbation, pooling) of a :func:`synthetic_sensitivity` table.

    Returns
    -------
    pandas.DataFrame with columns ``growth, perturbation, pooling, slope``.
    """
    import pandas as pd

    check_choice("value", value, ("mean_change", "p95_change"))
    rows = [dict(growth=g, perturbation=p, pooling=q, slope=fit_loglog_slope(d["map_area"], d[value]))
            for (g, p, q), d in df.groupby(["growth", "perturbation", "pooling"], sort=False)]
    return pd.DataFrame(rows)


def bound_shape(map_area, pooling: str, anchor: float, p: float = 0.05) -> np.ndarray:
    """The reconstructed bound's dependence on the map area, scaled to ``anchor`` at the smallest area.

    Average pooling: ``γ ∝ (HW)^(−1/2)``; max pooling: ``γ ∝ √(ln(2HW/p))``.

    Returns
    -------
    ndarray (n,), for overlaying on the log–log plot (the constants are not reproduced).
    """
    check_choice("pooling", pooling, POOLINGS)
    a = np.asarray(map_area, dtype=float)
    a0 = a.min()
    if pooling == "avg":
        return anchor * (a / a0) ** -0.5
    return anchor * np.sqrt(np.log(2 * a / p) / np.log(2 * a0 / p))


# --------------------------------------------------------------------------------------------------
# Trained networks: map size, receptive field, pooled-feature perturbation, consistency, cost
# --------------------------------------------------------------------------------------------------

_GLOBAL_POOL_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def find_global_pool(model: nn.Module) -> nn.Module:
    """The module whose input is the pre-pool feature map.

    ``model.pool`` when present (the registry's CNN), else the last ``AdaptiveAvg/MaxPool2d`` or module
    named like a global pool. Raises ``ValueError`` when none exists (e.g. a dense head).
    """
    pool = getattr(model, "pool", None)
    if isinstance(pool, nn.Module) and not isinstance(pool, nn.Flatten):
        return pool
    found = [m for m in model.modules() if isinstance(m, _GLOBAL_POOL_TYPES) or type(m).__name__ == "GlobalPool"]
    if not found:
        raise ValueError(f"model {type(model).__name__} has no global pooling layer; valid heads: avg, max")
    return found[-1]


def _dummy(model, input_shape, batch=1):
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    return torch.zeros(batch, *input_shape, device=device)


@torch.no_grad()
def prepool_map_size(model: nn.Module, input_shape) -> tuple:
    """Spatial size ``(H, W)`` of the feature map entering the global pooling, measured by a forward pass.

    Parameters
    ----------
    model : nn.Module with a global pooling layer (see :func:`find_global_pool`)
    input_shape : tuple (C, H, W) of the images the model takes (before any in-model upsampling)

    Example
    -------
    >>> net = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, strides="122", upsample=2)
    >>> prepool_map_size(net, (1, 8, 8))
    (4, 4)
    """
    pool = find_global_pool(model)
    seen = []
    h = pool.register_forward_pre_hook(lambda m, inp: seen.append(tuple(inp[0].shape[-2:])))
    was = model.training
    try:
        model.eval()
        model(_dummy(model, input_shape))
    finally:
        h.remove()
        model.train(was)
    return seen[-1]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@torch.no_grad()
def receptive_field(model: nn.Module, input_shape) -> dict:
    """Theoretical receptive field of the last conv-stack unit, in pixels of the *original* input.

    The spatial layers (``Conv2d``, ``MaxPool2d``, ``AvgPool2d``) are recorded in execution order by
    forward hooks; a change of spatial size between consecutive layers that they do not explain
    (in-model upsampling) rescales the jump. Standard recursion, with ``j`` the distance between
    adjacent units measured in original-input pixels: ``r ← r + (k − 1)·d·j``, ``j ← j·s``.

    Valid for plain conv stacks; in residual networks the main path is followed and 1×1 projection
    shortcuts are skipped (they add no extent). For a nearest ×u upsampled input, a window
    of ``R`` upsampled pixels is reported as ``1 + (R − 1)/u`` original pixels.

    Parameters
    ----------
    model : nn.Module
    input_shape : tuple (C, H, W)

    Returns
    -------
    dict with ``rf`` (float, side of the receptive field in input pixels), ``jump`` (float, input
    pixels between adjacent pre-pool units), ``covers`` (bool, ``rf ≥ max(H, W)``: a single pre-pool
    unit sees the whole image) and ``layers`` (int, spatial layers found).

    Example
    -------
    >>> receptive_field(build_model("cnn", input_shape=(1, 8, 8), num_classes=10, strides="122"), (1, 8, 8))["rf"]
    9.0
    """
    records = []

    def hook(module, inp, out):
        records.append((module, inp[0].shape[-1], out.shape[-1]))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    was = model.training
    try:
        model.eval()
        model(_dummy(model, input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    rf, jump, prev = 1.0, 1.0, input_shape[-1]
    used = 0
    for module, w_in, w_out in records:
        k = _pair(module.kernel_size)[-1]
        if w_in != prev and k == 1 and isinstance(module, nn.Conv2d):
            continue  # a 1×1 projection shortcut reading an earlier tensor: not on the longest path
        if w_in != prev:  # resampled between layers (in-model upsampling): units get closer together
            jump *= prev / w_in
        used += 1
        s = _pair(module.stride if module.stride is not None else module.kernel_size)[-1]
        d = _pair(getattr(module, "dilation", 1))[-1]
        rf += (k - 1) * d * jump
        jump *= s
        prev = w_out
    return dict(rf=float(rf), jump=float(jump), covers=bool(rf >= max(input_shape[-2:])), layers=used)


def effective_receptive_field(model: nn.Module, input_shape, *, n_inputs: int = 8, seed: int = 0) -> dict:
    """Input pixels that actually influence a corner and a centre unit of the pre-pool map (gradient support).

    The theoretical receptive field (:func:`receptive_field`) is the window of a unit far from the
    border; a unit at the map's edge sees only the part of that window inside the image (zero
    padding covers the rest). Here the gradient of the channel sum of one pre-pool position with
    respect to the original input (before any in-model upsampling) is taken for ``n_inputs`` random
    images in eval mode, and a pixel counts when any of them gives it a non-zero gradient (several
    inputs, because a ReLU that is off for one image hides its pixels for that image only).

    Parameters
    ----------
    model : nn.Module with a global pooling layer
    input_shape : tuple (C, H, W)
    n_inputs : int ≥ 1, random inputs ``U[0, 1]`` whose gradient supports are united
    seed : int

    Returns
    -------
    dict with ``corner_pixels`` and ``centre_pixels`` (int, pixels of the ``H × W`` input that
    influence the top-left and the centre pre-pool unit), ``corner_fraction`` and ``centre_fraction``
    (share of ``H·W``) and ``pixels`` (``H·W``).

    Example
    -------
    >>> net = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, strides="122211", channels=[4] * 6)
    >>> effective_receptive_field(net, (1, 8, 8))["corner_pixels"] <= 64
    True
    """
    check_range("n_inputs", n_inputs, low=1)
    pool = find_global_pool(model)
    seen = []
    h = pool.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    gen = torch.Generator().manual_seed(seed)
    p = next(model.parameters())
    x = torch.rand(n_inputs, *input_shape, generator=gen).to(p.device).requires_grad_(True)
    was = model.training
    try:
        model.eval()
        model(x)
    finally:
        h.remove()
        model.train(was)
    fmap = seen[-1]
    H, W = fmap.shape[-2:]
    out = {"pixels": int(input_shape[-2] * input_shape[-1])}
    for name, (i, j) in (("corner", (0, 0)), ("centre", (H // 2, W // 2))):
        (g,) = torch.autograd.grad(fmap[:, :, i, j].sum(), x, retain_graph=True)
        support = (g.abs() > 0).any(dim=0).any(dim=0)  # over inputs and channels → (H_in, W_in)
        out[f"{name}_pixels"] = int(support.sum())
        out[f"{name}_fraction"] = out[f"{name}_pixels"] / out["pixels"]
    return out


@torch.no_grad()
def pooled_features(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Output of the global pooling layer (the features the classifier reads), eval mode, batched.

    Returns
    -------
    Tensor (N, D)
    """
    pool = find_global_pool(model)
    out = []
    h = pool.register_forward_hook(lambda m, inp, o: out.append(o.detach().flatten(1).clone()))
    was = model.training
    try:
        model.eval()
        for xb in torch.split(x, batch_size):
            model(xb)
    finally:
        h.remove()
        model.train(was)
    return torch.cat(out)


def pooled_feature_perturbation(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                                batch_size: int = 512) -> dict:
    """Relative perturbation of the pooled features, ``Σ‖pool(x_adv) − pool(x)‖₂ / Σ‖pool(x)‖₂``.

    A ratio of means over the images, not a mean of per-image ratios: an image whose clean pooled
    vector is (nearly) all zero — every ReLU of the last map off — would otherwise contribute a ratio
    of order 1/0 and dominate the mean. Such images are counted (``n_zero``) and excluded from the
    per-image median.

    Parameters
    ----------
    model : nn.Module with a global pooling layer
    x, x_adv : Tensor (N, C, H, W)
    batch_size : int

    Returns
    -------
    dict with ``ratio`` (float, the ratio of means), ``median`` (float, median per-image ratio over
    images with a non-zero clean vector; NaN if none), ``n_zero`` (int, images whose clean pooled
    vector has norm ≤ 1e-8) and ``n`` (int).

    Example
    -------
    >>> pooled_feature_perturbation(net, x, x)["ratio"]
    0.0
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv shapes differ: {tuple(x.shape)} vs {tuple(x_adv.shape)}")
    f0 = pooled_features(model, x, batch_size).double()
    f1 = pooled_features(model, x_adv, batch_size).double()
    change, clean = (f1 - f0).norm(dim=1), f0.norm(dim=1)
    nonzero = clean > 1e-8
    total = float(clean.sum())
    return dict(ratio=float(change.sum()) / total if total > 0 else float("nan"),
                median=float(torch.quantile(change[nonzero] / clean[nonzero], 0.5)) if nonzero.any() else float("nan"),
                n_zero=int((~nonzero).sum()), n=int(len(x)))


def consistency_accuracy(pred_clean, pred_adv) -> float:
    """``P[f(x+δ) = f(x)]``: the fraction of predictions an attack leaves unchanged (Xu et al.'s
    anti-perturbation ability; robust accuracy is its intersection with natural accuracy).

    Parameters
    ----------
    pred_clean, pred_adv : array-like (N,) of class indices

    Example
    -------
    >>> consistency_accuracy([0, 1, 2, 3], [0, 1, 0, 3])
    0.75
    """
    a = torch.as_tensor(pred_clean)
    b = torch.as_tensor(pred_adv)
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"pred_clean and pred_adv need the same non-empty shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return float((a == b).double().mean())


def forward_cost(model: nn.Module, input_shape, *, batch_size: int = 64, repeats: int = 5, device=None) -> dict:
    """FLOPs, memory and wall time of a forward pass.

    - ``flops_per_image``: counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add
      counts as 2 FLOPs) for one image;
    - ``train_memory_bytes``: parameters, their gradients, the input and every tensor autograd saves
      for the backward pass of a training-mode batch (the activation memory that grows with the map);
    - ``peak_memory_bytes``: on CUDA the allocator's peak over forward + backward; on CPU it equals
      ``train_memory_bytes`` (the CPU allocator keeps no peak statistic);
    - ``forward_seconds``: median wall time of an eval-mode, no-grad forward of ``batch_size`` images
      over ``repeats`` runs after one warm-up (on CUDA, synchronised).

    Parameters
    ----------
    model : nn.Module
    input_shape : tuple (C, H, W)
    batch_size : int ≥ 1
    repeats : int ≥ 1
    device : torch.device, optional, default the model's

    Returns
    -------
    dict with the keys above plus ``params``, ``batch_size`` and ``forward_ms_per_image``.

    Example
    -------
    >>> forward_cost(net, (1, 8, 8), batch_size=32)["flops_per_image"]
    """
    from torch.utils.flop_counter import FlopCounterMode

    check_range("batch_size", batch_size, low=1)
    check_range("repeats", repeats, low=1)
    p = next(model.parameters())
    device = p.device if device is None else torch.device(device)
    was = model.training
    n_params = sum(q.numel() for q in model.parameters())
    param_bytes = sum(q.numel() * q.element_size() for q in model.parameters())
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=device))
        flops = int(counter.get_total_flops())

        # Saved-for-backward bytes, deduplicated by storage (views share memory). A copy is used so
        # that the training-mode pass neither updates BatchNorm statistics nor leaves gradients.
        train_copy = copy.deepcopy(model).train()
        seen, saved = set(), [0]

        def pack(t):
            try:
                key = (t.untyped_storage().data_ptr(), t.device)
                if key not in seen:
                    seen.add(key)
                    saved[0] += t.untyped_storage().nbytes()
            except (RuntimeError, NotImplementedError):
                saved[0] += t.numel() * t.element_size()
            return t

        xb = torch.full((batch_size, *input_shape), 0.5, device=device)
        param_ptrs = {q.untyped_storage().data_ptr() for q in train_copy.parameters()}
        seen.update((ptr, device) for ptr in param_ptrs)  # parameters are counted once, below
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = train_copy(xb)
        out.sum().backward()
        train_bytes = param_bytes * 2 + xb.numel() * xb.element_size() + saved[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base + param_bytes
        else:
            peak = train_bytes
        del train_copy, out

        model.eval()
        times = []
        with torch.no_grad():
            for r in range(repeats + 1):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                model(xb)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if r:  # first run is a warm-up
                    times.append(time.perf_counter() - t0)
    finally:
        model.train(was)
    fwd = float(np.median(times))
    return dict(params=n_params, flops_per_image=flops, train_memory_bytes=int(train_bytes),
                peak_memory_bytes=int(peak), batch_size=batch_size, forward_seconds=fwd,
                forward_ms_per_image=1000 * fwd / batch_size)


def training_throughput(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, adversarial=None,
                        batch_size: int = 128, n_batches: int = 4) -> float:
    """Training images per second of one epoch of :func:`reprobust.train.fit` over ``n_batches`` batches.

    A copy of ``model`` is trained (the model itself is left untouched) for one warm-up batch, then
    timed over ``n_batches · batch_size`` images; with ``adversarial`` (a ``fit`` adversarial config)
    the attack that builds each training batch is included, as in adversarial training.

    Returns
    -------
    float, images per second (depends on the machine and its load: for display, not for committed tables).

    Example
    -------
    >>> training_throughput(net, ds.x_train, ds.y_train, n_batches=2) > 0
    True
    """
    from ..train import fit

    check_range("batch_size", batch_size, low=1)
    check_range("n_batches", n_batches, low=1)
    n = min(len(x), batch_size * n_batches)
    net = copy.deepcopy(model)
    fit(net, x[:batch_size], y[:batch_size], epochs=1, batch_size=batch_size, adversarial=adversarial)  # warm-up
    t0 = time.perf_counter()
    fit(net, x[:n], y[:n], epochs=1, batch_size=batch_size, adversarial=adversarial)
    return n / (time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# One model's robustness profile (what the notebook caches per trained model)
# --------------------------------------------------------------------------------------------------

def autoattack_available() -> bool:
    """Whether Croce & Hein's ``autoattack`` package (not on PyPI) can be imported."""
    try:
        import autoattack  # noqa: F401
    except ImportError:
        return False
    return True


def _autoattack_accuracy(model, x, y, eps, seed):
    from autoattack import AutoAttack

    torch.manual_seed(seed)
    adversary = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, verbose=False,
                           device=str(next(model.parameters()).device))
    x_adv = adversary.run_standard_evaluation(x, y, bs=len(x))
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def robustness_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, eps_l2: float,
                       sweep_eps=(), pgd_steps: int = 20, pgd_restarts: int = 1, sweep_steps: int = 10,
                       deepfool_steps: int = 50, deepfool_candidates: int | None = 4, use_autoattack: bool = True,
                       seed: int = 0) -> dict:
    """Natural, consistency and robust accuracies of one model, and its pooled-feature perturbation.

    Robust accuracy is ``P[f(x) = y ∧ f(x_adv) = y]`` with ``x_adv`` the PGD examples built against the
    **true label** (an image misclassified from the start counts as broken). Consistency accuracy is
    ``P[f(x + δ) = f(x)]`` with ``δ`` built by the same PGD against the model's own **prediction**
    ``f(x)`` (Xu et al.'s anti-perturbation ability; attacking ``y`` instead would leave misclassified
    images free to stay wrong and overstate it). The relative pooled-feature perturbation
    (:func:`pooled_feature_perturbation`, a ratio of means) is measured on the consistency examples and,
    as a control, on random ``±eps`` sign noise of the same L∞ size.

    Parameters
    ----------
    model : nn.Module with a global pooling head, in [0, 1] pixel space
    x : Tensor (N, C, H, W); y : LongTensor (N,)
    eps : float > 0, L∞ budget of FGSM, PGD (and AutoAttack)
    eps_l2 : float > 0, L2 budget of DeepFool and L2 PGD
    sweep_eps : sequence of float, L∞ budgets of the robustness curve (PGD, ``sweep_steps`` steps)
    pgd_steps : int, default 20 (PGD-20; step ``2.5·eps/steps``, random start)
    pgd_restarts : int, default 1, random restarts of the L∞ PGD (robust and consistency)
    deepfool_steps, deepfool_candidates : DeepFool settings (:func:`reprobust.attacks.deepfool.deepfool`)
    use_autoattack : bool, run AutoAttack when the package is importable
    seed : int, seeds the random starts

    Returns
    -------
    dict of floats: ``natural, consistency, fgsm, pgd, deepfool, deepfool_median_l2, pgd_l2,
    feature_perturbation`` (ratio of means), ``feature_perturbation_median``, ``feature_zero_images``,
    ``feature_perturbation_random``, ``autoattack`` (NaN when not run) and ``sweep`` (list of robust
    accuracies, one per ``sweep_eps``).

    Example
    -------
    >>> m = robustness_metrics(net, x, y, eps=0.1, eps_l2=0.5, sweep_eps=[0.2, 0.4])
    >>> m["pgd"] <= m["natural"]
    True
    """
    from ..attacks import fgsm, pgd
    from ..attacks.deepfool import deepfool

    check_range("eps", eps, low=0, low_inclusive=False)
    check_range("eps_l2", eps_l2, low=0, low_inclusive=False)
    check_range("pgd_restarts", pgd_restarts, low=1)
    for e in sweep_eps:
        check_range("sweep eps", e, low=0)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            pred = model(x).argmax(1)
        natural = float((pred == y).float().mean())
        fg = fgsm(model, x, y, eps=eps)
        pg = pgd(model, x, y, eps=eps, steps=pgd_steps, restarts=pgd_restarts, seed=seed)
        # consistency: the attack moves the image away from the model's own prediction
        pc = pgd(model, x, pred, eps=eps, steps=pgd_steps, restarts=pgd_restarts, seed=seed + 3)
        with torch.no_grad():
            pred_adv = model(pc.x_adv).argmax(1)
        df = deepfool(model, x, y, steps=deepfool_steps, candidates=deepfool_candidates)
        correct = pred == y
        df_norms = df.norms[correct & df.success]
        # Robust accuracy at eps_l2 judged after shrinking each DeepFool perturbation onto the ball
        # (foolbox's convention for minimisation attacks), from the same run as the median norm.
        delta = df.x_adv - x
        shrink = (eps_l2 / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
        with torch.no_grad():
            x_df = (x + delta * shrink.view(-1, *([1] * (x.ndim - 1)))).clamp(0, 1)
            df_acc = float((model(x_df).argmax(1) == y).float().mean())
        pl2 = pgd(model, x, y, eps=eps_l2, norm="l2", steps=pgd_steps, seed=seed + 1)
        sweep = [float(1 - pgd(model, x, y, eps=e, steps=sweep_steps, seed=seed + 2 + i).success.float().mean())
                 if e > 0 else natural for i, e in enumerate(sweep_eps)]
        feat = pooled_feature_perturbation(model, x, pc.x_adv)
        gen = torch.Generator().manual_seed(seed + 4)
        noise = eps * (2 * torch.randint(0, 2, x.shape, generator=gen) - 1).to(x.dtype).to(x.device)
        feat_random = pooled_feature_perturbation(model, x, (x + noise).clamp(0, 1))
        aa = _autoattack_accuracy(model, x, y, eps, seed) if (use_autoattack and autoattack_available()) else float("nan")
        return dict(
            natural=natural,
            consistency=consistency_accuracy(pred, pred_adv),
            fgsm=float(1 - fg.success.float().mean()),
            pgd=float(1 - pg.success.float().mean()),
            deepfool=df_acc,
            deepfool_median_l2=float(df_norms.median()) if len(df_norms) else float("nan"),
            pgd_l2=float(1 - pl2.success.float().mean()),
            feature_perturbation=feat["ratio"],
            feature_perturbation_median=feat["median"],
            feature_zero_images=feat["n_zero"],
            feature_perturbation_random=feat_random["ratio"],
            autoattack=aa,
            sweep=sweep,
        )
    finally:
        model.train(was)


# --------------------------------------------------------------------------------------------------
# Gradient-masking check at a per-image ε chosen from the data
# --------------------------------------------------------------------------------------------------

def nearest_other_class_distance(x: torch.Tensor, y: torch.Tensor, x_ref: torch.Tensor, y_ref: torch.Tensor) -> torch.Tensor:
    """L∞ distance from each image of ``x`` to the nearest image of ``x_ref`` with another label.

    Within this budget an image can be moved exactly onto a reference image of another class, so an
    attack that works should flip the prediction of (almost) every image at its own distance.

    Parameters
    ----------
    x : Tensor (N, ...); y : LongTensor (N,)
    x_ref : Tensor (M, ...) of the same image shape; y_ref : LongTensor (M,)

    Returns
    -------
    Tensor (N,) of distances (``inf`` where ``x_ref`` holds no image of another class)

    Example
    -------
    >>> eps_i = nearest_other_class_distance(x_test, y_test, ds.x_train, ds.y_train)
    """
    if x.shape[1:] != x_ref.shape[1:]:
        raise ValueError(f"image shapes differ: x {tuple(x.shape[1:])}, x_ref {tuple(x_ref.shape[1:])}; "
                         "valid: the same image shape")
    # on x's device (a GPU for the full profile's 10,000 × 50,000 CIFAR-10 pairs), one row at a time:
    # the N × M × D difference tensor would not fit in memory on real data sets
    a = x.flatten(1)
    b, ya, yb = x_ref.flatten(1).to(a.device), y.to(a.device), y_ref.to(a.device)
    out = torch.full((len(a),), float("inf"), device=a.device)
    for i in range(len(a)):
        d = (b - a[i]).abs().amax(1).masked_fill(yb == ya[i], float("inf"))
        if len(d):
            out[i] = d.min()
    return out.cpu()


def robust_accuracy_per_image_eps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps, *, steps: int = 10,
                                  seed: int = 0) -> float:
    """L∞ PGD robust accuracy ``P[f(x_adv) = y]`` where each image has its own budget ``eps[i]``.

    Images that share a budget are attacked together (:func:`reprobust.attacks.pgd`, step
    ``2.5·ε/steps``, random start); an image misclassified from the start counts as broken.

    Parameters
    ----------
    model : nn.Module in [0, 1] pixel space
    x : Tensor (N, C, H, W); y : LongTensor (N,)
    eps : sequence or Tensor (N,) of finite budgets ≥ 0
    steps : int, PGD steps
    seed : int, seeds the random starts

    Returns
    -------
    float, the share of images still classified correctly after the attack

    Example
    -------
    >>> robust_accuracy_per_image_eps(net, x, y, nearest_other_class_distance(x, y, x_train, y_train))
    """
    from ..attacks import pgd

    eps = torch.as_tensor(eps, dtype=torch.float64).flatten().cpu()
    if len(eps) != len(x):
        raise ValueError(f"eps has {len(eps)} entries for {len(x)} images; valid: one budget per image")
    if not bool(torch.isfinite(eps).all()) or bool((eps < 0).any()):
        raise ValueError(f"eps={eps.min().item()!r}…{eps.max().item()!r} must be finite and ≥ 0; valid: [0, inf)")
    check_range("steps", steps, low=1)
    robust = torch.zeros(len(x), dtype=torch.bool)
    for k, e in enumerate(torch.unique(eps).tolist()):
        idx = torch.nonzero(eps == e).flatten()
        xi, yi = x[idx.to(x.device)], y[idx.to(y.device)]
        if e == 0:
            with torch.no_grad():
                robust[idx] = (model(xi).argmax(1) == yi).cpu()
        else:
            robust[idx] = ~pgd(model, xi, yi, eps=float(e), steps=steps, seed=seed + k).success.cpu()
    return float(robust.float().mean())
