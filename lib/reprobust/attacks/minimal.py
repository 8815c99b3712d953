"""Minimal-perturbation attacks: Carlini–Wagner L2, EAD (elastic net, L1) and a greedy L0 pixel attack.

All three are untargeted, batched over images, device-aware (they run where ``x`` lives) and work in
``[0, 1]`` pixel space (the model holds its own normalisation). Unlike PGD they do not fix a budget:
they search, per image, for the *smallest* perturbation in their norm that flips the prediction,
which is why the manifold-proximity paper (Pócoš et al. 2022) uses them beside L∞ PGD.

* :func:`carlini_wagner_l2` — Carlini & Wagner (S&P 2017), eq. (CW):
  ``min ||δ||₂² + c·f(x+δ)`` with ``x+δ = (tanh w + 1)/2`` and
  ``f = max(Z_y - max_{j≠y} Z_j, -κ)``, Adam on ``w``, binary search over ``c`` per image.
* :func:`elastic_net` — EAD, Chen et al. (AAAI 2018), eq. (5):
  ``min c·f(x) + ||x-x₀||₂² + β||x-x₀||₁`` by ISTA/FISTA with the box-projected shrinkage
  ``S_β`` of eq. (6) and a square-root decaying step; decision rule ``"l1"`` (least L1 among the
  successful iterates) or ``"en"`` (least elastic-net loss).
* :func:`greedy_pixel_attack` — the iterative pixel attack of the manifold-proximity follow-up code
  (spec §1.2): change, one at a time, the pixel with the largest input gradient of the
  cross-entropy, setting it to the best of ``levels`` grey values (``levels**C`` joint colours); stop
  when the prediction is wrong with softmax ≥ ``min_confidence``.

Success uses the C&W convention for a confidence margin κ (a *logit* margin, not a probability):
``Z_y + κ < max_{j≠y} Z_j``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import check_choice, check_range
from . import AttackResult
from .gradient import _EvalMode, perturbation_norm

__all__ = ["carlini_wagner_l2", "elastic_net", "greedy_pixel_attack"]

DECISION_RULES = ("l1", "en")
SCORES = ("margin", "true_logit")


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Z_y - max_{j≠y} Z_j`` per row (negative once the image is misclassified)."""
    true = logits.gather(1, y[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return true - other


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def _split(fn, x, y, batch_size, **kwargs) -> AttackResult:
    parts = [fn(xb, yb, **kwargs) for xb, yb in zip(torch.split(x, batch_size), torch.split(y, batch_size))]
    return AttackResult(*(torch.cat(t) for t in zip(*parts)))


def _update_const(const, lower, upper, succeeded):
    """Binary search over the trade-off constant, per image (C&W's schedule)."""
    upper = torch.where(succeeded, torch.minimum(upper, const), upper)
    lower = torch.where(succeeded, lower, torch.maximum(lower, const))
    bracketed = upper < 1e9
    new = torch.where(bracketed, (lower + upper) / 2, const * 10)
    return new, lower, upper


def carlini_wagner_l2(model, x, y, *, kappa: float = 0.0, steps: int = 100, binary_search_steps: int = 5,
                      initial_const: float = 1e-2, lr: float = 1e-2, abort_early: bool = True,
                      batch_size: int | None = None) -> AttackResult:
    """Untargeted Carlini–Wagner L2 attack, batched.

    Parameters
    ----------
    model : nn.Module mapping [0, 1] images to logits
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,), true labels
    kappa : float ≥ 0
        Logit margin κ required for success.
    steps : int ≥ 1
        Adam steps per binary-search step.
    binary_search_steps : int ≥ 1
        Rounds of the per-image search over the constant ``c``.
    initial_const : float > 0
    lr : float > 0
        Adam learning rate on the tanh-space variable.
    abort_early : bool
        Stop a round when the total loss has not decreased by 0.01 % over ``steps // 10`` steps
        (decided per batch, so ``batch_size`` can change the result slightly).
    batch_size : int or None
        Split ``x`` to bound memory.

    Returns
    -------
    AttackResult
        ``x_adv`` (N, C, H, W): the least-L2 successful iterate, or (failed images) the iterate with
        the smallest margin; ``success`` (N,); ``norms``: L2 norms of ``x_adv - x`` (N,).

    Example
    -------
    >>> res = carlini_wagner_l2(net, x, y, steps=50)
    >>> res.norms[res.success].median()
    """
    check_range("kappa", kappa, low=0)
    check_range("steps", steps, low=1)
    check_range("binary_search_steps", binary_search_steps, low=1)
    check_range("initial_const", initial_const, low=0, low_inclusive=False)
    check_range("lr", lr, low=0, low_inclusive=False)
    kwargs = dict(kappa=kappa, steps=steps, binary_search_steps=binary_search_steps,
                  initial_const=initial_const, lr=lr, abort_early=abort_early)
    with _EvalMode(model):
        if batch_size is not None and batch_size < len(x):
            return _split(lambda xb, yb, **kw: _cw_batch(model, xb, yb, **kw), x, y, batch_size, **kwargs)
        return _cw_batch(model, x, y, **kwargs)


def _cw_batch(model, x, y, *, kappa, steps, binary_search_steps, initial_const, lr, abort_early):
    x = x.detach()
    n = len(x)
    dev, dt = x.device, x.dtype
    w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    const = torch.full((n,), initial_const, device=dev, dtype=dt)
    lower = torch.zeros(n, device=dev, dtype=dt)
    upper = torch.full((n,), 1e10, device=dev, dtype=dt)
    best_l2 = torch.full((n,), float("inf"), device=dev, dtype=dt)
    best_adv = x.clone()
    best_margin = torch.full((n,), float("inf"), device=dev, dtype=dt)
    fallback = x.clone()
    check_every = max(steps // 10, 1)
    for _ in range(binary_search_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
        prev = float("inf")
        for step in range(steps):
            x_adv = (torch.tanh(w) + 1) / 2
            logits = model(x_adv)
            margin = _margin(logits, y)
            l2sq = (x_adv - x).flatten(1).pow(2).sum(1)
            loss_each = l2sq + const * (margin + kappa).clamp(min=0)
            loss = loss_each.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                adv_now = margin + kappa < 0
                better = adv_now & (l2sq.sqrt() < best_l2)
                best_l2 = torch.where(better, l2sq.sqrt(), best_l2)
                best_adv[better] = x_adv[better].detach()
                succeeded |= adv_now
                closer = margin < best_margin
                best_margin = torch.where(closer, margin, best_margin)
                fallback[closer] = x_adv[closer].detach()
            opt.step()
            if abort_early and step % check_every == check_every - 1:
                if loss.item() > prev * 0.9999:
                    break
                prev = loss.item()
        const, lower, upper = _update_const(const, lower, upper, succeeded)
    success = torch.isfinite(best_l2)
    x_adv = torch.where(_view(success, x), best_adv, fallback)
    with torch.no_grad():
        # Report success as the model sees the returned images (a strict κ = 0 tie cannot count).
        success = success & (_margin(model(x_adv), y) < 0)
    return AttackResult(x_adv, success, perturbation_norm(x_adv - x, "l2"))


def _shrink(z, x0, beta):
    """Box-projected shrinkage-thresholding S_β (EAD eq. 6), elementwise in [0, 1]."""
    diff = z - x0
    return torch.where(diff > beta, (z - beta).clamp(max=1.0),
                       torch.where(diff < -beta, (z + beta).clamp(min=0.0), x0))


def elastic_net(model, x, y, *, beta: float = 1e-2, kappa: float = 0.0, steps: int = 100,
                binary_search_steps: int = 5, initial_const: float = 1e-2, lr: float = 1e-2,
                decision_rule: str = "en", fista: bool = True, batch_size: int | None = None) -> AttackResult:
    """Untargeted EAD (elastic-net) attack, batched; the L1 attack of the manifold-proximity paper.

    Parameters
    ----------
    model : nn.Module mapping [0, 1] images to logits
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,), true labels
    beta : float ≥ 0
        Weight of the L1 term, also the shrinkage threshold (as in the authors' code). Default 1e-2,
        the EAD paper's; with β = 1e-3 on 8×8 digits the attack behaves like C&W L2 (its L1 norm
        barely differs), so it is no longer an L1 attack.
    kappa : float ≥ 0
        Logit margin κ required for success.
    steps : int ≥ 1
        ISTA/FISTA iterations per binary-search step.
    binary_search_steps : int ≥ 1
    initial_const : float > 0
    lr : float > 0
        Initial step size, decayed as ``lr·sqrt(1 - k/steps)``.
    decision_rule : {"en", "l1"}
        Which successful iterate to keep: least elastic-net loss ``β||δ||₁ + ||δ||₂²`` (default, the
        EAD paper's EN rule) or least L1 distortion.
    fista : bool
        FISTA momentum on the slack variable (True) or plain ISTA.
    batch_size : int or None

    Returns
    -------
    AttackResult
        ``norms`` are the L1 norms of ``x_adv - x`` (N,).

    Example
    -------
    >>> res = elastic_net(net, x, y, beta=1e-2)
    >>> res.norms[res.success].median()
    """
    check_range("beta", beta, low=0)
    check_range("kappa", kappa, low=0)
    check_range("steps", steps, low=1)
    check_range("binary_search_steps", binary_search_steps, low=1)
    check_range("initial_const", initial_const, low=0, low_inclusive=False)
    check_range("lr", lr, low=0, low_inclusive=False)
    check_choice("decision_rule", decision_rule, DECISION_RULES)
    kwargs = dict(beta=beta, kappa=kappa, steps=steps, binary_search_steps=binary_search_steps,
                  initial_const=initial_const, lr=lr, decision_rule=decision_rule, fista=fista)
    with _EvalMode(model):
        if batch_size is not None and batch_size < len(x):
            return _split(lambda xb, yb, **kw: _ead_batch(model, xb, yb, **kw), x, y, batch_size, **kwargs)
        return _ead_batch(model, x, y, **kwargs)


def _ead_batch(model, x, y, *, beta, kappa, steps, binary_search_steps, initial_const, lr, decision_rule, fista):
    x = x.detach()
    n = len(x)
    dev, dt = x.device, x.dtype
    const = torch.full((n,), initial_const, device=dev, dtype=dt)
    lower = torch.zeros(n, device=dev, dtype=dt)
    upper = torch.full((n,), 1e10, device=dev, dtype=dt)
    best_score = torch.full((n,), float("inf"), device=dev, dtype=dt)
    best_adv = x.clone()
    best_margin = torch.full((n,), float("inf"), device=dev, dtype=dt)
    fallback = x.clone()
    for _ in range(binary_search_steps):
        x_k = x.clone()
        slack = x.clone()
        succeeded = torch.zeros(n, dtype=torch.bool, device=dev)
        for k in range(steps):
            step = lr * (1 - k / steps) ** 0.5
            s = slack.detach().requires_grad_(True)
            loss_s = (s - x).flatten(1).pow(2).sum(1) + const * (_margin(model(s), y) + kappa).clamp(min=0)
            (grad,) = torch.autograd.grad(loss_s.sum(), s)
            with torch.no_grad():
                x_next = _shrink(slack - step * grad, x, beta)
                slack = x_next + (k / (k + 3)) * (x_next - x_k) if fista else x_next
                slack = slack.clamp(0, 1)
                x_k = x_next
                margin = _margin(model(x_k), y)
                delta = (x_k - x).flatten(1)
                l1 = delta.abs().sum(1)
                score = l1 if decision_rule == "l1" else beta * l1 + delta.pow(2).sum(1)
                adv_now = margin + kappa < 0
                better = adv_now & (score < best_score)
                best_score = torch.where(better, score, best_score)
                best_adv[better] = x_k[better]
                succeeded |= adv_now
                closer = margin < best_margin
                best_margin = torch.where(closer, margin, best_margin)
                fallback[closer] = x_k[closer]
        const, lower, upper = _update_const(const, lower, upper, succeeded)
    success = torch.isfinite(best_score)
    x_adv = torch.where(_view(success, x), best_adv, fallback)
    with torch.no_grad():
        success = success & (_margin(model(x_adv), y) < 0)
    return AttackResult(x_adv, success, perturbation_norm(x_adv - x, "l1"))


def greedy_pixel_attack(model, x, y, *, max_pixels: int = 20, levels: int = 10, min_confidence: float = 0.0,
                        score: str = "margin", max_candidates: int = 65536,
                        batch_size: int | None = None) -> AttackResult:
    """Untargeted greedy L0 pixel attack (saliency-ordered, exhaustive value search per pixel), batched.

    Per iteration and image: the not-yet-changed pixel with the largest channel-summed
    ``|∂CE/∂x|`` is set to the best of ``levels`` evenly spaced values per channel (``levels**C``
    joint colours), best meaning the lowest ``score``. Images stop once misclassified with a top
    softmax probability ≥ ``min_confidence``. All candidate images of all active images are scored in
    batched forward passes of at most ``max_candidates`` images.

    Parameters
    ----------
    model : nn.Module mapping [0, 1] images to logits
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,), true labels
    max_pixels : int ≥ 1
        Budget: at most this many pixel locations change.
    levels : int ≥ 2
        Grid of candidate values per channel (the follow-up code's ``precision``).
    min_confidence : float in [0, 1)
        Required top softmax probability of the wrong class (the follow-up code stops at 0.9).
    score : {"margin", "true_logit"}
        Candidate criterion: the logit margin ``Z_y - max_{j≠y} Z_j`` (default) or the true-class
        logit alone (the follow-up code's choice).
    max_candidates : int
        Largest forward batch when scoring candidates.
    batch_size : int or None

    Returns
    -------
    AttackResult
        ``norms``: number of changed pixel locations (any channel) per image (N,).

    Example
    -------
    >>> res = greedy_pixel_attack(net, x, y, max_pixels=10)
    >>> res.success.float().mean()
    """
    check_range("max_pixels", max_pixels, low=1)
    check_range("levels", levels, low=2)
    check_range("min_confidence", min_confidence, low=0, high=1, high_inclusive=False)
    check_choice("score", score, SCORES)
    check_range("max_candidates", max_candidates, low=1)
    kwargs = dict(max_pixels=max_pixels, levels=levels, min_confidence=min_confidence, score=score,
                  max_candidates=max_candidates)
    with _EvalMode(model):
        if batch_size is not None and batch_size < len(x):
            return _split(lambda xb, yb, **kw: _pixel_batch(model, xb, yb, **kw), x, y, batch_size, **kwargs)
        return _pixel_batch(model, x, y, **kwargs)


def _pixel_batch(model, x, y, *, max_pixels, levels, min_confidence, score, max_candidates):
    x = x.detach()
    n, c, h, w = x.shape
    dev = x.device
    grid = torch.linspace(0, 1, levels, device=dev, dtype=x.dtype)
    # All joint colours: (levels**C, C).
    colours = torch.cartesian_prod(*([grid] * c)).reshape(-1, c)
    n_cand = colours.shape[0]
    x_adv = x.clone()
    changed = torch.zeros(n, h * w, dtype=torch.bool, device=dev)

    def done(logits, labels):
        prob = logits.softmax(1)
        return (logits.argmax(1) != labels) & (prob.amax(1) >= min_confidence)

    with torch.no_grad():
        active = ~done(model(x_adv), y)
    for _ in range(max_pixels):
        idx = active.nonzero()[:, 0]
        if idx.numel() == 0:
            break
        xa, ya = x_adv[idx].requires_grad_(True), y[idx]
        (g,) = torch.autograd.grad(F.cross_entropy(model(xa), ya, reduction="sum"), xa)
        saliency = g.abs().sum(1).flatten(1).masked_fill(changed[idx], float("-inf"))
        pixel = saliency.argmax(1)  # (m,)
        m = len(idx)
        with torch.no_grad():
            rows, cols = pixel // w, pixel % w
            best_val = torch.full((m,), float("inf"), device=dev, dtype=x.dtype)
            best_col = torch.zeros(m, c, device=dev, dtype=x.dtype)
            per_chunk = max(1, max_candidates // n_cand)
            for s in range(0, m, per_chunk):
                e = min(s + per_chunk, m)
                cand = xa[s:e].detach().unsqueeze(1).repeat(1, n_cand, 1, 1, 1)  # (b, P, C, H, W)
                b = e - s
                ar = torch.arange(b, device=dev)[:, None]
                cand[ar, torch.arange(n_cand, device=dev)[None, :], :, rows[s:e, None], cols[s:e, None]] = colours[None]
                logits = model(cand.view(b * n_cand, c, h, w))
                labels = ya[s:e].repeat_interleave(n_cand)
                val = _margin(logits, labels) if score == "margin" else logits.gather(1, labels[:, None])[:, 0]
                val = val.view(b, n_cand)
                v, j = val.min(1)
                best_val[s:e], best_col[s:e] = v, colours[j]
            new = xa.detach().clone()
            new[torch.arange(m, device=dev), :, rows, cols] = best_col
            x_adv[idx] = new
            changed[idx, pixel] = True
            active[idx] = ~done(model(new), ya)
    with torch.no_grad():
        success = model(x_adv).argmax(1) != y
    norms = ((x_adv - x).abs().amax(1) > 1e-8).flatten(1).sum(1).to(x.dtype)
    return AttackResult(x_adv, success, norms)
