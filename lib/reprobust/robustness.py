"""Robust accuracy under an ensemble of attacks, and checks that the attacks are strong enough.

A robustness number is only as good as the attack behind it: PGD with few steps and one start
overstates it, and a model that masks its gradients can look robust to every gradient attack. This
module gives the number every notebook reports and the checks that can fail when it is not
trustworthy (Carlini et al. 2019, "On evaluating adversarial robustness"; Croce & Hein 2020):

* :func:`robust_accuracy` — per model, clean accuracy and the *worst case* over an ensemble of attacks
  (an image counts as robust only if every attack fails on it), with each attack's own number and, per
  image, the first attack that fooled it. Ensembles:

  ========== ===============================================================================
  ``fast``     PGD (the project's :func:`~reprobust.attacks.pgd`, ``pgd_steps`` steps, one start)
               + APGD-CE (100 steps) + APGD-T (targeted DLR, 100 steps, top 3 target classes) —
               AutoAttack's cheap "APGD-CE + APGD-T" version
  ``standard`` PGD (5 starts) + APGD-CE (5 restarts) + APGD-T (9 target classes) + Square
               (black-box, ``square_queries`` queries): AutoAttack's standard ensemble with FAB-T
               replaced by PGD restarts
  ========== ===============================================================================

* :func:`attack_diagnostics` — a table of checks (``check, value, threshold, passed``): robust
  accuracy reaches 0 at a large ε; more steps / more restarts do not lower it by more than a stated
  tolerance; a transfer attack from a standard model and the black-box Square attack do not beat the
  white-box ensemble. A failing row means the reported robust accuracy is not to be trusted.
* :func:`publish_attack_diagnostics` — a notebook's diagnostics tables saved as one ``attack_diagnostics`` table.
* :func:`radius_for_accuracy` — the PGD radius at which a model's accuracy equals a target (bisection),
  for comparisons of adversarial and other perturbations *matched in effect* rather than in size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .attacks import AttackResult, apgd, pgd
from .attacks.square import square
from .train import accuracy, predict
from .validation import check_choice, check_range

ENSEMBLES = ("fast", "standard")
NORMS = ("linf", "l2")


@dataclass(frozen=True)
class RobustAccuracy:
    """What :func:`robust_accuracy` returns.

    Attributes
    ----------
    clean : float
        Accuracy on the clean images.
    robust : float
        Accuracy when each image is attacked by every attack of the ensemble (worst case per image).
    per_attack : dict[str, float]
        Robust accuracy under each attack alone (ensemble order), e.g. ``{"pgd": .., "apgd-ce": ..}``.
    first_success : ndarray of str, shape (N,)
        Per image, the name of the first attack (ensemble order) that fooled it; ``"clean"`` where the
        clean image is already misclassified, ``""`` where every attack failed.
    x_adv : Tensor (N, C, H, W)
        The adversarial image of the first successful attack; the clean image where the model is
        already wrong; APGD-CE's highest-loss iterate where every attack failed.
    """

    clean: float
    robust: float
    per_attack: dict = field(default_factory=dict)
    first_success: np.ndarray = None
    x_adv: torch.Tensor = None

    def to_dict(self) -> dict:
        """Plain containers and tensors only, as :class:`reprobust.cache.Cache` stores them.

        Example
        -------
        >>> res = RobustAccuracy.from_dict(ctx.cache.get_or_compute(
        ...     "robust_accuracy", {"model": spec, "eps": 0.2, "ensemble": "fast", "n": len(x), "seed": 0},
        ...     lambda: robust_accuracy(net, x, y, eps=0.2).to_dict()))
        """
        return {"clean": self.clean, "robust": self.robust, "per_attack": dict(self.per_attack),
                "first_success": [str(s) for s in self.first_success], "x_adv": self.x_adv.detach().cpu()}

    @classmethod
    def from_dict(cls, d: dict) -> "RobustAccuracy":
        """Inverse of :meth:`to_dict`."""
        return cls(clean=float(d["clean"]), robust=float(d["robust"]), per_attack=dict(d["per_attack"]),
                   first_success=np.array(d["first_success"], dtype=str), x_adv=d["x_adv"])


def ensemble_attacks(ensemble: str, *, eps: float, norm: str, seed: int = 0, pgd_steps: int = 10,
                     apgd_steps: int = 100, n_target_classes: int | None = None, square_queries: int = 1000,
                     batch_size: int | None = None) -> list:
    """The attacks of an ensemble as ``[(name, fn(model, x, y) -> AttackResult), ...]``.

    Parameters
    ----------
    ensemble : {'fast', 'standard'}
    eps : float, norm : {'linf', 'l2'}, seed : int
    pgd_steps : int, steps of the PGD member (the notebooks' usual evaluation, 10)
    apgd_steps : int, iterations of each APGD run (100 in AutoAttack)
    n_target_classes : int, optional, APGD-T's targets (default 3 for ``fast``, 9 for ``standard``)
    square_queries : int, Square's query budget per image (``standard`` only; AutoAttack uses 5000, which
        costs minutes per model on a CPU; 1000 by default here)
    batch_size : int, optional, images per attack batch (memory)
    """
    check_choice("ensemble", ensemble, ENSEMBLES)
    check_choice("norm", norm, NORMS)
    standard = ensemble == "standard"
    starts = 5 if standard else 1
    targets = n_target_classes or (9 if standard else 3)
    common = dict(eps=eps, norm=norm, seed=seed, batch_size=batch_size)
    attacks = [
        ("pgd", lambda m, x, y: pgd(m, x, y, steps=pgd_steps, restarts=starts, **common)),
        ("apgd-ce", lambda m, x, y: apgd(m, x, y, loss="ce", steps=apgd_steps, restarts=starts, **common)),
        ("apgd-t", lambda m, x, y: apgd(m, x, y, loss="dlr-targeted", steps=apgd_steps,
                                        n_target_classes=targets, **common)),
    ]
    if standard:
        attacks.append(("square", lambda m, x, y: square(m, x, y, eps=eps, norm=norm, queries=square_queries,
                                                          seed=seed, batch_size=batch_size)))
    return attacks


def _model_device(model):
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _worst_case(model, x, y, attacks, *, fallback="apgd-ce"):
    """Run every attack on the correctly classified images; combine per image."""
    dev = _model_device(model)
    x, y = x.to(dev), y.to(dev)
    correct = (predict(model, x, device=dev).argmax(1).to(dev) == y)
    first = np.full(len(x), "", dtype=object)
    first[~correct.cpu().numpy()] = "clean"
    fooled = ~correct
    x_adv = x.clone()
    per_attack = {}
    idx = correct.nonzero()[:, 0]
    for name, attack in attacks:
        if len(idx) == 0:
            per_attack[name] = 0.0
            continue
        res: AttackResult = attack(model, x[idx], y[idx])
        per_attack[name] = float((~res.success).sum()) / len(x)
        new = res.success & ~fooled[idx]
        x_adv[idx[new]] = res.x_adv[new]
        first[idx[new].cpu().numpy()] = name
        if name == fallback:
            never = ~res.success & ~fooled[idx]
            x_adv[idx[never]] = res.x_adv[never]
        fooled[idx] |= res.success
    return correct, fooled, first, x_adv, per_attack


def robust_accuracy(model, x, y, *, eps: float, norm: str = "linf", ensemble: str = "fast", seed: int = 0,
                    pgd_steps: int = 10, apgd_steps: int = 100, n_target_classes: int | None = None,
                    square_queries: int = 1000, batch_size: int | None = None) -> RobustAccuracy:
    """Clean accuracy and worst-case robust accuracy over an ensemble of attacks.

    Each attack runs on every correctly classified image (so ``per_attack`` is each attack's own
    number); an image is robust only if all of them fail.

    Parameters
    ----------
    model : nn.Module, maps [0, 1] images to logits
    x : Tensor (N, C, H, W) in [0, 1]; y : LongTensor (N,)
    eps : float ≥ 0, radius of the threat model's ball
    norm : {'linf', 'l2'}
    ensemble : {'fast', 'standard'}, see the module docstring
    seed : int, seeds every attack (deterministic on CPU)
    pgd_steps, apgd_steps, n_target_classes, square_queries, batch_size : see :func:`ensemble_attacks`

    Returns
    -------
    RobustAccuracy
        ``x_adv`` is on ``x``'s device.

    Example
    -------
    >>> res = robust_accuracy(net, x_test, y_test, eps=0.2)
    >>> res.clean, res.robust, res.per_attack
    (0.98, 0.55, {'pgd': 0.65, 'apgd-ce': 0.58, 'apgd-t': 0.56})
    """
    check_range("eps", eps, low=0)
    attacks = ensemble_attacks(ensemble, eps=eps, norm=norm, seed=seed, pgd_steps=pgd_steps, apgd_steps=apgd_steps,
                               n_target_classes=n_target_classes, square_queries=square_queries,
                               batch_size=batch_size)
    correct, fooled, first, x_adv, per_attack = _worst_case(model, x, y, attacks)
    n = max(len(x), 1)
    return RobustAccuracy(clean=float(correct.sum()) / n, robust=float((~fooled).sum()) / n,
                          per_attack=per_attack, first_success=first.astype(str), x_adv=x_adv.to(x.device))


def attack_diagnostics(model, x, y, *, eps: float, norm: str = "linf", reference_model=None, seed: int = 0,
                       ensemble: str = "fast", large_eps: float | None = None, tolerance: float = 0.02,
                       steps_factor: int = 4, restarts: int = 5, square_queries: int = 1000, pgd_steps: int = 10,
                       apgd_steps: int = 100, n_target_classes: int | None = None,
                       batch_size: int | None = None) -> pd.DataFrame:
    """Checks that the robust accuracy of :func:`robust_accuracy` is not an artefact of weak attacks.

    Each row is a check that fails when the evaluation is suspect (Carlini et al. 2019, §5; the symptoms
    of gradient masking of Athalye et al. 2018):

    1. robust accuracy reaches 0 at a large budget (``large_eps``, default ``4·eps``, at most 1 for L∞):
       an unbounded attack must always succeed;
    2. APGD-CE with ``steps_factor`` × more iterations, run on the images the ensemble left robust,
       lowers robust accuracy by at most ``tolerance``;
    3. APGD-CE with ``restarts`` new random starts, likewise;
    4. a transfer attack (APGD-CE and PGD crafted on ``reference_model``, e.g. a standard model of
       the same architecture) does not leave fewer images robust than the white-box attacks;
    5. the black-box Square attack (``square_queries`` queries) does not either.

    Parameters
    ----------
    model : nn.Module; x : Tensor (N, C, H, W) in [0, 1]; y : LongTensor (N,)
    eps : float, norm : {'linf', 'l2'}, seed : int
    reference_model : nn.Module, optional; without it the transfer row has ``value`` NaN and
        ``passed`` None
    ensemble : {'fast', 'standard'}, the white-box evaluation being checked
    large_eps : float, optional
    tolerance : float, largest acceptable drop in robust accuracy (checks 2 and 3)
    steps_factor, restarts, square_queries : budgets of checks 2, 3, 5
    pgd_steps, apgd_steps, n_target_classes, batch_size : as in :func:`robust_accuracy`

    Returns
    -------
    DataFrame with one row per check and columns ``check`` (what is compared, with the rule),
    ``value``, ``threshold`` and ``passed`` (bool; None where a check could not run).

    Example
    -------
    >>> attack_diagnostics(net, x, y, eps=0.2, reference_model=standard_net)
    """
    check_range("eps", eps, low=0, low_inclusive=False)
    check_choice("norm", norm, NORMS)
    check_range("tolerance", tolerance, low=0)
    check_range("steps_factor", steps_factor, low=1)
    check_range("restarts", restarts, low=1)
    if large_eps is None:
        large_eps = min(4 * eps, 1.0) if norm == "linf" else 4 * eps
    kw = dict(norm=norm, seed=seed, pgd_steps=pgd_steps, apgd_steps=apgd_steps, n_target_classes=n_target_classes,
              square_queries=square_queries, batch_size=batch_size)
    base = robust_accuracy(model, x, y, eps=eps, ensemble=ensemble, **kw)
    n = max(len(x), 1)
    dev = _model_device(model)
    x_dev, y_dev = x.to(dev), y.to(dev)
    robust_idx = torch.as_tensor(np.flatnonzero(base.first_success == ""), dtype=torch.long, device=dev)
    whitebox = float(np.isin(base.first_success, ["", "square"]).sum()) / n
    rows = []

    large = robust_accuracy(model, x, y, eps=large_eps, ensemble="fast", **kw)
    rows.append((f"robust accuracy at large eps = {large_eps:g} (<= threshold)", large.robust, 0.0,
                 large.robust <= 0.0))

    def extra_drop(**apgd_kw):
        if len(robust_idx) == 0:
            return 0.0
        res = apgd(model, x_dev[robust_idx], y_dev[robust_idx], eps=eps, norm=norm, loss="ce",
                   batch_size=batch_size, **apgd_kw)
        return float(res.success.sum()) / n

    drop = extra_drop(steps=steps_factor * apgd_steps, seed=seed)
    rows.append((f"drop in robust accuracy from APGD-CE with {steps_factor}x steps (<= threshold)", drop,
                 tolerance, drop <= tolerance))
    drop = extra_drop(steps=apgd_steps, restarts=restarts, seed=seed + 1)
    rows.append((f"drop in robust accuracy from APGD-CE with {restarts} new restarts (<= threshold)", drop,
                 tolerance, drop <= tolerance))

    correct = base.first_success != "clean"
    if reference_model is None:
        rows.append(("transfer robust accuracy from a reference model (>= white-box); no reference model given",
                     float("nan"), whitebox, None))
    else:
        fooled = torch.zeros(len(x), dtype=torch.bool)
        ref_dev = _model_device(reference_model)
        common = dict(eps=eps, norm=norm, seed=seed, batch_size=batch_size)
        for craft in (lambda m, a, b: apgd(m, a, b, steps=apgd_steps, **common),
                      lambda m, a, b: pgd(m, a, b, steps=pgd_steps, **common)):
            x_t = craft(reference_model, x.to(ref_dev), y.to(ref_dev)).x_adv
            fooled |= predict(model, x_t.to(dev), device=dev).argmax(1).cpu() != y.cpu()
        transfer = float((torch.as_tensor(correct) & ~fooled).sum()) / n
        rows.append(("transfer robust accuracy from the reference model (>= threshold: white-box)", transfer,
                     whitebox, transfer >= whitebox))

    if ensemble == "standard":
        square_robust = base.per_attack["square"]
    else:
        idx = torch.as_tensor(np.flatnonzero(correct), dtype=torch.long, device=dev)
        res = square(model, x_dev[idx], y_dev[idx], eps=eps, norm=norm, queries=square_queries, seed=seed,
                     batch_size=batch_size)
        square_robust = float((~res.success).sum()) / n
    rows.append((f"Square ({square_queries} queries) robust accuracy (>= threshold: white-box)", square_robust,
                 whitebox, square_robust >= whitebox))
    rows = [(c, float(v), float(t), None if p is None else bool(p)) for c, v, t, p in rows]
    return pd.DataFrame(rows, columns=["check", "value", "threshold", "passed"])


@dataclass(frozen=True)
class MatchedRadius:
    """What :func:`radius_for_accuracy` returns.

    Attributes
    ----------
    eps : float
        The PGD radius found (the closest to the target of those tried when not converged).
    accuracy : float
        The model's accuracy on the PGD images at ``eps``.
    target : float
        The accuracy that was to be matched.
    x_adv : Tensor (N, C, H, W)
        The PGD images at ``eps`` (the clean images when ``eps`` is 0).
    evaluations : int
        Number of PGD runs.
    converged : bool
        Whether ``|accuracy − target| <= tolerance``.
    """

    eps: float
    accuracy: float
    target: float
    x_adv: torch.Tensor
    evaluations: int
    converged: bool


def radius_for_accuracy(model, x, y, target: float, *, eps_high: float, tolerance: float = 0.01,
                        norm: str = "l2", steps: int = 10, seed: int = 0, max_evaluations: int = 24,
                        batch_size: int | None = None) -> MatchedRadius:
    """Bisect the PGD radius at which the model's accuracy on ``(x, y)`` is within ``tolerance`` of ``target``.

    Accuracy under PGD falls with the radius, so the radius that matches a target accuracy (e.g. the
    accuracy on corrupted versions of the same images) is found by bisection on ``[0, eps_high]``;
    ``eps_high`` is doubled while the accuracy there is still above the target. Every PGD run uses the
    same ``seed`` (common random starts), so accuracy is a deterministic function of the radius. PGD
    accuracy need not be exactly monotone in the radius, so the radius whose accuracy was closest to
    the target is returned, with ``converged`` saying whether it is within ``tolerance``.

    Parameters
    ----------
    model : nn.Module, maps [0, 1] images to logits
    x : Tensor (N, C, H, W) in [0, 1]; y : LongTensor (N,)
    target : float in [0, 1], the accuracy to match
    eps_high : float > 0, the first upper end of the search
    tolerance : float > 0, the accepted ``|accuracy − target|``
    norm : {'linf', 'l2'}; steps, seed, batch_size : as in :func:`~reprobust.attacks.pgd`
    max_evaluations : int ≥ 2, PGD runs at most (the doublings of ``eps_high`` included)

    Returns
    -------
    MatchedRadius

    Example
    -------
    >>> m = radius_for_accuracy(net, x, y, target=0.8, eps_high=2.0)
    >>> m.converged, abs(m.accuracy - 0.8) <= 0.01
    (True, True)
    """
    check_range("target accuracy", target, low=0, high=1)
    check_range("eps_high", eps_high, low=0, low_inclusive=False)
    check_range("tolerance", tolerance, low=0, low_inclusive=False)
    check_range("max_evaluations", max_evaluations, low=2)
    check_choice("norm", norm, NORMS)
    dev = _model_device(model)
    x, y = x.to(dev), y.to(dev)
    runs = 0

    def attacked(eps):
        nonlocal runs
        runs += 1
        x_adv = pgd(model, x, y, eps=eps, norm=norm, steps=steps, seed=seed, batch_size=batch_size).x_adv
        return accuracy(model, x_adv, y, device=dev), x_adv

    clean = accuracy(model, x, y, device=dev)
    best = (abs(clean - target), 0.0, clean, x)
    lo, hi = 0.0, float(eps_high)
    while best[0] > tolerance and runs < max_evaluations:
        acc, x_adv = attacked(hi)
        best = min(best, (abs(acc - target), hi, acc, x_adv), key=lambda b: b[0])
        if acc > target:      # still too robust at the upper end: widen the bracket
            lo, hi = hi, 2 * hi
            continue
        break
    while best[0] > tolerance and runs < max_evaluations:
        mid = (lo + hi) / 2
        acc, x_adv = attacked(mid)
        best = min(best, (abs(acc - target), mid, acc, x_adv), key=lambda b: b[0])
        lo, hi = (mid, hi) if acc > target else (lo, mid)
    gap, eps, acc, x_adv = best
    return MatchedRadius(eps=float(eps), accuracy=acc, target=float(target), x_adv=x_adv.detach(),
                         evaluations=runs, converged=bool(gap <= tolerance))


def cached_robust_accuracy(cache, model, x, y, *, config: dict, kind: str = "robust_accuracy", **kwargs) -> dict:
    """:func:`robust_accuracy` of one model, summarised and cached: what a notebook reports per model.

    The cache key is ``config`` (what identifies the model and the images, e.g. ``{"spec": spec, "n": 100}``)
    plus every attack setting in ``kwargs``. The adversarial images are not kept (10,000 CIFAR images are
    120 MB per model).

    Parameters
    ----------
    cache : reprobust.cache.Cache
    model, x, y : as in :func:`robust_accuracy`
    config : dict, the model's identity (its training spec) and the images'
    kind : str, the cache folder
    **kwargs : the settings of :func:`robust_accuracy` (``eps`` required)

    Returns
    -------
    dict with ``clean``, ``robust`` (floats), ``per_attack`` (dict) and ``first_success`` (list of str)

    Example
    -------
    >>> r = cached_robust_accuracy(ctx.cache, net, x[:100], y[:100], config={"spec": spec, "n": 100},
    ...                            eps=8 / 255, ensemble="fast", seed=0)
    >>> r["robust"] <= min(r["per_attack"].values()) <= r["clean"]
    True
    """
    def compute():
        res = robust_accuracy(model, x, y, **kwargs)
        return {"clean": res.clean, "robust": res.robust, "per_attack": dict(res.per_attack),
                "first_success": [str(v) for v in res.first_success]}

    return cache.get_or_compute(kind, {**config, **kwargs}, compute)


def cached_attack_diagnostics(cache, model, x, y, *, config: dict, kind: str = "attack_diagnostics",
                              **kwargs) -> pd.DataFrame:
    """:func:`attack_diagnostics` of one model, cached under ``config`` plus the settings in ``kwargs``.

    ``config`` identifies the model, its reference model (the transfer attack's source, passed in
    ``kwargs`` as ``reference_model``; name it in ``config``, e.g. by its spec) and the images; the
    reference model itself is left out of the key.

    Returns
    -------
    DataFrame as :func:`attack_diagnostics` returns it
    """
    key = {**config, **{k: v for k, v in kwargs.items() if k != "reference_model"}}
    table = cache.get_or_compute(kind, key, lambda: attack_diagnostics(model, x, y, **kwargs).to_dict("list"))
    return pd.DataFrame(table)


def publish_attack_diagnostics(ctx, tables, *, n: int, eps: float, ensemble: str) -> pd.DataFrame:
    """Save the :func:`attack_diagnostics` tables of a notebook's main models as one table.

    Parameters
    ----------
    ctx : the notebook's context (its ``save_table`` publishes ``attack_diagnostics``)
    tables : list of DataFrames, each with a ``model`` column naming the model it checks
    n : images checked; eps : the L∞ budget; ensemble : the ensemble's name (for the caption)

    Returns
    -------
    DataFrame with columns ``model, check, value, threshold, passed`` (``passed`` None: not run)
    """
    diag = pd.concat(tables, ignore_index=True)[["model", "check", "value", "threshold", "passed"]]
    ctx.save_table(diag, "attack_diagnostics", caption=f"Attack-strength checks ({n} images, L∞ ε={eps:g}, "
                   f"'{ensemble}' ensemble): a failing row means the reported robust accuracy is suspect")
    print(f"{int((diag.passed == False).sum())} of {len(diag)} attack checks failed")  # noqa: E712 (None = not run)
    return diag
