"""Statistics shared by the claims tables: correlations and slopes with bootstrap confidence
intervals, and paired tests. All resampling is seeded."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats as sps

from .validation import check_choice, check_range


class Estimate(NamedTuple):
    """A statistic with its confidence interval and p-value (NaN where not defined)."""

    value: float
    low: float
    high: float
    p_value: float


def _as_1d(*arrays):
    out = [np.asarray(a, dtype=float).ravel() for a in arrays]
    n = {len(a) for a in out}
    if len(n) != 1:
        raise ValueError(f"arrays must have equal lengths; got {[len(a) for a in out]}")
    return out


def bootstrap_ci(statistic, *arrays, n_boot: int = 2000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap interval of ``statistic(*arrays)`` resampling rows jointly.

    Returns ``(low, high)``; NaN replicates (e.g. a constant resample) are ignored.
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
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def _safe(fn):
    def wrapped(x, y):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return float("nan")
        return float(fn(x, y)[0])
    return wrapped


def correlation(x, y, method: str = "pearson", *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Pearson or Spearman correlation with its p-value and a bootstrap CI.

    Example
    -------
    >>> correlation([1, 2, 3, 4], [1, 3, 2, 5]).value
    0.8...
    """
    check_choice("correlation method", method, ("pearson", "spearman"))
    x, y = _as_1d(x, y)
    if len(x) < 3:
        raise ValueError(f"correlation needs at least 3 points; got {len(x)}")
    fn = sps.pearsonr if method == "pearson" else sps.spearmanr
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"))
    r, p = fn(x, y)
    low, high = bootstrap_ci(_safe(fn), x, y, n_boot=n_boot, seed=seed)
    return Estimate(float(r), low, high, float(p))


def slope(x, y, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Least-squares slope of ``y`` on ``x`` with its two-sided p-value and a bootstrap CI."""
    x, y = _as_1d(x, y)
    if len(x) < 3:
        raise ValueError(f"slope needs at least 3 points; got {len(x)}")
    if np.ptp(x) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"))
    res = sps.linregress(x, y)

    def stat(a, b):
        return float("nan") if np.ptp(a) == 0 else float(np.polyfit(a, b, 1)[0])

    low, high = bootstrap_ci(stat, x, y, n_boot=n_boot, seed=seed)
    return Estimate(float(res.slope), low, high, float(res.pvalue))


def paired_difference(after, before, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Mean of ``after - before`` with a bootstrap CI and the Wilcoxon signed-rank p-value
    (paired t-test when fewer than 6 pairs, where the signed-rank test cannot reach p < 0.05)."""
    a, b = _as_1d(after, before)
    d = a - b
    if len(d) < 2:
        raise ValueError(f"a paired test needs at least 2 pairs; got {len(d)}")
    if np.all(d == 0):
        return Estimate(0.0, 0.0, 0.0, 1.0)
    p = float(sps.wilcoxon(d).pvalue) if len(d) >= 6 else float(sps.ttest_1samp(d, 0.0).pvalue)
    low, high = bootstrap_ci(np.mean, d, n_boot=n_boot, seed=seed)
    return Estimate(float(d.mean()), low, high, p)


def mean_ci(values, *, n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Mean with a bootstrap CI (p-value NaN)."""
    (v,) = _as_1d(values)
    low, high = bootstrap_ci(np.mean, v, n_boot=n_boot, seed=seed) if len(v) > 1 else (v[0], v[0])
    return Estimate(float(v.mean()), low, high, float("nan"))
