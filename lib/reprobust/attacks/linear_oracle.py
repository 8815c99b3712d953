"""Exact minimal L∞ and L0 adversarial perturbations of an affine (linear softmax) classifier.

For a model whose logits are affine in the input, ``z(x) = W x + b``, the smallest untargeted
perturbation inside the pixel box ``[0, 1]`` has a closed form, so these functions are an *oracle*
against which the black-box evolutionary attacks of :mod:`reprobust.attacks.blackbox` are calibrated
(a search that is too weak under-reports attack success; the oracle says by how much).

For every wrong class ``j`` let ``d = W_j - W_y`` and ``m_j(x') = d·x' + b_j - b_y`` (the image is
misclassified as soon as some ``m_j > 0``). Moving pixel value ``i`` towards ``sign(d_i)`` gains
``|d_i|`` per unit until it hits the box; the room it has is ``r_i = 1 - x_i`` (``d_i > 0``) or
``x_i`` (``d_i < 0``).

* **L∞** — within ``‖x' - x‖∞ ≤ ε`` the best ``x'`` moves every value by ``min(ε, r_i)``, so
  ``max m_j(ε) = m_j(x) + Σ_i |d_i| min(ε, r_i)``: piecewise linear and non-decreasing in ``ε``.
  The minimal ``ε`` is its root (solved exactly between the sorted breakpoints ``r_i``), minimised
  over ``j``; ``inf`` when even the box corner does not flip the prediction.
* **L0** (pixel positions, every channel of a changed pixel free) — changing pixel ``p`` gains at most
  ``g_p = Σ_c |d_{c,p}| r_{c,p}``; gains add up, so the minimal count for class ``j`` is the smallest
  ``k`` with ``m_j(x) + (sum of the k largest g_p) > 0``, minimised over ``j``.

Both count an image the model already misclassifies as 0 and use a strict ``> 0`` margin (ties, a set
of measure zero, count as not flipped).
"""

from __future__ import annotations

import numpy as np
import torch

from ..validation import check_choice

NORMS = ("linf", "l0")


@torch.no_grad()
def affine_map(model, input_shape, *, atol: float = 1e-4):
    """Read ``W`` and ``b`` of a model whose logits are affine in its input (in [0, 1] pixel space).

    ``b = model(0)`` and column ``i`` of ``W`` is ``model(e_i) - b``; the map is then verified on random
    inputs, so a non-affine model is refused rather than silently linearised.

    Parameters
    ----------
    model : nn.Module
    input_shape : tuple (C, H, W)
    atol : float, tolerance of the affinity check (float32 logits)

    Returns
    -------
    W : Tensor (K, C·H·W) float64
    b : Tensor (K,) float64

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> W, b = affine_map(net, (1, 2, 2))
    >>> W.shape
    torch.Size([3, 4])
    """
    was = model.training
    model.eval()
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    d = int(np.prod(input_shape))
    basis = torch.cat([torch.zeros(1, d), torch.eye(d)]).view(d + 1, *input_shape).to(dev)
    out = model(basis).double().cpu()
    b, W = out[0], (out[1:] - out[0]).T
    probe = torch.rand(8, *input_shape, generator=torch.Generator().manual_seed(0))
    err = (model(probe.to(dev)).double().cpu() - (probe.flatten(1).double() @ W.T + b)).abs().max()
    model.train(was)
    if float(err) > atol:
        raise ValueError(f"model is not affine in its input (max deviation {float(err):.3g} > atol={atol}); "
                         "the closed-form oracle applies to linear softmax models only")
    return W, b


def _margins_and_gains(W, b, x, y):
    """Per image and wrong class: clean margin m (n, K), per-value gains |d| (n, K, D) and room r (n, K, D)."""
    xf = x.flatten(1).double().cpu()
    W, b = W.double().cpu(), b.double().cpu()
    y = y.cpu().long()
    d = W[None, :, :] - W[y][:, None, :]                    # (n, K, D)
    m = xf @ W.T + b - (xf @ W.T + b).gather(1, y[:, None])  # (n, K), 0 at the true class
    room = torch.where(d > 0, 1.0 - xf[:, None, :], xf[:, None, :]).clamp_min(0.0)
    return m, d.abs(), room, y


def minimal_perturbation(W, b, x, y, norm: str) -> np.ndarray:
    """Exact smallest L∞ budget or L0 pixel count that makes an affine classifier misclassify each image.

    Parameters
    ----------
    W : Tensor (K, C·H·W); b : Tensor (K,), e.g. from :func:`affine_map`
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,), true labels
    norm : {'linf', 'l0'}
        ``'linf'``: budget in pixel units (a digits grey level is 1/16); ``'l0'``: number of pixel
        positions (all channels of a changed pixel may change, as in the pixel attack).

    Returns
    -------
    ndarray (N,): 0 for images already misclassified, ``inf`` where no perturbation in the box flips
    the prediction.

    Example
    -------
    >>> W, b = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2)
    >>> x = torch.tensor([[[[0.6, 0.2]]]])
    >>> minimal_perturbation(W, b, x, torch.tensor([0]), "linf").round(3)   # meet at 0.4 each
    array([0.2])
    >>> minimal_perturbation(W, b, x, torch.tensor([0]), "l0")
    array([1.])
    """
    check_choice("norm", norm, NORMS)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"x must be (N, C, H, W) with N == len(y); got x {tuple(x.shape)}, y {tuple(y.shape)}")
    if len(x) == 0:
        return np.zeros(0)
    m, g, room, y = _margins_and_gains(W, b, x, y)
    n, k, _ = g.shape
    wrong = torch.ones(n, k, dtype=torch.bool)
    wrong[torch.arange(n), y] = False
    if norm == "linf":
        # m(ε) = m0 + Σ_i g_i min(ε, r_i). Between consecutive sorted breakpoints r_(t-1) ≤ ε ≤ r_(t) the
        # slope is the sum of g over values whose room exceeds ε; evaluate m at every breakpoint and solve
        # the linear piece in which it first turns positive.
        r_sorted, order = room.sort(dim=2)
        g_sorted = g.gather(2, order)
        slope_after = g_sorted.flip(2).cumsum(2).flip(2)            # slope on [r_(t-1), r_(t)]
        prev = torch.cat([torch.zeros(n, k, 1, dtype=r_sorted.dtype), r_sorted[..., :-1]], dim=2)
        m_at = m[..., None] + torch.cumsum(slope_after * (r_sorted - prev), dim=2)   # m at each r_(t)
        m_start = torch.cat([m[..., None], m_at[..., :-1]], dim=2)                   # m at each r_(t-1)
        crosses = (m_start <= 0) & (m_at > 0) & (slope_after > 0)
        eps_piece = prev + (-m_start) / slope_after.clamp_min(1e-300)
        eps_piece = torch.where(crosses, eps_piece, torch.full_like(eps_piece, float("inf")))
        eps = eps_piece.amin(dim=2)
    else:
        c = x.shape[1]
        gain = (g * room).view(n, k, c, -1).sum(dim=2)               # (n, K, H·W) per pixel position
        top = gain.sort(dim=2, descending=True).values.cumsum(dim=2)
        ok = (m[..., None] + top) > 0
        first = torch.where(ok.any(2), ok.float().argmax(2).double() + 1, torch.full((n, k), float("inf"),
                                                                                   dtype=torch.float64))
        eps = first
    eps = torch.where(wrong, eps, torch.full_like(eps, float("inf"))).amin(dim=1)
    already = (m.masked_fill(~wrong, -float("inf")) >= 0).any(dim=1)   # argmax ≠ y (ties included)
    eps = torch.where(already, torch.zeros_like(eps), eps)
    return eps.numpy()
