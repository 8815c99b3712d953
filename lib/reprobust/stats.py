"""Statistics behind the claims tables, with honest small-sample behaviour.

The unit of replication is an independently trained model (a seed). Every test here takes one
number per replicate — quantities inside a model (layers, layer pairs, images, adversarial
examples) are summarised to that number first — and returns an :class:`Estimate`: the statistic,
its 95% confidence interval, a two-sided p-value, the number of replicates and, for t-based tests,
the standard error and degrees of freedom (used by the equivalence test :func:`tost_p`).

========================  ===================================================  ======================
test (``TESTS`` key)      data                                                 interval / p-value
========================  ===================================================  ======================
``mean``                  values (n,)                                          Student t
``paired``                after (n,), before (n,)                              Student t on after−before
``sign_flip``             values (n,)                                          t interval, exact sign-flip p
``welch``                 a (n_a,), b (n_b,) — two independent arms            Welch t
``replicate_slope``       x (k,), Y (n, k) — one curve per replicate           t on the n per-replicate slopes
``replicate_rank_slope``  x (k,), Y (n, k)                                     t on the n per-replicate Spearman ρ
``correlation``           x (n,), y (n,) — one point per replicate unit        Fisher z interval, SciPy p
========================  ===================================================  ======================

Percentile-bootstrap intervals (:func:`bootstrap_ci`) are kept for description only: at n = 3–7
replicates they are too narrow (a "CI excludes 0" rule then says "supported" for 8–12% of null
data sets against 2.5% nominal; ``tests/test_stats_claims.py`` shows it).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
from scipy import special as spc
from scipy import stats as sps

from .validation import check_choice, check_range

LEVEL = 0.95
NAN = float("nan")


class Estimate(NamedTuple):
    """A statistic with its 95% confidence interval and two-sided p-value (NaN where not defined).

    ``n`` is the number of replicates; ``se`` and ``df`` are the standard error and degrees of freedom
    of a t-based estimate (NaN otherwise).
    """

    value: float
    low: float
    high: float
    p_value: float
    n: int = 0
    test: str = ""
    se: float = NAN
    df: float = NAN


def _as_1d(*arrays):
    out = [np.asarray(a, dtype=float).ravel() for a in arrays]
    n = {len(a) for a in out}
    if len(n) != 1:
        raise ValueError(f"arrays must have equal lengths; got {[len(a) for a in out]}")
    return out


def _finite(v):
    v = np.asarray(v, dtype=float).ravel()
    if not np.all(np.isfinite(v)):
        raise ValueError(f"replicate values must be finite; got {int((~np.isfinite(v)).sum())} non-finite of {len(v)}")
    return v


def _t_estimate(value, se, df, n, test, null=0.0) -> Estimate:
    """Estimate with a t interval ``value ± t_{0.975, df} se`` and the two-sided p against ``null``."""
    if n < 2 or not np.isfinite(se):
        return Estimate(float(value), NAN, NAN, NAN, n, test, NAN, NAN)
    if se == 0:
        p = 1.0 if value == null else 0.0
        return Estimate(float(value), float(value), float(value), p, n, test, 0.0, float(df))
    # scipy.special's t quantile/CDF: the same numbers as sps.t.ppf/sf, without the distribution
    # framework's per-call overhead (the stability loop calls this thousands of times)
    q = spc.stdtrit(df, 0.5 + LEVEL / 2)
    p = 2 * spc.stdtr(df, -abs((value - null) / se))
    return Estimate(float(value), float(value - q * se), float(value + q * se), float(p), n, test, float(se), float(df))


def one_sample(values, null: float = 0.0) -> Estimate:
    """Mean of the replicate values with a Student-t interval and the one-sample t-test p-value.

    Example
    -------
    >>> one_sample([0.3, 0.5, 0.4, 0.6]).p_value < 0.05
    True
    """
    v = _finite(values)
    n = len(v)
    se = v.std(ddof=1) / math.sqrt(n) if n > 1 else NAN
    return _t_estimate(v.mean() if n else NAN, se, n - 1, n, "one-sample t", null)


def paired(after, before, null: float = 0.0) -> Estimate:
    """Mean of ``after − before`` over replicates (pairs share a seed), paired t interval and p-value."""
    a, b = _as_1d(_finite(after), _finite(before))
    est = one_sample(a - b, null)
    return est._replace(test="paired t")


def sign_flip(values, null: float = 0.0, *, max_exact: int = 16, n_perm: int = 20000, seed: int = 0) -> Estimate:
    """Mean with a t interval and the exact sign-flip (permutation) p-value of ``mean = null``.

    Exact over all 2ⁿ sign patterns up to ``max_exact`` replicates, Monte Carlo above. With n = 3
    the smallest attainable two-sided p is 0.25, so small n cannot give a false "supported".
    """
    d = _finite(values) - null
    n = len(d)
    t = one_sample(d + null, null)
    if n < 2:
        return t._replace(test="sign-flip")
    if n <= max_exact:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_perm, n))
    stat = np.abs(signs @ d)
    p = float(np.mean(stat >= abs(d.sum()) - 1e-12 * max(1.0, np.abs(d).sum())))
    return t._replace(p_value=p, test="sign-flip (exact)" if n <= max_exact else "sign-flip (Monte Carlo)")


def welch(a, b, null: float = 0.0) -> Estimate:
    """``mean(a) − mean(b)`` for two independent arms, with Welch's t interval and p-value.

    ``n`` is the size of the smaller arm.
    """
    a, b = _finite(a), _finite(b)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return Estimate(float(a.mean() - b.mean()) if na and nb else NAN, NAN, NAN, NAN, min(na, nb), "Welch t")
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1)) if se > 0 else na + nb - 2
    return _t_estimate(a.mean() - b.mean(), se, df, min(na, nb), "Welch t", null)


def _curves(x, Y):
    x = _finite(x)
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    if Y.shape[1] != len(x):
        raise ValueError(f"Y must have one column per x value: x has {len(x)}, Y has shape {Y.shape}")
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError(f"a slope needs at least 2 distinct x values; got {x.tolist()}")
    _finite(Y)
    return x, Y


def per_replicate_slopes(x, Y) -> np.ndarray:
    """Least-squares slope of each row of ``Y`` (n, k) on ``x`` (k,): shape (n,)."""
    x, Y = _curves(x, Y)
    xc = x - x.mean()
    return (Y - Y.mean(1, keepdims=True)) @ xc / (xc @ xc)


def replicate_slope(x, Y, null: float = 0.0) -> Estimate:
    """Mean over replicates of the per-replicate least-squares slope of ``Y[i]`` on ``x``, t interval.

    The replicate (row of ``Y``) is the unit: conditions within one replicate are not counted as
    independent observations.
    """
    return one_sample(per_replicate_slopes(x, Y), null)._replace(test="per-replicate slope, t")


def replicate_rank_slope(x, Y, null: float = 0.0) -> Estimate:
    """Mean over replicates of Spearman's ρ between ``x`` and ``Y[i]`` (monotone trend, scale-free), t interval.

    A replicate whose values are constant contributes ρ = 0.
    """
    x, Y = _curves(x, Y)
    rx = sps.rankdata(x)
    rho = np.array([0.0 if np.ptp(row) == 0 else np.corrcoef(rx, sps.rankdata(row))[0, 1] for row in Y])
    return one_sample(rho, null)._replace(test="per-replicate Spearman ρ, t")


def correlation(x, y, method: str = "pearson", null: float = 0.0) -> Estimate:
    """Pearson or Spearman correlation across replicate units with a Fisher-z interval.

    The p-value is SciPy's (t-based for Pearson, and for Spearman too); the interval uses the
    Fisher transform with standard error 1/√(n−3) (Pearson) or √(1.06/(n−3)) (Spearman, Fieller
    et al. 1957). NaN when either variable is constant or n < 4.

    Example
    -------
    >>> round(correlation([1, 2, 3, 4, 5], [1, 3, 2, 5, 4]).value, 2)
    0.8
    """
    check_choice("correlation method", method, ("pearson", "spearman"))
    x, y = _as_1d(_finite(x), _finite(y))
    n = len(x)
    test = f"{method.capitalize()} r, Fisher z"
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Estimate(NAN, NAN, NAN, NAN, n, test)
    res = (sps.pearsonr if method == "pearson" else sps.spearmanr)(x, y)
    r = float(res[0])
    if null != 0.0:
        raise ValueError(f"correlation tests a null of 0 only; got null={null!r}")
    if n < 4 or abs(r) >= 1:
        return Estimate(r, NAN, NAN, float(res[1]), n, test)
    se = math.sqrt((1.0 if method == "pearson" else 1.06) / (n - 3))
    z, q = math.atanh(r), sps.norm.ppf(0.5 + LEVEL / 2)
    return Estimate(r, math.tanh(z - q * se), math.tanh(z + q * se), float(res[1]), n, test)


#: Tests a claims row can name; each takes the row's data arrays and ``null=``.
TESTS = {
    "mean": one_sample,
    "paired": paired,
    "sign_flip": sign_flip,
    "welch": welch,
    "replicate_slope": replicate_slope,
    "replicate_rank_slope": replicate_rank_slope,
    "correlation": correlation,
}


def tost_p(estimate: Estimate, null: float, margin: float) -> float:
    """Two one-sided tests (Schuirmann 1987): p-value for |effect − null| < ``margin``.

    The larger of the two one-sided t-test p-values against ``null − margin`` and ``null + margin``;
    needs a t-based estimate (``se`` and ``df`` set). Small p means "equivalent within the margin".
    """
    check_range("equivalence margin", margin, low=0, low_inclusive=False)
    if not (np.isfinite(estimate.se) and np.isfinite(estimate.df)):
        return NAN
    if estimate.se == 0:
        return 0.0 if abs(estimate.value - null) < margin else 1.0
    lower = sps.t.sf((estimate.value - (null - margin)) / estimate.se, estimate.df)
    upper = sps.t.cdf((estimate.value - (null + margin)) / estimate.se, estimate.df)
    return float(max(lower, upper))


def holm(p_values) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and are not counted.

    Equal to statsmodels' ``multipletests(p, method="holm")[1]`` (tested); written out because that
    function runs a full garbage collection per call, which dominates the leave-one-out stability loop.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, NAN)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        out[order] = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    return out


def bootstrap_ci(statistic, *arrays, n_boot: int = 2000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of ``statistic(*arrays)`` resampling rows jointly — descriptive only.

    Returns ``(low, high)``; NaN replicates (e.g. a constant resample) are ignored. Not used for
    verdicts (see the module docstring).
    """
    check_range("n_boot", n_boot, low=1)
    check_range("level", level, low=0, high=1, low_inclusive=False, high_inclusive=False)
    arrays = _as_1d(*arrays)
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    reps = np.array([statistic(*(a[i] for a in arrays)) for i in idx], dtype=float)
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return NAN, NAN
    a = (1 - level) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def kendall_w(y):
    """Kendall's coefficient of concordance W and Friedman's p-value, blocks as rows.

    ``W = χ²_F / (n (k − 1))`` with Friedman's statistic ``χ²_F`` corrected for ties exactly as
    ``scipy.stats.friedmanchisquare`` does; vectorised over any leading axes (e.g. bootstrap resamples).

    Parameters
    ----------
    y : array-like, shape (..., n_blocks, k_treatments), k ≥ 3

    Returns
    -------
    (W, p) : floats for a 2-D ``y``, arrays of shape ``y.shape[:-2]`` otherwise; NaN where fewer than 2
        blocks or every value ties.

    Example
    -------
    >>> w, p = kendall_w([[1, 2, 3], [1, 2, 3], [1, 3, 2]])
    >>> round(w, 3)
    0.778
    """
    y = np.asarray(y, dtype=float)
    if y.ndim < 2 or y.shape[-1] < 3:
        raise ValueError(f"y must have shape (..., n_blocks, k ≥ 3 treatments); got {y.shape}")
    n, k = y.shape[-2:]
    ranks = sps.rankdata(y, axis=-1)
    ssbn = (ranks.sum(-2) ** 2).sum(-1)
    chi2 = 12.0 / (k * n * (k + 1)) * ssbn - 3 * n * (k + 1)
    tied = (y[..., :, :, None] == y[..., :, None, :]).sum(-1)     # per value: how many in its block equal it
    c = 1 - ((tied ** 2 - 1).sum((-2, -1))) / (k * (k * k - 1) * n)  # Σ over tie groups of t (t² − 1)
    flat = y.reshape(*y.shape[:-2], -1)
    valid = (n >= 2) & (flat.max(-1) > flat.min(-1)) & (c > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.where(valid, chi2 / np.where(valid, c, 1.0), np.nan)
    w, p = chi2 / (n * (k - 1)), sps.chi2.sf(chi2, k - 1)
    return (float(w), float(p)) if y.ndim == 2 else (w, p)


def mcnemar(correct_a, correct_b) -> tuple[int, int, float]:
    """Exact McNemar test of two classifiers (or checkpoints) on the same examples.

    Parameters
    ----------
    correct_a, correct_b : array-like of bool, shape (n,)
        Per example, whether A / B classifies it correctly (e.g. under attack).

    Returns
    -------
    (b, c, p) : b = examples only A gets right, c = only B gets right, p = two-sided exact binomial p-value
        of b against Binomial(b + c, 1/2) (1.0 when there are no discordant examples).

    Example
    -------
    >>> mcnemar([1, 1, 1, 0], [0, 0, 1, 0])
    (2, 0, 0.5)
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b_ = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b_.shape:
        raise ValueError(f"correct_a and correct_b must be example-aligned; got {a.shape} and {b_.shape}")
    b, c = int((a & ~b_).sum()), int((~a & b_).sum())
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5).pvalue)
    return b, c, p
