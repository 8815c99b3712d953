"""Rubbish-class inputs ("fooling images"): noise optimised until the model is confident in a class.

Goodfellow, Shlens & Szegedy (ICLR 2015, appendix "rubbish class examples") and Nguyen, Yosinski &
Clune (CVPR 2015) show that networks assign degenerate inputs, which a human would put in no class,
to a class with high confidence. The manifold-proximity paper (Pócoš et al. 2022) uses such a set as
the contrast to adversarial examples: its activations separate from the test data.

The paper does not say how its set was generated; here (spec §1.3): start from noise (or grey), run
unconstrained targeted gradient ascent on ``log softmax_c`` with signed steps clipped to ``[0, 1]``,
and freeze each input as soon as ``softmax_c >= threshold``. Targets cycle through the classes so
that the set is balanced.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..validation import check_choice, check_range
from .gradient import _EvalMode

__all__ = ["RubbishResult", "rubbish_inputs", "INITS"]

INITS = ("uniform", "gaussian", "constant")


class RubbishResult(NamedTuple):
    """Generated rubbish inputs.

    Attributes
    ----------
    x : Tensor (N, C, H, W) in [0, 1]
    target : LongTensor (N,), the class each input was optimised towards
    success : BoolTensor (N,), ``softmax_target >= threshold`` (and the target is the prediction)
    confidence : Tensor (N,), final ``softmax_target``
    """

    x: torch.Tensor
    target: torch.Tensor
    success: torch.Tensor
    confidence: torch.Tensor


def rubbish_inputs(model, n: int, *, input_shape, num_classes: int, threshold: float = 0.9,
                   init: str = "uniform", steps: int = 200, step_size: float = 0.01, seed: int = 0,
                   targets=None, device=None) -> RubbishResult:
    """Optimise ``n`` noise inputs until the model assigns a class with softmax ≥ ``threshold``.

    Parameters
    ----------
    model : nn.Module mapping [0, 1] images to logits
    n : int ≥ 1
        Number of inputs.
    input_shape : tuple (C, H, W)
    num_classes : int
    threshold : float in (0, 1)
        Target softmax probability at which an input is frozen.
    init : {"uniform", "gaussian", "constant"}
        Starting point: U[0, 1] noise, N(0.5, 0.25²) clipped to [0, 1], or constant grey 0.5
        (identical starts give one input per target class).
    steps : int ≥ 1
        Maximum ascent steps.
    step_size : float > 0
        L∞ step per iteration (signed gradient).
    seed : int
        Seeds the initial noise (deterministic on CPU).
    targets : array-like of int (n,), optional
        Target class per input; default ``arange(n) % num_classes``.
    device : torch.device, optional
        Default: the model's device.

    Returns
    -------
    RubbishResult

    Example
    -------
    >>> r = rubbish_inputs(net, 50, input_shape=(1, 8, 8), num_classes=10)
    >>> r.success.float().mean()
    """
    check_range("n", n, low=1)
    check_range("threshold", threshold, low=0, high=1, low_inclusive=False, high_inclusive=False)
    check_choice("init", init, INITS)
    check_range("steps", steps, low=1)
    check_range("step_size", step_size, low=0, low_inclusive=False)
    dev = device or next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    shape = (n, *tuple(input_shape))
    if init == "uniform":
        x = torch.rand(shape, generator=gen)
    elif init == "gaussian":
        x = (0.5 + 0.25 * torch.randn(shape, generator=gen)).clamp(0, 1)
    else:
        x = torch.full(shape, 0.5)
    x = x.to(dev)
    if targets is None:
        target = torch.arange(n, device=dev) % num_classes
    else:
        target = torch.as_tensor(targets, dtype=torch.long, device=dev)
        if target.shape != (n,) or target.min() < 0 or target.max() >= num_classes:
            raise ValueError(f"targets must be {n} class indices in [0, {num_classes - 1}]")
    with _EvalMode(model):
        active = torch.ones(n, dtype=torch.bool, device=dev)
        for _ in range(steps):
            idx = active.nonzero()[:, 0]
            if idx.numel() == 0:
                break
            xa = x[idx].requires_grad_(True)
            logp = F.log_softmax(model(xa), 1).gather(1, target[idx, None])[:, 0]
            (g,) = torch.autograd.grad(logp.sum(), xa)
            with torch.no_grad():
                reached = logp.exp() >= threshold
                stepped = (xa + step_size * g.sign()).clamp(0, 1)
                # Inputs that already reached the threshold keep their current value.
                x[idx] = torch.where(reached.view(-1, *([1] * (x.ndim - 1))), xa, stepped)
                active[idx] = ~reached
        with torch.no_grad():
            prob = F.softmax(model(x), 1)
    confidence = prob.gather(1, target[:, None])[:, 0]
    success = (confidence >= threshold) & (prob.argmax(1) == target)
    return RubbishResult(x.detach(), target, success, confidence)
