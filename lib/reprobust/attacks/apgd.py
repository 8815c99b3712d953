"""Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and APGD-T, for L∞ and L2 balls.

APGD is PGD without a step-size parameter (Croce & Hein 2020, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", Algorithm 1):

* the step size starts at ``η⁽⁰⁾ = 2ε`` and is halved, per image, at checkpoints
  ``w_j = ⌈p_j N⌉`` with ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``
  whenever (condition 1) the loss increased in fewer than ``ρ = 0.75`` of the steps since the last
  checkpoint, or (condition 2) the step was not halved at the last checkpoint and the best loss has
  not improved since; after a halving the iterate restarts from the best point found so far;
* a momentum step (their Eq. 2, ``α = 0.75``):
  ``z = P(x⁽ᵏ⁾ + η ∇)``, ``x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α (z − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))``,
  where ``∇`` is the sign of the gradient (L∞) or the gradient over its L2 norm (L2) and ``P`` the
  projection onto the ε-ball intersected with ``[0, 1]``;
* the start is a random point on the sphere of the ball (as in their code), and each restart draws a
  new one; only images not yet fooled are attacked again.

Losses (``loss=``):

* ``'ce'`` — cross-entropy (APGD-CE);
* ``'dlr'`` — the difference of logits ratio, their Eq. 5,
  ``DLR(z, y) = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)`` (``π`` sorts the logits in decreasing
  order), invariant to shifting and scaling the logits (APGD-DLR);
* ``'dlr-targeted'`` — APGD-T: for each of the ``n_target_classes`` classes with the highest clean
  logits after the top one, the targeted DLR loss (their Eq. 6)
  ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2)``; an image counts as fooled once any target run
  misclassifies it (AutoAttack's convention: the attack is untargeted overall).

Images a model already misclassifies are returned unchanged as successes (norm 0). Every iterate is
checked: an image counts as fooled if any iterate is misclassified, and that iterate is returned;
for images never fooled the highest-loss iterate is returned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import check_choice, check_range
from . import AttackResult
from .gradient import NORMS, _EvalMode, _l2_normalise, _project, perturbation_norm

LOSSES = ("ce", "dlr", "dlr-targeted")
#: DLR divides by z_π1 − z_π3, the targeted DLR by z_π1 − (z_π3 + z_π4)/2.
MIN_CLASSES = {"ce": 2, "dlr": 3, "dlr-targeted": 4}

#: Croce & Hein's constants: momentum α, oscillation threshold ρ, and the checkpoint spacing
#: (first interval 0.22 N, shrinking by 0.03 N per checkpoint down to 0.06 N).
MOMENTUM = 0.75
RHO = 0.75


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020, Eq. 5), per image; larger means closer to fooled.

    Parameters
    ----------
    logits : Tensor (N, K), K ≥ 3
    y : LongTensor (N,)

    Returns
    -------
    Tensor (N,)
    """
    srt = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    top_is_y = logits.argmax(1) == y
    best_other = torch.where(top_is_y, srt[:, 1], srt[:, 0])
    return -(z_y - best_other) / (srt[:, 0] - srt[:, 2] + 1e-12)


def targeted_dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020, Eq. 6), per image: ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)``.

    Parameters
    ----------
    logits : Tensor (N, K), K ≥ 4
    y, target : LongTensor (N,)

    Returns
    -------
    Tensor (N,)
    """
    srt = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


def _loss_and_grad(model, x, y, target, loss):
    x = x.detach().requires_grad_(True)
    logits = model(x)
    if loss == "ce":
        per_image = F.cross_entropy(logits, y, reduction="none")
    elif loss == "dlr":
        per_image = dlr_loss(logits, y)
    else:
        per_image = targeted_dlr_loss(logits, y, target)
    (g,) = torch.autograd.grad(per_image.sum(), x)
    return per_image.detach(), g, logits.detach()


def _direction(g, norm):
    return g.sign() if norm == "linf" else _l2_normalise(g)


def _start_noise(shape, norm, generator):
    """Random draws for one restart of every image (drawn for the whole input, on CPU, so that the
    same image gets the same start however the images are batched)."""
    if norm == "linf":
        return 2 * torch.rand(shape, generator=generator) - 1
    return torch.randn(shape, generator=generator)


def _start_point(x, noise, eps, norm):
    """A point on the sphere of the ε-ball around ``x`` (their code's start), clipped to [0, 1]."""
    flat = noise.flatten(1)
    scale = flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)
    delta = eps * noise / scale.clamp_min(1e-12).view(-1, *([1] * (noise.ndim - 1)))
    return (x + delta).clamp(0, 1)


def _single_run(model, x, y, target, noise, *, eps, norm, loss, steps, rho):
    """One APGD run on a batch. Returns (x_best, loss_best, x_fooled, fooled): the highest-loss
    iterate, its loss, a misclassified iterate where one was found, and where it was found."""
    n = len(x)
    view = (-1,) + (1,) * (x.ndim - 1)
    out_best, out_loss = x.clone(), torch.full((n,), -torch.inf, device=x.device)
    out_adv, out_fooled = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)

    x_cur = _start_point(x, noise, eps, norm)
    cur_loss, grad, logits = _loss_and_grad(model, x_cur, y, target, loss)
    fooled = logits.argmax(1) != y
    out_adv[fooled], out_fooled[fooled] = x_cur[fooled], True
    # State of the images still being attacked; `idx` maps them back to the batch.
    idx = torch.arange(n, device=x.device)
    x_prev, x_best, grad_best, loss_best = x_cur.clone(), x_cur.clone(), grad.clone(), cur_loss.clone()
    eta = torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device)
    n_increase = torch.zeros(n, device=x.device)
    reduced_last = torch.ones(n, dtype=torch.bool, device=x.device)
    loss_best_last = loss_best.clone()
    prev_loss = cur_loss
    interval = max(int(0.22 * steps), 1)
    interval_min, interval_decrease = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    since_check = 0
    xs, ys, ts = x, y, target

    def keep(mask):
        nonlocal idx, xs, ys, ts, x_cur, x_prev, x_best, grad, grad_best, loss_best, eta, n_increase
        nonlocal reduced_last, loss_best_last, prev_loss
        out_best[idx[~mask]], out_loss[idx[~mask]] = x_best[~mask], loss_best[~mask]
        idx, xs, ys = idx[mask], xs[mask], ys[mask]
        ts = ts[mask] if ts is not None else None
        x_cur, x_prev, x_best, grad, grad_best = x_cur[mask], x_prev[mask], x_best[mask], grad[mask], grad_best[mask]
        loss_best, eta, n_increase = loss_best[mask], eta[mask], n_increase[mask]
        reduced_last, loss_best_last, prev_loss = reduced_last[mask], loss_best_last[mask], prev_loss[mask]

    # Fooled images need no further steps: dropping them makes later steps cheaper and changes
    # nothing for the others (every quantity below is per image).
    if fooled.any():
        keep(~fooled)
    for i in range(steps):
        if len(idx) == 0:
            break
        a = MOMENTUM if i > 0 else 1.0
        z = _project(x_cur + eta.view(view) * _direction(grad, norm), xs, eps, norm)
        x_new = _project(x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev), xs, eps, norm)
        x_prev, x_cur = x_cur, x_new
        cur_loss, grad, logits = _loss_and_grad(model, x_cur, ys, ts, loss)
        fooled = logits.argmax(1) != ys
        if fooled.any():
            out_adv[idx[fooled]], out_fooled[idx[fooled]] = x_cur[fooled], True
        better = cur_loss > loss_best
        x_best[better], grad_best[better], loss_best[better] = x_cur[better], grad[better], cur_loss[better]
        n_increase += (cur_loss > prev_loss).to(n_increase.dtype)
        prev_loss = cur_loss
        since_check += 1
        if since_check == interval:
            oscillating = n_increase <= rho * interval                     # condition 1
            stalled = ~reduced_last & (loss_best_last >= loss_best)      # condition 2
            halve = oscillating | stalled
            eta[halve] /= 2
            x_cur[halve], grad[halve] = x_best[halve], grad_best[halve]
            reduced_last, loss_best_last = halve, loss_best.clone()
            n_increase.zero_()
            since_check = 0
            interval = max(interval - interval_decrease, interval_min)
        if fooled.any():
            keep(~fooled)
    if len(idx):
        out_best[idx], out_loss[idx] = x_best, loss_best
    return out_best, out_loss, out_adv, out_fooled


def apgd(model, x, y, *, eps: float, norm: str = "linf", loss: str = "ce", steps: int = 100, restarts: int = 1,
         n_target_classes: int = 9, seed: int = 0, batch_size: int | None = None, rho: float = RHO) -> AttackResult:
    """Auto-PGD (Croce & Hein 2020) with the cross-entropy, DLR or targeted DLR loss (APGD-T).

    Parameters
    ----------
    model : nn.Module, maps [0, 1] images to logits (attacked in eval mode; its mode is restored)
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,), true labels
    eps : float ≥ 0, radius of the ball
    norm : {'linf', 'l2'}
    loss : {'ce', 'dlr', 'dlr-targeted'}
        ``'ce'``: APGD-CE; ``'dlr'``: APGD-DLR (needs ≥ 3 classes); ``'dlr-targeted'``: APGD-T
        (needs ≥ 4 classes), one run per target class.
    steps : int ≥ 1, iterations per run (100 in AutoAttack)
    restarts : int ≥ 1, random starts per run (per target for APGD-T); each restart attacks only the
        images not fooled yet
    n_target_classes : int ≥ 1, APGD-T's targets: the classes with the 2nd, 3rd, ... highest clean
        logit (capped at K − 1); ignored by the other losses
    seed : int, seeds the random starts (deterministic on CPU)
    batch_size : int, optional, attack at most this many images at once (bounds memory; the
        random starts are drawn per image, so the result does not depend on it)
    rho : float in (0, 1), oscillation threshold of the step-size rule (0.75 in the paper)

    Returns
    -------
    AttackResult
        ``x_adv`` (N, C, H, W): a misclassified iterate where the attack succeeded, else the iterate of
        highest loss; ``success`` (N,): misclassified (including images misclassified to begin with);
        ``norms`` (N,) in ``norm``.

    Example
    -------
    >>> res = apgd(net, x, y, eps=8 / 255, loss="dlr-targeted", steps=100)
    >>> robust_accuracy = 1 - res.success.float().mean()
    """
    check_range("eps", eps, low=0)
    check_choice("norm", norm, NORMS)
    check_choice("loss", loss, LOSSES)
    check_range("steps", steps, low=1)
    check_range("restarts", restarts, low=1)
    check_range("n_target_classes", n_target_classes, low=1)
    check_range("rho", rho, low=0, high=1, low_inclusive=False, high_inclusive=False)
    if batch_size is not None:
        check_range("batch_size", batch_size, low=1)
    x = x.detach()
    y = y.to(x.device)
    if len(x) == 0:
        return AttackResult(x.clone(), torch.zeros(0, dtype=torch.bool, device=x.device), x.new_zeros(0))
    gen = torch.Generator().manual_seed(seed)
    with _EvalMode(model):
        with torch.no_grad():
            logits = torch.cat([model(xb) for xb in torch.split(x, batch_size or len(x))])
        n_classes = logits.shape[1]
        if n_classes < MIN_CLASSES[loss]:
            valid = [name for name, k in MIN_CLASSES.items() if k <= n_classes]
            raise ValueError(f"loss={loss!r} needs at least {MIN_CLASSES[loss]} classes and the model has "
                             f"{n_classes}; valid choices for it: {valid}")
        success = logits.argmax(1) != y
        x_adv, best_x, best_loss = x.clone(), x.clone(), torch.full((len(x),), -torch.inf, device=x.device)
        if loss == "dlr-targeted":
            order = logits.argsort(1, descending=True)
            targets = [order[:, k] for k in range(1, min(n_target_classes, n_classes - 1) + 1)]
        else:
            targets = [None]
        for target in targets:
            for _ in range(restarts):
                noise = _start_noise(x.shape, norm, gen).to(device=x.device, dtype=x.dtype)
                todo = (~success).nonzero()[:, 0]
                if eps == 0 or len(todo) == 0:
                    continue
                for part in torch.split(todo, batch_size or len(todo)):
                    run_best, run_loss, run_adv, run_fooled = _single_run(
                        model, x[part], y[part], None if target is None else target[part], noise[part],
                        eps=eps, norm=norm, loss=loss, steps=steps, rho=rho)
                    better = run_loss > best_loss[part]
                    best_x[part[better]], best_loss[part[better]] = run_best[better], run_loss[better]
                    x_adv[part[run_fooled]] = run_adv[run_fooled]
                    success[part] |= run_fooled
    x_adv = torch.where(success.view(-1, *([1] * (x.ndim - 1))), x_adv, best_x)
    return AttackResult(x_adv, success, perturbation_norm(x_adv - x, norm))
