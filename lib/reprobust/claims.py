"""Claims tables: each notebook ends with the paper's claims it tests, and a verdict computed from
the data with a stated rule — never written by hand.

Verdict rules
-------------
``"ci"`` (default)
    *supported* when the whole confidence interval lies on the expected side of the null value,
    *not supported* when it lies wholly on the other side or when the estimate is on the wrong side
    and the interval includes the null, *inconclusive* when the interval straddles the null value
    with the estimate on the expected side.
``"p"``
    *supported* when ``p < alpha`` and the estimate is on the expected side, *not supported* when
    the estimate is on the other side, *inconclusive* otherwise.
"""

from __future__ import annotations

import math

import pandas as pd

from .stats import Estimate
from .validation import check_choice

VERDICTS = ("supported", "not supported", "inconclusive")
EXPECTED = ("positive", "negative")
RULES = ("ci", "p")


def verdict(estimate: Estimate, expected: str, *, null: float = 0.0, rule: str = "ci", alpha: float = 0.05) -> str:
    """Verdict of one estimate against the expected direction relative to ``null``.

    Example
    -------
    >>> verdict(Estimate(0.6, 0.2, 0.9, 0.01), "positive")
    'supported'
    """
    check_choice("expected direction", expected, EXPECTED)
    check_choice("verdict rule", rule, RULES)
    sign = 1.0 if expected == "positive" else -1.0
    v = estimate.value
    if v is None or math.isnan(v):
        return "inconclusive"
    right_side = sign * (v - null) > 0
    if rule == "p":
        if not right_side:
            return "not supported"
        return "supported" if (not math.isnan(estimate.p_value) and estimate.p_value < alpha) else "inconclusive"
    lo, hi = sorted((sign * (estimate.low - null), sign * (estimate.high - null)))
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > 0:
        return "supported"
    if hi < 0 or not right_side:
        return "not supported"
    return "inconclusive"


def rule_text(expected: str, null: float, rule: str, alpha: float) -> str:
    side = ">" if expected == "positive" else "<"
    if rule == "ci":
        return f"95% CI {side} {null:g}"
    return f"estimate {side} {null:g} and p < {alpha:g}"


class ClaimsTable:
    """Rows of (claim, statistic, measured value, expected direction, verdict).

    Example
    -------
    >>> table = ClaimsTable()
    >>> table.add("metrics correlate with attack success", "Pearson r (DBI, pixel attack)",
    ...           correlation(dbi, success), expected="positive")
    >>> table.frame()
    """

    def __init__(self):
        self.rows = []

    def add(self, claim: str, statistic: str, estimate: Estimate, *, expected: str = "positive",
            null: float = 0.0, rule: str = "ci", alpha: float = 0.05, n: int | None = None, note: str = ""):
        """Add a claim; the verdict is computed from ``estimate``. Returns the verdict."""
        v = verdict(estimate, expected, null=null, rule=rule, alpha=alpha)
        self.rows.append({
            "claim": claim, "statistic": statistic, "value": estimate.value,
            "ci_low": estimate.low, "ci_high": estimate.high, "p_value": estimate.p_value,
            "expected": f"{'>' if expected == 'positive' else '<'} {null:g}",
            "rule": rule_text(expected, null, rule, alpha), "n": n, "verdict": v, "note": note,
        })
        return v

    def frame(self) -> pd.DataFrame:
        cols = ["claim", "statistic", "value", "ci_low", "ci_high", "p_value", "expected", "rule", "n",
                "verdict", "note"]
        return pd.DataFrame(self.rows, columns=cols)

    def save(self, ctx, name: str = "claims") -> pd.DataFrame:
        """Write ``claims.csv`` and ``claims.md`` through the notebook context; return the frame."""
        df = self.frame()
        ctx.save_table(df, name, caption="Claims tested, with verdicts computed from this run")
        return df
