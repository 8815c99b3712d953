"""White-box gradient attacks: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018).

Both work in pixel space ``[0, 1]``, batched; PGD supports L∞ and L2 balls, a uniform random start
inside the ball and restarts (keeping, per image, the first successful attempt, else the first restart's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import check_choice, check_range
from . import AttackResult

NORMS = ("linf", "l2")


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of ``delta`` (N, ...): ``'linf' | 'l2' | 'l1' | 'l0'``."""
    check_choice("norm", norm, ("linf", "l2", "l1", "l0"))
    d = delta.flatten(1)
    if norm == "linf":
        return d.abs().amax(dim=1)
    if norm == "l2":
        return d.norm(dim=1)
    if norm == "l1":
        return d.abs().sum(dim=1)
    return (d.abs() > 1e-8).sum(dim=1).to(d.dtype)


def wrong_class_confidence(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Largest softmax probability over the classes other than ``y``, per row.

    Parameters
    ----------
    logits : Tensor of shape (n, n_classes)
    y : LongTensor of shape (n,), the true labels

    Returns
    -------
    Tensor of shape (n,)
        Above 0.5 the image is necessarily misclassified (the wrong class holds the majority).
    """
    return logits.softmax(1).scatter(1, y[:, None], 0.0).amax(1)


def _confident_success(logits, y, targeted, confidence):
    """Success with a softmax of at least ``confidence`` for the wrong (untargeted) or target class."""
    conf = logits.softmax(1).gather(1, y[:, None])[:, 0] if targeted else wrong_class_confidence(logits, y)
    return _is_success(logits, y, targeted) & (conf >= confidence)


def _is_success(logits, y, targeted):
    pred = logits.argmax(1)
    return pred == y if targeted else pred != y


class _EvalMode:
    """Run the attack with the model in eval mode (BatchNorm running statistics, no dropout)."""

    def __init__(self, model):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


LOSSES = ("ce", "confidence")


def _loss_grad(model, x, y, targeted, loss_name="ce"):
    x = x.detach().requires_grad_(True)
    logits = model(x)
    if loss_name == "confidence":
        # Log-softmax of the currently most probable wrong class: raising it concentrates the mass on one
        # class, where the cross-entropy only removes it from the true class (and may spread it).
        logp = logits.log_softmax(1)
        wrong = logp.detach().scatter(1, y[:, None], float("-inf")).argmax(1)
        loss = logp.gather(1, wrong[:, None]).sum()
    else:
        loss = F.cross_entropy(logits, y, reduction="sum")
    if targeted:
        loss = -loss
    (g,) = torch.autograd.grad(loss, x)
    return g, logits.detach()


def _l2_normalise(g):
    n = g.flatten(1).norm(dim=1).clamp_min(1e-12)
    return g / n.view(-1, *([1] * (g.ndim - 1)))


def fgsm(model, x, y, *, eps: float, norm: str = "linf", targeted: bool = False) -> AttackResult:
    """Fast gradient (sign) method: one step of size ``eps``.

    Parameters
    ----------
    model : nn.Module, maps [0, 1] images to logits
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,), true labels (or targets if ``targeted``)
    eps : float ≥ 0
    norm : {'linf', 'l2'}
        L∞: ``x + eps·sign(∇)``; L2: ``x + eps·∇/‖∇‖₂`` (the fast gradient method).

    Returns
    -------
    AttackResult
    """
    check_range("eps", eps, low=0)
    check_choice("norm", norm, NORMS)
    with _EvalMode(model):
        g, _ = _loss_grad(model, x, y, targeted)
        step = g.sign() if norm == "linf" else _l2_normalise(g)
        x_adv = (x + eps * step).clamp(0, 1).detach()
        with torch.no_grad():
            success = _is_success(model(x_adv), y, targeted)
    return AttackResult(x_adv, success, perturbation_norm(x_adv - x, norm))


def _random_start(x, eps, norm, generator):
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        delta = (2 * u - 1) * eps
    else:
        d = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        r = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        dim = x[0].numel()
        delta = _l2_normalise(d) * (eps * r.pow(1.0 / dim)).view(-1, *([1] * (x.ndim - 1)))
    return (x + delta).clamp(0, 1)


def _project(x_adv, x, eps, norm):
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        factor = (eps / n).clamp(max=1.0)
        delta = delta * factor.view(-1, *([1] * (x.ndim - 1)))
    return (x + delta).clamp(0, 1)


def pgd(model, x, y, *, eps: float, norm: str = "linf", steps: int = 10, step_size: float | None = None,
        random_start: bool = True, restarts: int = 1, targeted: bool = False, seed: int = 0,
        batch_size: int | None = None, stop_confidence: float | None = None, loss: str = "ce") -> AttackResult:
    """Projected gradient descent on the cross-entropy inside an L∞ or L2 ball.

    Parameters
    ----------
    model : nn.Module, maps [0, 1] images to logits
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,)
    eps : float ≥ 0, radius of the ball
    norm : {'linf', 'l2'}
    steps : int ≥ 1
    step_size : float, optional, default ``2.5 · eps / steps`` (Madry et al.)
    random_start : bool, default True, uniform start inside the ball
    restarts : int ≥ 1; per image the first successful restart is kept (the first restart's attempt
        where all fail)
    targeted : bool, default False, then ``y`` are the targets
    seed : int, seeds the random starts (deterministic on CPU)
    batch_size : int, optional, split ``x`` to bound memory (the result does not depend on it)
    stop_confidence : float in (0, 1), optional
        Per-image early stop: an image whose iterate is already misclassified (targeted: classified as
        the target) with that class's softmax ≥ ``stop_confidence`` is frozen there. Without it PGD
        spends its whole budget and ends at whatever confidence that gives, so its examples cannot be
        compared with those of attacks that stop at a confidence (see
        :func:`reprobust.attacks.confidence.scale_to_confidence`). Success still means misclassified.
    loss : {'ce', 'confidence'}, default 'ce'
        Ascent on the cross-entropy of ``y`` (Madry et al.), or (untargeted only) on the log-softmax of the
        most probable wrong class, the loss that reaches a ``stop_confidence``: the cross-entropy only
        drives the true class down and can leave the mass spread over several wrong classes.

    Returns
    -------
    AttackResult

    Example
    -------
    >>> res = pgd(net, x, y, eps=0.1, steps=20)
    >>> robust_accuracy = 1 - res.success.float().mean()
    """
    check_range("eps", eps, low=0)
    check_choice("norm", norm, NORMS)
    check_range("steps", steps, low=1)
    check_range("restarts", restarts, low=1)
    if batch_size is not None:
        check_range("batch_size", batch_size, low=1)
    check_choice("loss", loss, LOSSES)
    if loss == "confidence" and targeted:
        raise ValueError("loss='confidence' is for untargeted attacks; got targeted=True (valid: loss='ce')")
    if stop_confidence is not None:
        check_range("stop_confidence", stop_confidence, low=0, high=1, low_inclusive=False, high_inclusive=False)
    alpha = 2.5 * eps / steps if step_size is None else step_size
    gen = torch.Generator().manual_seed(seed)
    x = x.detach()
    y = y.to(x.device)
    best = x.clone()
    best_success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    with _EvalMode(model):
        for r in range(restarts):
            # The start is drawn for every image at once, so batching never changes which start an
            # image gets: a batched attack equals the unbatched one.
            start = _random_start(x, eps, norm, gen) if (random_start and eps > 0) else x
            # Later restarts attack only the images not fooled yet (nothing else could change).
            todo = torch.arange(len(x), device=x.device) if r == 0 else (~best_success).nonzero()[:, 0]
            for idx in torch.split(todo, batch_size or max(len(todo), 1)):
                xb, yb = x[idx], y[idx]
                x_adv = start[idx].clone()
                frozen = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
                for _ in range(steps):
                    g, logits = _loss_grad(model, x_adv, yb, targeted, loss)
                    if stop_confidence is not None:
                        # The check uses the logits of the current iterate, so a frozen image keeps an
                        # iterate that is known to meet the target (no extra forward pass).
                        frozen |= _confident_success(logits, yb, targeted, stop_confidence)
                        if bool(frozen.all()):
                            break
                    step = g.sign() if norm == "linf" else _l2_normalise(g)
                    stepped = _project(x_adv + alpha * step, xb, eps, norm).detach()
                    x_adv = torch.where(frozen.view(-1, *([1] * (x.ndim - 1))), x_adv, stepped)
                with torch.no_grad():
                    succ = _is_success(model(x_adv), yb, targeted)
                take = succ & ~best_success[idx]
                if r == 0:
                    # The first restart fills every image; later ones only replace failures that now succeed.
                    take = take | ~succ
                best[idx[take]] = x_adv[take]
                best_success[idx] |= succ
            if bool(best_success.all()):
                break
    return AttackResult(best, best_success, perturbation_norm(best - x, norm))
