"""Black-box evolutionary attacks: the pixel attack (L0) and the threshold attack (L∞).

The two attacks of Vargas, Kotyan et al.'s "Dual Quality Assessment" companion work, used by the Raw
Zero-Shot paper (arXiv 1906.06627; reconstruction in ``shared/papers/paperA_rawzeroshot.md`` §2.4):

* **pixel attack** — change at most ``th`` pixels; each pixel is a gene ``(row, col, value per channel)``;
* **threshold attack** — change every pixel by at most ``th`` (L∞ ball), clipped to ``[0, 1]``.

Both are untargeted and use only the model's output probabilities: the search minimises the softmax
probability of the true class and stops an image as soon as one candidate is misclassified. Two
optimisers:

* ``'de'`` (default here) — differential evolution, rand/1/bin (Storn & Price 1997; as in scipy's
  ``differential_evolution``), written vectorised over images *and* population members, so a generation
  of all images is one tensor operation;
* ``'cmaes'`` — CMA-ES from the ``cma`` package (the authors' default), one ``CMAEvolutionStrategy`` per
  image driven through ask/tell.

With either optimiser, each generation's candidates for *all* images still being attacked are decoded
and scored in **one batched forward pass** (optionally cut into chunks of ``max_batch`` for memory);
``batch_images=False`` switches to a per-image loop, kept only as the benchmark's reference.

:func:`minimal_threshold` binary-searches each image's smallest successful threshold over a grid of
levels (one batched attack per search step, each image at its own threshold), so the attack success at
every threshold is read off once: ``success(th) = [minimal threshold <= th]`` (assumes success is
monotone in ``th``, as the authors' ``-th -1`` mode does).

Scales: images are in ``[0, 1]``. ``threshold`` of the threshold attack is in the same units (a grey
level of 8×8 digits is 1/16); the pixel attack's ``n_pixels`` is an integer count.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch

from ..validation import check_choice, check_range
from . import AttackResult

OPTIMIZERS = ("de", "cmaes")
ATTACKS = ("pixel", "threshold")


class MinimalThreshold(NamedTuple):
    """Result of :func:`minimal_threshold`.

    Attributes
    ----------
    thresholds : ndarray of shape (N,)
        Smallest level at which the attack succeeded; 0 for images the model already misclassifies,
        ``inf`` where it failed even at the largest level.
    result : AttackResult
        ``x_adv`` (N, C, H, W) at the minimal threshold (best attempt at the largest level where it
        failed), ``success`` (N,), ``norms`` (N,) (L0 pixel count or L∞).
    queries : ndarray of shape (N,)
        Model evaluations spent on each image over the whole search.
    """

    thresholds: np.ndarray
    result: AttackResult
    queries: np.ndarray


@contextmanager
def _eval_mode(model):
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


class _Problem:
    """Decode candidate vectors into images for a batch of images, each at its own threshold."""

    def __init__(self, attack, x, thresholds, pixel_max):
        self.attack, self.x = attack, x
        self.n, self.c, self.h, self.w = x.shape
        self.t = thresholds  # (n,) float for threshold attack, long for pixel attack
        if attack == "threshold":
            self.dim = self.c * self.h * self.w
            self.low, self.high = -1.0, 1.0
        else:
            self.pixel_max = pixel_max
            self.dim = pixel_max * (2 + self.c)
            self.low, self.high = 0.0, 1.0

    def dims(self, idx):
        """Number of genes actually used by each image (CMA-ES runs in this dimension)."""
        if self.attack == "threshold":
            return np.full(len(idx), self.dim)
        return self.t[idx].cpu().numpy() * (2 + self.c)

    def initial(self, idx):
        """Starting point: no perturbation / the first ``th`` pixels in raster order with their own values."""
        if self.attack == "threshold":
            return torch.zeros(len(idx), self.dim, device=self.x.device)
        j = torch.arange(self.pixel_max, device=self.x.device)
        rows, cols = (j // self.w) % self.h, j % self.w
        vals = self.x[idx][:, :, rows, cols].permute(0, 2, 1)  # (n, pixel_max, C)
        genes = torch.cat([((rows + 0.5) / self.h).expand(len(idx), -1)[..., None],
                           ((cols + 0.5) / self.w).expand(len(idx), -1)[..., None], vals], dim=2)
        return genes.reshape(len(idx), -1)

    def decode(self, z, idx):
        """Candidates ``z`` (n_active, P, dim) for images ``idx`` → images (n_active, P, C, H, W)."""
        x = self.x[idx]
        n_act, pop = z.shape[:2]
        if self.attack == "threshold":
            delta = z.view(n_act, pop, self.c, self.h, self.w) * self.t[idx].view(-1, 1, 1, 1, 1)
            return (x[:, None] + delta).clamp_(0.0, 1.0)
        genes = z.view(n_act, pop, self.pixel_max, 2 + self.c)
        rows = (genes[..., 0] * self.h).long().clamp_(0, self.h - 1)
        cols = (genes[..., 1] * self.w).long().clamp_(0, self.w - 1)
        pos = rows * self.w + cols  # (n_act, P, pixel_max)
        flat = x.reshape(n_act, 1, self.c, self.h * self.w).expand(n_act, pop, self.c, self.h * self.w)
        original = flat.gather(3, pos[:, :, None, :].expand(-1, -1, self.c, -1))
        values = genes[..., 2:].permute(0, 1, 3, 2).clamp(0.0, 1.0)  # (n_act, P, C, pixel_max)
        # Genes beyond an image's own threshold write the original value back (a no-op), so images at
        # different thresholds share one tensor.
        active = (torch.arange(self.pixel_max, device=z.device)[None, :] < self.t[idx][:, None])
        values = torch.where(active[:, None, None, :], values, original)
        out = flat.clone()
        out.scatter_(3, pos[:, :, None, :].expand(-1, -1, self.c, -1), values)
        return out.view(n_act, pop, self.c, self.h, self.w)

    def norms(self, x_adv, idx):
        delta = (x_adv - self.x[idx]).abs()
        if self.attack == "threshold":
            return delta.flatten(1).amax(dim=1)
        # L0 over pixel positions: a pixel counts once however many of its channels changed.
        return (delta.flatten(2).amax(dim=1) > 1e-8).sum(dim=1).to(x_adv.dtype)


def _score(model, images, y, *, max_batch, batch_images):
    """True-class probability and success for images (n_act, P, C, H, W) in one (chunked) forward pass."""
    n_act, pop = images.shape[:2]
    flat = images.reshape(n_act * pop, *images.shape[2:])
    if batch_images:
        step = max_batch or len(flat)
        logits = torch.cat([model(flat[i:i + step]) for i in range(0, len(flat), step)])
    else:  # reference mode for the benchmark: one forward pass per image's population
        logits = torch.cat([model(flat[i * pop:(i + 1) * pop]) for i in range(n_act)])
    logits = logits.view(n_act, pop, -1)
    probs = torch.softmax(logits.float(), dim=2)
    true_prob = probs.gather(2, y.view(-1, 1, 1).expand(-1, pop, 1)).squeeze(2)
    return true_prob, logits.argmax(dim=2) != y.view(-1, 1)


class _Tracker:
    """Per-image best candidate, success and query count; decides who is still being attacked."""

    def __init__(self, x, device):
        self.x_adv = x.clone()
        self.best = torch.full((len(x),), float("inf"), device=device)
        self.success = torch.zeros(len(x), dtype=torch.bool, device=device)
        self.queries = torch.zeros(len(x), dtype=torch.long, device=device)

    def update(self, idx, images, fitness, success):
        """Record the generation's results for images ``idx``; success wins over lower fitness."""
        self.queries[idx] += fitness.shape[1]
        key = fitness - 2.0 * success.to(fitness.dtype)  # successful candidates rank first
        pick = key.argmin(dim=1)
        sel = torch.arange(len(idx), device=fitness.device)
        best_key, best_succ = key[sel, pick], success[sel, pick]
        improve = best_key < self.best[idx]
        upd = idx[improve]
        self.best[upd] = best_key[improve]
        self.x_adv[upd] = images[sel[improve], pick[improve]]
        self.success[idx] |= best_succ


def _de(problem, model, y, tracker, idx, *, popsize, max_iter, mutation, crossover, gen, max_batch,
        batch_images):
    """Vectorised DE rand/1/bin over images ``idx``; stops each image at its first success."""
    dev = problem.x.device
    n_act = len(idx)
    pop = problem.low + (problem.high - problem.low) * torch.rand(n_act, popsize, problem.dim, generator=gen)
    pop = pop.to(dev)
    pop[:, 0] = problem.initial(idx)  # keep the unperturbed start in the population
    images = problem.decode(pop, idx)
    fit, succ = _score(model, images, y[idx], max_batch=max_batch, batch_images=batch_images)
    tracker.update(idx, images, fit, succ)
    for _ in range(max_iter - 1):
        alive = ~tracker.success[idx]
        if not bool(alive.any()):
            break
        idx, pop, fit = idx[alive], pop[alive], fit[alive]
        n_act = len(idx)
        # Three distinct-from-self partners per member: offsets 1..P-1 modulo P (partners may coincide).
        base = torch.arange(popsize)[None, :, None]
        offs = torch.randint(1, popsize, (n_act, popsize, 3), generator=gen)
        partners = ((base + offs) % popsize).to(dev)
        rows = torch.arange(n_act, device=dev)[:, None]
        a, b, c = (pop[rows, partners[..., i]] for i in range(3))
        mutant = (a + mutation * (b - c)).clamp_(problem.low, problem.high)
        cross = (torch.rand(n_act, popsize, problem.dim, generator=gen) < crossover).to(dev)
        forced = torch.randint(0, problem.dim, (n_act, popsize, 1), generator=gen).to(dev)
        cross.scatter_(2, forced, True)  # at least one gene from the mutant, as in rand/1/bin
        trial = torch.where(cross, mutant, pop)
        images = problem.decode(trial, idx)
        trial_fit, trial_succ = _score(model, images, y[idx], max_batch=max_batch, batch_images=batch_images)
        tracker.update(idx, images, trial_fit, trial_succ)
        keep = trial_fit <= fit
        pop = torch.where(keep[..., None], trial, pop)
        fit = torch.where(keep, trial_fit, fit)


def _cmaes(problem, model, y, tracker, idx, *, popsize, max_iter, sigma0, seed, max_batch, batch_images):
    """One CMA-ES per image (``cma`` ask/tell); all images' populations scored in one forward pass."""
    import cma

    dev = problem.x.device
    dims = problem.dims(idx.cpu())
    x0 = problem.initial(idx).cpu().numpy().astype(np.float64)
    strategies = {}
    for j, i in enumerate(idx.tolist()):
        d = int(dims[j])
        # Start inside the box: CMA-ES bounds are open at the corners it is initialised on.
        start = np.clip(x0[j, :d], problem.low + 1e-3, problem.high - 1e-3)
        opts = {"bounds": [problem.low, problem.high], "popsize": popsize, "maxiter": max_iter,
                "seed": int(seed) * 100003 + i + 1, "verbose": -9}
        strategies[i] = cma.CMAEvolutionStrategy(start, sigma0, opts)
    for _ in range(max_iter):
        live = [i for i in strategies if not bool(tracker.success[i]) and not strategies[i].stop()]
        if not live:
            break
        asked = {i: strategies[i].ask() for i in live}
        z = np.zeros((len(live), popsize, problem.dim))
        for j, i in enumerate(live):
            sol = np.asarray(asked[i])
            z[j, :, :sol.shape[1]] = sol
        live_idx = torch.as_tensor(live, device=dev)
        images = problem.decode(torch.as_tensor(z, dtype=problem.x.dtype, device=dev), live_idx)
        fit, succ = _score(model, images, y[live_idx], max_batch=max_batch, batch_images=batch_images)
        tracker.update(live_idx, images, fit, succ)
        fit_np = fit.double().cpu().numpy()
        for j, i in enumerate(live):
            strategies[i].tell(asked[i], fit_np[j].tolist())


def _budget_batch(model, x, max_batch, memory_budget):
    """``max_batch`` lowered so that one forward pass fits ``memory_budget`` (:mod:`reprobust.memory`)."""
    from ..memory import forward_bytes_per_item, items_per_chunk, parse_budget

    if parse_budget(memory_budget) is None:
        return max_batch
    with _eval_mode(model):
        fit_ = items_per_chunk(forward_bytes_per_item(model, x[:1]), memory_budget, total=2 ** 62)
    return fit_ if max_batch is None else min(max_batch, fit_)


def _vertex_polish(problem, model, y, tracker, idx, *, passes, max_batch, batch_images):
    """Greedy coordinate search over the vertices of the L∞ ball, after the evolutionary search.

    The loss of a (near-)linear model is smallest at a vertex of the ball (every value moved by ±th), which
    a population search in the cube reaches slowly. Starting from the sign of each image's best
    perturbation so far, flip one coordinate at a time (all images in one forward pass per coordinate)
    and keep a flip that lowers the true-class probability — the local search of Moon et al. (ICML 2019,
    "Parsimonious black-box adversarial attacks"), one pass costing ``C·H·W`` queries per image.
    """
    dev = problem.x.device
    x = problem.x[idx]
    z = torch.sign(tracker.x_adv[idx] - x).flatten(1)
    z[z == 0] = 1.0
    images = problem.decode(z[:, None], idx)
    fit, succ = _score(model, images, y[idx], max_batch=max_batch, batch_images=batch_images)
    tracker.update(idx, images, fit, succ)
    fit = fit[:, 0]
    for _ in range(passes):
        for i in range(problem.dim):
            alive = ~tracker.success[idx]
            if not bool(alive.any()):
                return
            a = torch.nonzero(alive).flatten()
            trial = z[a].clone()
            trial[:, i] = -trial[:, i]
            images = problem.decode(trial[:, None], idx[a])
            f, sc = _score(model, images, y[idx[a]], max_batch=max_batch, batch_images=batch_images)
            tracker.update(idx[a], images, f, sc)
            better = f[:, 0] < fit[a]
            z[a[better]] = trial[better]
            fit[a[better]] = f[better, 0]


def _attack(attack, model, x, y, thresholds, *, optimizer, popsize, max_iter, seed, sigma0, mutation,
            crossover, max_batch, batch_images, pixel_max=None, memory_budget=None,
            polish_passes=0):
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_range("popsize", popsize, low=4)
    check_range("max_iter", max_iter, low=1)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"x must be (N, C, H, W) with N == len(y); got x {tuple(x.shape)}, y {tuple(y.shape)}")
    dev = x.device
    y = y.to(dev)
    t = torch.as_tensor(thresholds, device=dev)
    t = t.expand(len(x)).clone() if t.ndim == 0 else t
    if bool((t < 0).any()):
        raise ValueError(f"threshold must be >= 0; got min {float(t.min())}")
    if attack == "pixel":
        t = t.round().long()
        pixel_max = int(t.max()) if pixel_max is None else pixel_max
        pixel_max = max(pixel_max, 1)
    else:
        t = t.to(x.dtype)
    max_batch = _budget_batch(model, x, max_batch, memory_budget)
    problem = _Problem(attack, x, t, pixel_max)
    tracker = _Tracker(x, dev)
    gen = torch.Generator().manual_seed(int(seed))
    with _eval_mode(model):
        # Generation 0: the clean images. Already-misclassified images succeed with no change. Images at
        # threshold 0 are searched like any other (every candidate decodes to the clean image), so a
        # decoder that leaks perturbation at a zero budget shows up as a success there.
        fit, succ = _score(model, x[:, None], y, max_batch=max_batch, batch_images=batch_images)
        tracker.update(torch.arange(len(x), device=dev), x[:, None], fit, succ)
        todo = torch.nonzero(~tracker.success).flatten()
        if len(todo):
            if optimizer == "de":
                _de(problem, model, y, tracker, todo, popsize=popsize, max_iter=max_iter, mutation=mutation,
                    crossover=crossover, gen=gen, max_batch=max_batch, batch_images=batch_images)
            else:
                _cmaes(problem, model, y, tracker, todo, popsize=popsize, max_iter=max_iter, sigma0=sigma0,
                       seed=seed, max_batch=max_batch, batch_images=batch_images)
            todo = todo[~tracker.success[todo]]
            if attack == "threshold" and polish_passes and len(todo):
                _vertex_polish(problem, model, y, tracker, todo, passes=polish_passes, max_batch=max_batch,
                               batch_images=batch_images)
    norms = problem.norms(tracker.x_adv, torch.arange(len(x), device=dev))
    return AttackResult(tracker.x_adv, tracker.success, norms), tracker.queries


def threshold_attack(model, x, y, threshold, *, optimizer: str = "de", popsize: int = 40, max_iter: int = 40,
                     seed: int = 0, sigma0: float = 0.25, mutation: float = 0.5, crossover: float = 0.9,
                     max_batch: int | None = None, batch_images: bool = True, memory_budget=None,
                     polish_passes: int = 0) -> AttackResult:
    """Untargeted black-box L∞ attack: search ``x + th·z``, ``z ∈ [-1, 1]^{C×H×W}``, clipped to [0, 1].

    Parameters
    ----------
    model : nn.Module mapping [0, 1] images to logits (only its outputs are used)
    x : Tensor (N, C, H, W) in [0, 1]
    y : LongTensor (N,), true labels
    threshold : float or Tensor (N,)
        L∞ budget per image in pixel units (0 → no perturbation: only already-misclassified images succeed).
    optimizer : {'de', 'cmaes'}, default 'de'
    popsize, max_iter : int
        Candidates per image per generation and number of generations (including the first).
    seed : int
    sigma0 : float, default 0.25
        CMA-ES initial step in units of the budget (the authors' ``th/4``).
    mutation, crossover : float
        DE's differential weight F and crossover rate CR.
    max_batch : int, optional
        Cap on images per forward pass (memory); default: the whole generation at once.
    memory_budget : int or str, optional
        Bytes one forward pass may use (e.g. ``"8GB"``; default ``$REPROBUST_MEMORY_BUDGET`` or no limit):
        the generation (images × candidates) is scored in chunks of as many candidates as fit, estimated
        by :func:`reprobust.memory.forward_bytes_per_item`. Results do not depend on it.
    batch_images : bool, default True
        False = one forward pass per image (reference for the benchmark only).
    polish_passes : int, default 0
        Passes of a greedy vertex search (one coordinate flip at a time, ``C·H·W`` queries per pass)
        after the evolutionary search, for images it left unbroken; needed to match the exact minimal
        L∞ perturbations of a linear model (tests/test_linear_oracle.py).

    Returns
    -------
    AttackResult
        ``x_adv`` (N, C, H, W): first misclassified candidate, or the lowest true-class probability
        found; ``success`` (N,); ``norms`` (N,): L∞ of ``x_adv − x``.

    Example
    -------
    >>> import torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> res = threshold_attack(model, torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0]), 0.0)
    >>> bool((res.norms == 0).all())
    True
    """
    check_range("threshold", float(torch.as_tensor(threshold).min()), low=0)
    res, _ = _attack("threshold", model, x, y, threshold, optimizer=optimizer, popsize=popsize,
                     max_iter=max_iter, seed=seed, sigma0=sigma0, mutation=mutation, crossover=crossover,
                     max_batch=max_batch, batch_images=batch_images, memory_budget=memory_budget,
                     polish_passes=polish_passes)
    return res


def pixel_attack(model, x, y, n_pixels, *, optimizer: str = "de", popsize: int = 40, max_iter: int = 40,
                 seed: int = 0, sigma0: float = 0.25, mutation: float = 0.5, crossover: float = 0.9,
                 max_batch: int | None = None, batch_images: bool = True, memory_budget=None) -> AttackResult:
    """Untargeted black-box L0 attack: set at most ``n_pixels`` pixels (position and value) freely.

    Each pixel gene is ``(row, col, value per channel)`` scaled to [0, 1]; positions are floored to
    the grid. CMA-ES starts from the first ``n_pixels`` pixels in raster order with their own values,
    as in the authors' code.

    Parameters
    ----------
    model, x, y : see :func:`threshold_attack`
    n_pixels : int or Tensor (N,) of int >= 0
    optimizer, popsize, max_iter, seed, sigma0, mutation, crossover, max_batch, batch_images, memory_budget :
        see :func:`threshold_attack` (``sigma0`` in gene units: 1 = the image side / the value range)

    Returns
    -------
    AttackResult
        ``norms`` (N,) = number of pixel positions changed (≤ ``n_pixels``).

    Example
    -------
    >>> import torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> res = pixel_attack(model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1]), 1, popsize=8, max_iter=3)
    >>> bool((res.norms <= 1).all())
    True
    """
    check_range("n_pixels", int(torch.as_tensor(n_pixels).min()), low=0)
    res, _ = _attack("pixel", model, x, y, n_pixels, optimizer=optimizer, popsize=popsize, max_iter=max_iter,
                     seed=seed, sigma0=sigma0, mutation=mutation, crossover=crossover, max_batch=max_batch,
                     batch_images=batch_images, memory_budget=memory_budget)
    return res


def minimal_threshold(attack: str, model, x, y, levels, *, seed: int = 0, **options) -> MinimalThreshold:
    """Binary-search each image's smallest successful threshold on the grid ``levels``.

    The attack first runs at the largest level (images failing there get ``inf``), then bisects; every
    step is one batched attack over the images still searching, each at its own threshold. Attack
    success at any threshold ``th`` is then ``thresholds <= th`` (:func:`success_rate`).

    Parameters
    ----------
    attack : {'pixel', 'threshold'}
    model, x, y : see :func:`threshold_attack`
    levels : sequence of positive numbers, ascending (pixel counts or L∞ budgets)
    seed : int; step ``s`` of the search uses ``seed + s``
    **options : passed to the attack (``optimizer``, ``popsize``, ``max_iter``, ...)

    Returns
    -------
    MinimalThreshold

    Example
    -------
    >>> import torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> out = minimal_threshold("threshold", model, torch.rand(4, 1, 2, 2), torch.zeros(4, dtype=torch.long),
    ...                         [0.25, 0.5, 1.0], popsize=8, max_iter=5)
    >>> out.thresholds.shape
    (4,)
    """
    check_choice("attack", attack, ATTACKS)
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or len(levels) == 0 or (levels <= 0).any() or (np.diff(levels) <= 0).any():
        raise ValueError(f"levels={levels.tolist()} must be a non-empty ascending sequence of positive values")
    if attack == "pixel" and not np.allclose(levels, np.round(levels)):
        raise ValueError(f"levels={levels.tolist()} must be whole pixel counts for the pixel attack")
    dev = x.device
    n = len(x)
    pixel_max = int(levels[-1]) if attack == "pixel" else None

    def run(idx, level_idx, step):
        th = torch.as_tensor(levels[level_idx], device=dev, dtype=x.dtype)
        return _attack(attack, model, x[idx], y[idx], th, seed=seed + step, pixel_max=pixel_max,
                       **{"optimizer": "de", "popsize": 40, "max_iter": 40, "sigma0": 0.25, "mutation": 0.5,
                          "crossover": 0.9, "max_batch": None, "batch_images": True, "memory_budget": None, "polish_passes": 0,
                          **options})

    all_idx = np.arange(n)
    res, queries = run(all_idx, np.full(n, len(levels) - 1), 0)
    x_adv, success, norms = res.x_adv.clone(), res.success.clone(), res.norms.clone()
    queries = queries.cpu().numpy().copy()
    already = (res.norms == 0).cpu().numpy() & res.success.cpu().numpy()
    lo = np.zeros(n, dtype=int)
    hi = np.full(n, len(levels) - 1)
    found = res.success.cpu().numpy()
    searching = found & ~already
    lo[~searching] = hi[~searching]
    step = 1
    while (lo < hi).any():
        idx = np.nonzero(lo < hi)[0]
        mid = (lo[idx] + hi[idx]) // 2
        r, q = run(idx, mid, step)
        queries[idx] += q.cpu().numpy()
        ok = r.success.cpu().numpy()
        hi[idx[ok]] = mid[ok]
        lo[idx[~ok]] = mid[~ok] + 1
        t_ok = torch.as_tensor(idx[ok], device=dev)
        x_adv[t_ok], norms[t_ok] = r.x_adv[torch.as_tensor(ok, device=dev)], r.norms[torch.as_tensor(ok, device=dev)]
        step += 1
    thresholds = np.where(found, levels[hi], np.inf)
    thresholds[already] = 0.0
    return MinimalThreshold(thresholds, AttackResult(x_adv, success, norms), queries)


def success_rate(min_thresholds, thresholds) -> np.ndarray:
    """Attack success rate at each threshold from per-image minimal thresholds.

    Parameters
    ----------
    min_thresholds : array (N,), from :attr:`MinimalThreshold.thresholds`
    thresholds : array (T,)

    Returns
    -------
    ndarray (T,): fraction of images with minimal threshold <= each threshold.

    Example
    -------
    >>> success_rate(np.array([1.0, 2.0, np.inf]), [1, 2, 3]).round(3)
    array([0.333, 0.667, 0.667])
    """
    m = np.asarray(min_thresholds, dtype=np.float64)
    return (m[None, :] <= np.asarray(thresholds, dtype=np.float64)[:, None] + 1e-12).mean(axis=1)
