"""Claims tables: each notebook ends with the paper's claims it tests and a verdict computed from
the run with one stated, symmetric rule — never written by hand.

A row is built from **one number per replicate** (an independently trained model: a seed), given
to a named test of :mod:`reprobust.stats`; the table adjusts the p-values within each family of rows
(Holm), applies the verdict rule, measures the verdict's stability under leaving one replicate out,
and saves the replicate values behind every row.

Verdict rule (``expected`` positive or negative about ``null``)
    *not testable here* — fewer than :data:`MIN_REPLICATES` replicates, or a stated precondition
    failed (the reason is in ``precondition``);
    *supported* — the 95% CI excludes ``null`` on the expected side **and** the Holm-adjusted
    p < 0.05; *contradicted* — the same on the opposite side; *inconclusive* — otherwise.
Equivalence rows (``expected="equivalent"``, with a ``margin``; always ``kind="check"``)
    A "no effect expected" row, tested by equivalence (TOST):
    *supported* — Holm-adjusted TOST p < 0.05 (the effect lies within ±margin of ``null``);
    *contradicted* — the 95% CI lies wholly outside ±margin; *inconclusive* — otherwise.

Kinds
    ``kind="claim"`` rows test the paper's claims; ``kind="check"`` rows test an *assumption* the
    argument rests on (the networks are trained, the defence defends, the regulariser moves what it
    should, or an equivalence). A check is decided by the same rule as a claim with the same
    ``expected``, but it is labelled, counted and shown apart, so that a row that confirms a premise is
    never read as a reproduced finding.

Example
-------
>>> table = ClaimsTable()
>>> table.add("robust nets are more similar across layers", "long-range CKA, robust − standard",
...           "paired", cka_robust, cka_standard, expected="positive", summary="per-seed mean over layer pairs")
>>> table.save(ctx)            # claims.csv / claims.md and claims_replicates.csv
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import stats
from .stats import Estimate
from .validation import check_choice, check_range

VERDICTS = ("supported", "contradicted", "inconclusive", "not testable here")
EXPECTED = ("positive", "negative", "equivalent")
KINDS = ("claim", "check")
ALPHA = 0.05
#: Rows with fewer replicates are "not testable here" (the smoke profile's 2 seeds, by design).
MIN_REPLICATES = 3

COLUMNS = ["id", "kind", "family", "claim", "statistic", "test", "unit", "summary", "n", "estimate", "ci_low",
           "ci_high", "null", "expected", "margin", "p_value", "p_holm", "rule", "verdict", "stability",
           "precondition", "note"]


class Requires(NamedTuple):
    """A precondition on another row's verdict: ``precondition=(Requires(check_id), reason)``.

    The row it guards is "not testable here" unless row ``row_id`` (added earlier) gets ``verdict`` in
    the final table — e.g. a claim comparing two conditions that only holds if a check shows they are
    matched. Resolved when the table is computed, after every family's Holm correction.
    """

    row_id: int
    verdict: str = "supported"


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def decide(*, kind: str, expected: str, n: int, estimate: float, ci_low: float, ci_high: float, null: float,
           p_holm: float, margin: float = float("nan"), precondition: str = "") -> str:
    """The verdict of one row from its numbers (the module docstring's rule).

    Example
    -------
    >>> decide(kind="claim", expected="positive", n=5, estimate=0.4, ci_low=0.1, ci_high=0.7, null=0.0, p_holm=0.01)
    'supported'
    """
    check_choice("kind", kind, KINDS)
    check_choice("expected direction", expected, EXPECTED)
    if expected == "equivalent" and kind != "check":
        raise ValueError(f"expected='equivalent' (a TOST row) is a check; got kind={kind!r}")
    if precondition or _nan(n) or n < MIN_REPLICATES:
        return "not testable here"
    if any(_nan(v) for v in (estimate, ci_low, ci_high, p_holm)):
        return "inconclusive"
    lo, hi = min(ci_low, ci_high), max(ci_low, ci_high)
    if expected == "equivalent":
        if p_holm < ALPHA:
            return "supported"
        if lo > null + margin or hi < null - margin:
            return "contradicted"
        return "inconclusive"
    if p_holm < ALPHA and (lo > null or hi < null):
        side = "positive" if lo > null else "negative"
        return "supported" if side == expected else "contradicted"
    return "inconclusive"


def verdict_of_row(row: Mapping) -> str:
    """Recompute a saved row's verdict from its own columns (``claims.csv`` as read by pandas)."""
    pre = row.get("precondition", "")
    pre = "" if _nan(pre) else str(pre)
    return decide(kind=row["kind"], expected=row["expected"], n=row["n"], estimate=row["estimate"],
                  ci_low=row["ci_low"], ci_high=row["ci_high"], null=row["null"], p_holm=row["p_holm"],
                  margin=row["margin"], precondition=pre)


def rule_text(kind: str, expected: str, null: float, margin: float) -> str:
    """The rule of a row in words, as printed in the table."""
    if expected == "equivalent":
        return f"TOST |effect − {null:g}| < {margin:g}, Holm p < {ALPHA:g}"
    side = ">" if expected == "positive" else "<"
    return f"95% CI {side} {null:g} and Holm p < {ALPHA:g} (opposite side: contradicted)"


def _drop(data, i):
    """The row's data without replicate ``i`` (the first axis of every replicate array)."""
    return [np.delete(np.asarray(d, dtype=float), i, axis=0) for d in data]


class ClaimsTable:
    """The claims of one notebook: rows computed from per-replicate values with a named test.

    Parameters of :meth:`add`
    -------------------------
    claim : str, the paper's claim in words
    statistic : str, what is measured
    test : str (a key of :data:`reprobust.stats.TESTS`) or callable ``fn(*data, null=) -> Estimate``
    *data : arrays whose first axis is the replicate (all of equal length), except where the test
        says otherwise: ``replicate_slope`` takes ``x`` (conditions) then ``Y`` (replicates × conditions);
        ``welch`` takes two independent arms
    expected : {'positive', 'negative', 'equivalent'}; 'equivalent' (TOST) rows are checks
    null : float, the value of no effect
    margin : float, the equivalence margin (``expected='equivalent'`` only)
    kind : {'claim', 'check'}; checks test an assumption of the paper's argument, not a claim
        (default: 'check' for equivalence rows, 'claim' otherwise)
    family : str, rows whose p-values are Holm-adjusted together (default: the claim)
    unit : str, what one replicate is (default "seed")
    summary : str, how within-model quantities were reduced to one number per replicate
    precondition : (bool, str) or (Requires, str), optional; when the bool is False, or the earlier row
        named by :class:`Requires` does not get the required verdict in the final table, the row is
        "not testable here" and the reason is recorded
    replicates : sequence of labels (e.g. seeds) for the replicate axis, optional
    series : names of the data arrays for ``claims_replicates.csv`` (default from the test)
    note : str
    """

    _SERIES = {"paired": ("after", "before"), "welch": ("a", "b"), "replicate_slope": ("x", "y"),
               "replicate_rank_slope": ("x", "y"), "correlation": ("x", "y")}

    def __init__(self):
        self.rows: list[dict] = []
        self._data: list[dict] = []

    # -- building -------------------------------------------------------------------------------
    def add(self, claim: str, statistic: str, test, *data, expected: str = "positive", null: float = 0.0,
            margin: float | None = None, kind: str | None = None, family: str | None = None, unit: str = "seed",
            summary: str = "", precondition: tuple | None = None, replicates=None, series=None, note: str = "",
            **test_kwargs) -> int:
        """Add a row (see the class docstring); returns its id. Verdicts are computed by :meth:`frame`."""
        check_choice("expected direction", expected, EXPECTED)
        kind = kind or ("check" if expected == "equivalent" else "claim")
        check_choice("kind", kind, KINDS)
        if expected == "equivalent":
            if kind != "check":
                raise ValueError(f"expected='equivalent' (a TOST row) is a check; got kind={kind!r}")
            if margin is None:
                raise ValueError(f"check {statistic!r} needs an equivalence margin; got margin=None")
            check_range("equivalence margin", margin, low=0, low_inclusive=False)
        if isinstance(test, str):
            name = test
            fn = stats.TESTS[check_choice("test", test, stats.TESTS)]
        elif callable(test):
            name, fn = getattr(test, "__name__", "custom"), test
        else:
            raise ValueError(f"test={test!r} must be a name in {sorted(stats.TESTS)} or a callable")
        if not data:
            raise ValueError(f"claim {claim!r}: no replicate data given")
        row_id = len(self.rows) + 1
        requires = None
        if precondition is not None and isinstance(precondition[0], Requires):
            requires = precondition[0]
            check_choice("required verdict", requires.verdict, VERDICTS)
            if not 1 <= requires.row_id < row_id:
                raise ValueError(f"precondition Requires(row_id={requires.row_id!r}) must name an earlier row; "
                                 f"valid range: [1, {row_id - 1}]")
            pre_ok, pre_reason = True, str(precondition[1])
        else:
            pre_ok, pre_reason = (True, "") if precondition is None else (bool(precondition[0]), str(precondition[1]))
        if series is None:
            series = self._SERIES.get(name, tuple(f"values{i}" if i else "values" for i in range(len(data))))
        self._data.append({"fn": fn, "name": name, "data": [np.asarray(d, dtype=float) for d in data],
                           "kw": test_kwargs, "series": tuple(series), "replicates": replicates,
                           "requires": None if requires is None else (requires, pre_reason or "precondition failed")})
        self.rows.append({"id": row_id, "kind": kind, "family": family or claim, "claim": claim,
                          "statistic": statistic, "unit": unit, "summary": summary, "null": float(null),
                          "expected": expected, "margin": float("nan") if margin is None else float(margin),
                          "precondition": "" if pre_ok else (pre_reason or "precondition failed"), "note": note})
        return row_id

    # -- computing ------------------------------------------------------------------------------
    def _estimate(self, k: int, data) -> tuple[Estimate, str]:
        """Row ``k``'s estimate on ``data`` and, if the test could not run, why (shown in the note)."""
        d = self._data[k]
        try:
            return d["fn"](*data, null=self.rows[k]["null"], **d["kw"]), ""
        except ValueError as err:  # non-finite replicate values, too few points: shown, not hidden
            nan = float("nan")
            return Estimate(nan, nan, nan, nan, self._n(data, d["name"]), d["name"]), f"test could not run: {err}"

    @staticmethod
    def _n(data, name) -> int:
        if name in ("replicate_slope", "replicate_rank_slope"):
            return int(np.atleast_2d(data[1]).shape[0])
        if name == "welch":
            return int(min(len(data[0]), len(data[1])))
        return int(len(data[0]))

    def _row_p(self, k: int, est: Estimate) -> float:
        row = self.rows[k]
        if row["expected"] == "equivalent":
            return stats.tost_p(est, row["null"], row["margin"])
        return est.p_value

    def _loo_sets(self, k: int):
        """Leave-one-replicate-out versions of row ``k``'s data."""
        d = self._data[k]
        data, name = d["data"], d["name"]
        if name in ("replicate_slope", "replicate_rank_slope"):
            x, y = data
            return [[x, np.delete(np.atleast_2d(y), i, axis=0)] for i in range(np.atleast_2d(y).shape[0])]
        if name == "welch":
            a, b = data
            return [[np.delete(a, i), b] for i in range(len(a))] + [[a, np.delete(b, i)] for i in range(len(b))]
        return [_drop(data, i) for i in range(len(data[0]))]

    def frame(self) -> pd.DataFrame:
        """The table: estimates, Holm-adjusted p-values per family, verdicts and stability."""
        if not self.rows:
            return pd.DataFrame(columns=COLUMNS)
        results = [self._estimate(k, d["data"]) for k, d in enumerate(self._data)]
        ests = [e for e, _ in results]
        p_raw = np.array([self._row_p(k, e) for k, e in enumerate(ests)])
        families = [r["family"] for r in self.rows]
        p_holm = np.full(len(p_raw), float("nan"))
        for fam in dict.fromkeys(families):
            idx = [i for i, f in enumerate(families) if f == fam]
            p_holm[idx] = stats.holm(p_raw[idx])
        out = []
        for k, (row, est) in enumerate(zip(self.rows, ests)):
            n = self._n(self._data[k]["data"], self._data[k]["name"])
            rec = dict(row, test=est.test or self._data[k]["name"], n=n, estimate=est.value, ci_low=est.low,
                       ci_high=est.high, p_value=p_raw[k], p_holm=p_holm[k],
                       rule=rule_text(row["kind"], row["expected"], row["null"], row["margin"]))
            if results[k][1]:
                rec["note"] = "; ".join(filter(None, [row["note"], results[k][1]]))
            if self._data[k]["requires"] is not None:  # rows are in id order, so the required row is decided
                (ref, verdict), reason = self._data[k]["requires"]
                got = out[ref - 1]["verdict"]
                if got != verdict:
                    rec["precondition"] = f"{reason} (row {ref} is {got}, needs {verdict})"
            rec["verdict"] = verdict_of_row(rec)
            rec["stability"] = self._stability(k, rec, p_raw, families)
            out.append(rec)
        return pd.DataFrame(out, columns=COLUMNS)

    def _stability(self, k: int, rec: dict, p_raw: np.ndarray, families: list) -> float:
        """Share of leave-one-replicate-out subsets whose verdict equals the full data's."""
        if rec["verdict"] == "not testable here":
            return 1.0
        idx = [i for i, f in enumerate(families) if f == families[k]]
        pos = idx.index(k)
        same = []
        for data in self._loo_sets(k):
            est, _ = self._estimate(k, data)
            p = p_raw[idx].copy()
            p[pos] = self._row_p(k, est)
            sub = dict(rec, n=self._n(data, self._data[k]["name"]), estimate=est.value, ci_low=est.low,
                       ci_high=est.high, p_holm=stats.holm(p)[pos])
            same.append(verdict_of_row(sub) == rec["verdict"])
        return float(np.mean(same)) if same else float("nan")

    def replicates_frame(self) -> pd.DataFrame:
        """Long format of the values behind each row: id, claim, statistic, series, replicate, condition, value."""
        recs = []
        for row, d in zip(self.rows, self._data):
            data, series = d["data"], d["series"]
            if d["name"] in ("replicate_slope", "replicate_rank_slope"):
                x, y = data
                y = np.atleast_2d(y)
                labels = d["replicates"] if d["replicates"] is not None else range(y.shape[0])
                for i, lab in enumerate(labels):
                    for j, xv in enumerate(x):
                        recs.append((row["id"], row["claim"], row["statistic"], series[1], lab, float(xv), y[i, j]))
                continue
            for s, arr in zip(series, data):
                arr = np.asarray(arr, dtype=float)
                labels = d["replicates"] if (d["replicates"] is not None and len(d["replicates"]) == len(arr)) \
                    else range(len(arr))
                for lab, v in zip(labels, arr.reshape(len(arr), -1)):
                    for j, vv in enumerate(v):
                        recs.append((row["id"], row["claim"], row["statistic"], s, lab,
                                     j if v.size > 1 else "", float(vv)))
        return pd.DataFrame(recs, columns=["id", "claim", "statistic", "series", "replicate", "condition", "value"])

    def save(self, ctx, name: str = "claims", machine_dependent: bool = False) -> pd.DataFrame:
        """Write ``<name>.csv``/``.md`` and ``<name>_replicates.csv``/``.md`` through the notebook context.

        ``machine_dependent=True`` for rows measured on this machine's clock (timings): both tables are
        marked so (:func:`reprobust.plotting.save_table`) and not compared across machines.
        """
        df = self.frame()
        # passed only when set: a context without the option (a test's stand-in) still works
        kw = {"machine_dependent": True} if machine_dependent else {}
        ctx.save_table(df, name, caption="Claims tested, with verdicts computed from this run "
                                         "(n = independently trained models; p adjusted by Holm within each family)"
                       + ("; MACHINE-DEPENDENT: timings on this machine" if machine_dependent else ""), **kw)
        ctx.save_table(self.replicates_frame(), f"{name}_replicates",
                       caption="The per-replicate values behind each claims row", **kw)
        return df


def check_claims_table(df: pd.DataFrame) -> None:
    """Assert a saved claims table is self-consistent: every verdict follows from its own row, every
    Holm p from its family's raw p-values, and no row with n < 3 carries supported/contradicted.

    Raises ``AssertionError`` naming the first inconsistent row.
    """
    for _, row in df.iterrows():
        want = verdict_of_row(row)
        assert row["verdict"] == want, f"row {row['id']} ({row['statistic']}): verdict {row['verdict']!r}, rule gives {want!r}"
        if row["n"] < MIN_REPLICATES:
            assert row["verdict"] == "not testable here", f"row {row['id']} has n={row['n']} but verdict {row['verdict']!r}"
    for fam, g in df.groupby("family", sort=False):
        adj = stats.holm(g["p_value"].to_numpy(dtype=float))
        got = g["p_holm"].to_numpy(dtype=float)
        # rtol 1e-5: the CSV stores 6 significant digits (plotting.save_table), so Holm of the rounded raw p can
        # differ from the rounded Holm p in the 6th digit
        assert np.allclose(adj, got, equal_nan=True, rtol=1e-5, atol=1e-12), f"family {fam!r}: Holm p {got} != {adj}"
