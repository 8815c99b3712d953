"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016), L2, multi-class, batched.

DeepFool is a *minimal-perturbation* attack: at each step it linearises the classifier around the
current iterate and jumps onto the nearest linearised decision boundary (Algorithm 2 of the paper),

.. math::

    \\hat l = \\arg\\min_{k \\ne y} \\frac{|f_k(x_i) - f_y(x_i)|}{\\lVert \\nabla f_k(x_i) - \\nabla f_y(x_i)\\rVert_2},
    \\qquad r_i = \\frac{|f_{\\hat l} - f_y| + 10^{-4}}{\\lVert w_{\\hat l}\\rVert_2^2}\\, w_{\\hat l},

and returns ``x_0 + (1 + overshoot) · Σ_i r_i`` (clipped to [0, 1]) as soon as the label flips. It is
the "deepfool-l2" attack of the feature-map paper's evaluation (foolbox's ``L2DeepFoolAttack``, whose
candidate and overshoot conventions are followed here).

Batching: the gradients of all candidate logit differences are obtained with *one* backward pass by
replicating each still-unbroken image once per candidate class; images that are already adversarial
drop out of the computation.
"""

from __future__ import annotations

import torch

from ..validation import check_range
from . import AttackResult
from .gradient import _EvalMode, perturbation_norm


def _deepfool_batch(model, x, y, *, steps, overshoot, candidates):
    n = len(x)
    view = (-1,) + (1,) * (x.ndim - 1)
    with torch.no_grad():
        logits0 = model(x)
    num_classes = logits0.shape[1]
    k = num_classes if candidates is None else min(int(candidates), num_classes)
    # Candidate classes: the k-1 highest-scoring classes other than the label, ranked at x0
    # (foolbox's convention: classes far below the label are never the nearest boundary in practice).
    masked = logits0.clone()
    masked[torch.arange(n, device=x.device), y] = -float("inf")
    cand = masked.argsort(dim=1, descending=True)[:, : k - 1]  # (n, k-1)

    r_total = torch.zeros_like(x)
    x_adv = x.clone()
    active = logits0.argmax(1) == y  # images already misclassified need no perturbation
    for _ in range(steps):
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            break
        xa, ya, ca = x_adv[idx], y[idx], cand[idx]
        m, kk = len(idx), ca.shape[1]
        # One replica of every image per candidate: row (j, i) carries the gradient of
        # f_{c_ij} - f_{y_i} at image i; summing the rows keeps the per-row gradients separate.
        xr = xa.unsqueeze(0).expand(kk, *xa.shape).reshape(kk * m, *xa.shape[1:]).detach().requires_grad_(True)
        logits = model(xr).view(kk, m, -1)
        rows = torch.arange(m, device=x.device)
        f_c = logits[:, rows, :].gather(2, ca.T.unsqueeze(2)).squeeze(2)  # (kk, m)
        f_y = logits[:, rows, ya]  # (kk, m)
        diff = f_c - f_y
        (grads,) = torch.autograd.grad(diff.sum(), xr)
        grads = grads.view(kk, m, *xa.shape[1:])
        gnorm = grads.flatten(2).norm(dim=2)  # (kk, m)
        dist = diff.detach().abs() / (gnorm + 1e-8)
        best = dist.argmin(dim=0)  # (m,)
        w = grads[best, rows]  # (m, ...)
        d = dist[best, rows]
        # Step exactly onto the linearised boundary (+1e-4 to cross it), as in foolbox.
        r = ((d + 1e-4) / (gnorm[best, rows] + 1e-8)).view(view) * w
        r_total[idx] += r
        x_adv[idx] = (x[idx] + (1 + overshoot) * r_total[idx]).clamp(0, 1)
        with torch.no_grad():
            still = model(x_adv[idx]).argmax(1) == ya
        active[idx] = still
    return x_adv.detach()


def deepfool(model, x, y=None, *, steps: int = 50, overshoot: float = 0.02, candidates: int | None = 10,
             eps: float | None = None, batch_size: int | None = 256) -> AttackResult:
    """Untargeted L2 DeepFool, batched over images.

    Parameters
    ----------
    model : nn.Module
        Maps ``[0, 1]`` images to logits; run in eval mode during the attack.
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,), optional
        Labels to move away from. Default: the model's own predictions, which makes ``success`` the
        complement of *consistency* ``f(x_adv) = f(x)``.
    steps : int ≥ 1, default 50
        Maximum number of linearisation steps (foolbox default).
    overshoot : float ≥ 0, default 0.02
        The accumulated perturbation is scaled by ``1 + overshoot`` so that iterates cross the boundary.
    candidates : int ≥ 2 or None, default 10
        Number of classes considered (the label plus the ``candidates - 1`` highest-scoring others);
        ``None`` uses all classes.
    eps : float ≥ 0, optional
        If given, each perturbation is shrunk onto the L2 ball of radius ``eps`` and success is judged
        there (robust accuracy at ``eps``; foolbox's convention for minimisation attacks).
    batch_size : int, optional, default 256
        Images per chunk; memory grows as ``batch_size · candidates`` replicas.

    Returns
    -------
    AttackResult
        ``x_adv`` (N, C, H, W) in [0, 1]; ``success`` (N,) bool, prediction differs from ``y``
        (images misclassified from the start count as successes with a zero perturbation);
        ``norms`` (N,) L2 norms of ``x_adv - x``.

    Example
    -------
    >>> res = deepfool(net, x, overshoot=0.02, steps=50)
    >>> median_l2 = res.norms[res.success].median()
    """
    check_range("steps", steps, low=1)
    check_range("overshoot", overshoot, low=0)
    if candidates is not None:
        check_range("candidates", candidates, low=2)
    if eps is not None:
        check_range("eps", eps, low=0)
    if batch_size is not None:
        check_range("batch_size", batch_size, low=1)
    with _EvalMode(model):
        if y is None:
            with torch.no_grad():
                y = model(x).argmax(1)
        size = len(x) if batch_size is None else batch_size
        parts = [_deepfool_batch(model, xb, yb, steps=steps, overshoot=overshoot, candidates=candidates)
                 for xb, yb in zip(torch.split(x, size), torch.split(y, size))]
        x_adv = torch.cat(parts) if parts else x.clone()
        if eps is not None:
            delta = x_adv - x
            factor = (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0)
            x_adv = (x + delta * factor.view(-1, *([1] * (x.ndim - 1)))).clamp(0, 1)
        with torch.no_grad():
            success = model(x_adv).argmax(1) != y
    return AttackResult(x_adv, success, perturbation_norm(x_adv - x, "l2"))
