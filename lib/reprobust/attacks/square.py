"""Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): score-based black-box, L∞ and L2.

A random search that uses only the model's logits (no gradients), AutoAttack's black-box member and a
standard check for gradient masking: if it beats the white-box attacks, their gradients are misleading.

Each iteration proposes, for every image still classified correctly, a change inside one random square
window of side ``s`` and keeps it if it lowers the margin loss ``z_y − max_{j≠y} z_j`` (their Eq. 1;
the image is fooled once the margin is negative). The fraction of pixels changed, ``p``, starts at
``p_init`` and is halved at fixed fractions of the query budget (their schedule, stated for 10,000
queries and rescaled to ``queries``): ``s = round(√(p · H · W))``.

* **L∞** (their Algorithm 2): start from vertical stripes ``x ± ε`` (a random sign per column and
  channel); a proposal sets the window of each channel to ``x ± ε`` with one random sign.
* **L2** (their Algorithm 3): start from a grid of "meta pseudo-Gaussian" tiles (concentric rectangles
  weighted ``1/(k+1)²``, the top half negated) with random signs, scaled to norm ε; a proposal moves the
  perturbation mass of a second window into the first as a new tile added to the old content, keeping
  ``‖δ‖₂ = ε``.

Here the window position is drawn once per iteration for all images (as in the authors' PyTorch code)
and the signs per image and channel, all from one seeded CPU generator: results are deterministic and
do not depend on ``batch_size``, which only splits the forward passes.
"""

from __future__ import annotations

import math

import torch

from ..validation import check_choice, check_range
from . import AttackResult
from .gradient import NORMS, _EvalMode, perturbation_norm

#: Fractions of a 10,000-query budget after which ``p`` is halved (Andriushchenko et al.'s schedule).
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def _p_at(i, queries, p_init):
    it = int(i / queries * 10000)
    return p_init / 2 ** sum(it > h for h in _HALVINGS)


@torch.no_grad()
def _margin(model, x, y, batch_size):
    logits = torch.cat([model(xb) for xb in torch.split(x, batch_size or max(len(x), 1))])
    z_y = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], -torch.inf)
    return z_y - others.amax(1)


def _signs(shape, gen, device, dtype):
    return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(device=device, dtype=dtype)


def _corner(h, w, s, gen):
    """Top-left corner of a random s × s window inside an h × w image."""
    return int(torch.randint(0, h - s + 1, (1,), generator=gen)), int(torch.randint(0, w - s + 1, (1,), generator=gen))


def _rectangles(rows, cols):
    """Concentric rectangles around the centre, ring k weighted 1/(k+1)², unit L2 norm (rows, cols)."""
    ci, cj = rows // 2, cols // 2
    ring = torch.maximum((torch.arange(rows)[:, None] - ci).abs(), (torch.arange(cols)[None, :] - cj).abs())
    n_rings = max(rows // 2 + 1, cols // 2 + 1)
    weights = 1.0 / torch.arange(1, n_rings + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)          # tail[k] = Σ_{k' ≥ k} 1/(k'+1)²
    out = tail[ring.clamp(max=n_rings - 1)]
    return out / out.norm()


def _tile(s, transpose):
    """The meta pseudo-Gaussian tile of side ``s``: top half negated rectangles, unit L2 norm."""
    if s == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    t = torch.cat([_rectangles(s // 2, s), -_rectangles(s - s // 2, s)])
    t = t / t.norm()
    return t.T if transpose else t


def _unit_l2(d):
    n = d.flatten(1).norm(dim=1).clamp_min(1e-12)
    return d / n.view(-1, *([1] * (d.ndim - 1)))


def square(model, x, y, *, eps: float, norm: str = "linf", queries: int = 5000, p_init: float | None = None,
           seed: int = 0, batch_size: int | None = None) -> AttackResult:
    """Square attack: untargeted, score-based black-box random search in an L∞ or L2 ball.

    Parameters
    ----------
    model : nn.Module, maps [0, 1] images (N, C, H, W) to logits; only its outputs are used
    x : Tensor (N, C, H, W) in [0, 1]; y : LongTensor (N,)
    eps : float ≥ 0, radius of the ball
    norm : {'linf', 'l2'}
    queries : int ≥ 1, iterations (model queries per image; 5000 in AutoAttack)
    p_init : float in (0, 1], optional, initial fraction of pixels per window (AutoAttack: 0.8)
    seed : int, seeds every random draw (deterministic on CPU)
    batch_size : int, optional, images per forward pass (memory only; the result does not depend on it)

    Returns
    -------
    AttackResult
        ``x_adv``: the first misclassified proposal, else the proposal of lowest margin.

    Example
    -------
    >>> res = square(net, x, y, eps=0.2, queries=1000)
    """
    check_range("eps", eps, low=0)
    check_choice("norm", norm, NORMS)
    check_range("queries", queries, low=1)
    p_init = 0.8 if p_init is None else p_init
    check_range("p_init", p_init, low=0, high=1, low_inclusive=False)
    if batch_size is not None:
        check_range("batch_size", batch_size, low=1)
    x = x.detach()
    y = y.to(x.device)
    n, c, h, w = x.shape
    gen = torch.Generator().manual_seed(seed)
    dev, dt = x.device, x.dtype
    with _EvalMode(model):
        if eps == 0 or n == 0:
            margin = _margin(model, x, y, batch_size)
            return AttackResult(x.clone(), margin < 0, torch.zeros(n, dtype=dt, device=dev))
        if norm == "linf":
            best = (x + eps * _signs((n, c, 1, w), gen, dev, dt)).clamp(0, 1)
        else:
            tile_side = max(h // 5, 1)
            start = max((h - tile_side * 5) // 2, 0)
            delta = torch.zeros_like(x)
            for r0 in range(start, h, tile_side):
                for c0 in range(start, w, tile_side):
                    t = _tile(tile_side, bool(torch.rand(1, generator=gen) > 0.5)).to(device=dev, dtype=dt)
                    t = t[: h - r0, : w - c0]
                    delta[:, :, r0:r0 + tile_side, c0:c0 + tile_side] += t * _signs((n, c, 1, 1), gen, dev, dt)
            best = (x + eps * _unit_l2(delta)).clamp(0, 1)
        best_margin = _margin(model, x=best, y=y, batch_size=batch_size)
        for i in range(queries):
            todo = (best_margin >= 0).nonzero()[:, 0]
            if len(todo) == 0:
                break
            p = _p_at(i, queries, p_init)
            xs, cur = x[todo], best[todo]
            if norm == "linf":
                s = min(max(int(round(math.sqrt(p * h * w))), 1), h - 1)
                r0, c0 = _corner(h, w, s, gen)
                signs = _signs((n, c, 1, 1), gen, dev, dt)[todo]
                prop = cur.clone()
                window = xs[:, :, r0:r0 + s, c0:c0 + s] + eps * signs
                prop[:, :, r0:r0 + s, c0:c0 + s] = window.clamp(0, 1)
            else:
                s = max(int(round(math.sqrt(p * h * w))), 3)
                s += 1 - s % 2                               # odd side, as in the authors' code
                s = min(s, h, w)
                (r0, c0), (r1, c1) = _corner(h, w, s, gen), _corner(h, w, s, gen)
                transpose = bool(torch.rand(1, generator=gen) > 0.5)
                signs = _signs((n, c, 1, 1), gen, dev, dt)[todo]
                d = cur - xs
                win1 = d[:, :, r0:r0 + s, c0:c0 + s]
                both = torch.zeros_like(d[:, :1])
                both[:, :, r0:r0 + s, c0:c0 + s] = 1
                both[:, :, r1:r1 + s, c1:c1 + s] = 1
                mass_windows = (d * both).flatten(2).norm(dim=2)[:, :, None, None]   # per channel
                mass_image = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                old = win1 / (win1.flatten(2).norm(dim=2)[:, :, None, None] + 1e-12)
                new = _tile(s, transpose).to(device=dev, dtype=dt) * signs + old
                # Budget of the window: its old mass plus the second window's, plus any slack left in ε.
                budget = ((eps ** 2 - mass_image ** 2).clamp_min(0) / c + mass_windows ** 2).sqrt()
                new = new / (new.flatten(2).norm(dim=2)[:, :, None, None] + 1e-12) * budget
                d = d.clone()
                d[:, :, r1:r1 + s, c1:c1 + s] = 0
                d[:, :, r0:r0 + s, c0:c0 + s] = new
                prop = (xs + eps * _unit_l2(d)).clamp(0, 1)
            m = _margin(model, prop, y[todo], batch_size)
            take = m < best_margin[todo]
            best[todo[take]], best_margin[todo[take]] = prop[take], m[take]
        with torch.no_grad():
            success = torch.cat([model(xb) for xb in torch.split(best, batch_size or n)]).argmax(1) != y
    return AttackResult(best, success, perturbation_norm(best - x, norm))
