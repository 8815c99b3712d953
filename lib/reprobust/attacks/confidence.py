"""Bring adversarial examples of different attacks to the same wrong-class confidence.

Attacks stop by different rules — PGD uses its whole budget, C&W and EAD stop at a logit margin κ, the
greedy pixel attack at a softmax threshold — so their adversarial examples end at different confidences,
and a comparison between norms then measures the stopping rules (issue 14). :func:`scale_to_confidence`
removes that difference after the fact: per image it shrinks the perturbation ``δ = x_adv − x`` along
its own direction to the smallest scale ``t ∈ [0, 1]`` at which the image is still misclassified with a
wrong-class softmax of at least ``target``. The direction — and so the support of an L0 perturbation,
the sign pattern of an L∞ one — is the attack's; only the distance along it changes.
"""

from __future__ import annotations

import torch

from ..validation import check_range
from . import AttackResult
from .gradient import _EvalMode, perturbation_norm, wrong_class_confidence

__all__ = ["scale_to_confidence", "wrong_class_confidence"]


def _fools_at(model, x, delta, y, t, target):
    """Whether ``x + t·δ`` is misclassified with wrong-class confidence ≥ ``target``, and that confidence."""
    shape = (-1, *([1] * (x.ndim - 1)))
    logits = model((x + t.view(shape) * delta).clamp(0, 1))
    conf = wrong_class_confidence(logits, y)
    return (logits.argmax(1) != y) & (conf >= target), conf


def scale_to_confidence(model, x, x_adv, y, *, target: float, steps: int = 30,
                        norm: str = "l2") -> AttackResult:
    """Per image, the smallest scale of the perturbation that still fools with confidence ≥ ``target``.

    Bisection on ``t ∈ [0, 1]`` over ``x + t·(x_adv − x)``: the upper end always fools with
    confidence ≥ ``target``, the lower end never does, so after ``steps`` halvings the returned image
    satisfies the target and lies within ``2^-steps`` (in ``t``) of a point that does not — its
    confidence is ``target`` up to the model's change over that interval. The confidence along the
    ray need not be monotone; bisection then returns one crossing, still a valid adversarial example.

    Parameters
    ----------
    model : nn.Module mapping [0, 1] images to logits
    x : Tensor (N, C, H, W), the clean images
    x_adv : Tensor (N, C, H, W), the attack's adversarial images
    y : LongTensor (N,), true labels
    target : float in (0.5, 1)
        Wrong-class softmax to end at (above 0.5 so that reaching it implies misclassification).
    steps : int ≥ 1
        Bisection steps.
    norm : {'linf', 'l2', 'l1', 'l0'}
        Norm reported in ``norms``.

    Returns
    -------
    AttackResult
        ``x_adv``: the scaled images (unchanged where the attack did not reach ``target``);
        ``success``: the attack's image reached ``target`` (so the scaled one does too);
        ``norms``: ``norm`` of the scaled perturbation.

    Example
    -------
    >>> res = pgd(net, x, y, eps=0.3, stop_confidence=0.95)
    >>> matched = scale_to_confidence(net, x, res.x_adv, y, target=0.95)
    """
    check_range("target", target, low=0.5, high=1, low_inclusive=False, high_inclusive=False)
    check_range("steps", steps, low=1)
    x, x_adv = x.detach(), x_adv.detach()
    y = y.to(x.device)
    delta = x_adv - x
    n = len(x)
    with _EvalMode(model), torch.no_grad():
        ok, _ = _fools_at(model, x, delta, y, torch.ones(n, device=x.device, dtype=x.dtype), target)
        lo = torch.zeros(n, device=x.device, dtype=x.dtype)
        hi = torch.ones(n, device=x.device, dtype=x.dtype)
        for _ in range(steps):
            mid = (lo + hi) / 2
            fools, _ = _fools_at(model, x, delta, y, mid, target)
            hi = torch.where(fools & ok, mid, hi)
            lo = torch.where(fools & ok, lo, mid)
        shape = (-1, *([1] * (x.ndim - 1)))
        # x + 1·δ need not round back to x_adv: images that missed the target are returned bit for bit.
        out = torch.where(ok.view(shape), (x + hi.view(shape) * delta).clamp(0, 1), x_adv)
    return AttackResult(out, ok, perturbation_norm(out - x, norm))
