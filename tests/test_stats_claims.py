"""The statistics behind every verdict: compared with SciPy/statsmodels on both sides of every
small-n switch, the verdict rule over a grid of edge cases, and a calibration test that pushes null
data through the real claims path (and shows that the old percentile-bootstrap rule fails it)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reprobust import stats
from reprobust.claims import MIN_REPLICATES, ClaimsTable, Requires, check_claims_table, decide, verdict_of_row
from reprobust.stats import Estimate

RNG = np.random.default_rng(12345)


# -- each test against SciPy / statsmodels ------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 5, 7, 15])
@pytest.mark.parametrize("null", [0.0, 0.4])
def test_one_sample_and_paired_match_scipy(n, null):
    x = RNG.normal(0.3, 1.0, n)
    b = RNG.normal(0.0, 1.0, n)
    est = stats.one_sample(x, null)
    ref = sps.ttest_1samp(x, null)
    ci = ref.confidence_interval(0.95)
    assert est.value == pytest.approx(x.mean())
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert (est.low, est.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert est.n == n and est.df == n - 1
    p = stats.paired(x, b, null)
    ref = sps.ttest_rel(x, b, nan_policy="raise")
    if null == 0.0:
        assert p.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert p.p_value == pytest.approx(sps.ttest_1samp(x - b, null).pvalue, rel=1e-10)
    assert (p.low, p.high) == pytest.approx(tuple(sps.ttest_1samp(x - b, null).confidence_interval()), rel=1e-10)


@pytest.mark.parametrize("na,nb", [(3, 3), (3, 6), (8, 4)])
def test_welch_matches_scipy(na, nb):
    a, b = RNG.normal(0.5, 1, na), RNG.normal(0, 2, nb)
    est = stats.welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert (est.low, est.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert est.n == min(na, nb)


@pytest.mark.parametrize("n", [3, 6, 10])
def test_sign_flip_matches_scipy_permutation_test(n):
    d = RNG.normal(0.8, 1, n)
    est = stats.sign_flip(d, 0.0)
    ref = sps.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                               n_resamples=np.inf)
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    # with n = 3 the smallest attainable p is 2/8
    assert stats.sign_flip([1.0, 2.0, 3.0]).p_value == pytest.approx(0.25)
    # a non-zero null shifts the data
    assert stats.sign_flip(d + 5, 5.0).p_value == pytest.approx(est.p_value)


def test_replicate_slope_is_a_t_test_on_per_replicate_slopes():
    x = np.array([-2, -1, 0, 1, 2.0])
    Y = 0.3 * x + RNG.normal(0, 0.5, (6, 5))
    est = stats.replicate_slope(x, Y)
    slopes = np.array([np.polyfit(x, row, 1)[0] for row in Y])
    ref = sps.ttest_1samp(slopes, 0)
    assert est.value == pytest.approx(slopes.mean())
    assert est.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    rho = np.array([sps.spearmanr(x, row)[0] for row in Y])
    rk = stats.replicate_rank_slope(x, Y)
    assert rk.value == pytest.approx(rho.mean()) and rk.p_value == pytest.approx(sps.ttest_1samp(rho, 0).pvalue)
    with pytest.raises(ValueError, match="one column per x"):
        stats.replicate_slope(x, Y[:, :3])


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_correlation_p_from_scipy_and_fisher_interval(method):
    x = RNG.normal(size=12)
    y = 0.7 * x + RNG.normal(size=12)
    est = stats.correlation(x, y, method)
    r, p = (sps.pearsonr if method == "pearson" else sps.spearmanr)(x, y)
    assert est.value == pytest.approx(r) and est.p_value == pytest.approx(p)
    if method == "pearson":
        ci = sps.pearsonr(x, y).confidence_interval(0.95)
        assert (est.low, est.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    else:
        assert est.low < est.value < est.high
    assert math.isnan(stats.correlation([1, 1, 1, 1], [1, 2, 3, 4]).value)


@pytest.mark.parametrize("n", [3, 8])
def test_tost_matches_statsmodels(n):
    from statsmodels.stats.weightstats import DescrStatsW

    x = RNG.normal(0.05, 0.1, n)
    for null, margin in ((0.0, 0.2), (0.1, 0.05)):
        ref = DescrStatsW(x).ttost_mean(null - margin, null + margin)[0]
        assert stats.tost_p(stats.one_sample(x, null), null, margin) == pytest.approx(ref, rel=1e-9)


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    for m in (1, 2, 5, 12):
        p = RNG.uniform(0, 0.2, m)
        p[RNG.integers(0, m)] = p[0]  # ties
        assert np.allclose(stats.holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)


def test_holm_matches_a_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan])
    order = np.argsort(p[:4])
    m = 4
    adj = np.maximum.accumulate([(m - i) * p[:4][j] for i, j in enumerate(order)])
    want = np.empty(4)
    want[order] = np.minimum(adj, 1)
    got = stats.holm(p)
    assert np.allclose(got[:4], want) and math.isnan(got[4])


def test_non_finite_replicates_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        stats.one_sample([1.0, np.nan, 2.0])


# -- the verdict rule over a grid ------------------------------------------------------------------------
def _claim(est, lo, hi, p, expected="positive", null=0.0, n=5, **kw):
    return decide(kind="claim", expected=expected, n=n, estimate=est, ci_low=lo, ci_high=hi, null=null, p_holm=p, **kw)


@pytest.mark.parametrize("null", [0.0, 0.5])
@pytest.mark.parametrize("expected,sign", [("positive", 1.0), ("negative", -1.0)])
def test_verdict_grid(null, expected, sign):
    other = "negative" if expected == "positive" else "positive"
    # CI wholly on the expected side, small p
    s = lambda v: null + sign * v  # noqa: E731
    lo, hi = sorted((s(0.1), s(0.9)))
    assert _claim(s(0.5), lo, hi, 0.01, expected, null) == "supported"
    assert _claim(s(0.5), lo, hi, 0.01, other, null) == "contradicted"
    # p equal to alpha is not below it
    assert _claim(s(0.5), lo, hi, 0.05, expected, null) == "inconclusive"
    # a CI touching the null does not exclude it
    lo2, hi2 = sorted((s(0.0), s(0.9)))
    assert _claim(s(0.5), lo2, hi2, 0.01, expected, null) == "inconclusive"
    # straddling: inconclusive on either side of the estimate (symmetric rule)
    lo3, hi3 = sorted((s(-0.3), s(0.4)))
    assert _claim(s(0.2), lo3, hi3, 0.3, expected, null) == "inconclusive"
    assert _claim(s(-0.2), lo3, hi3, 0.3, expected, null) == "inconclusive"
    # NaN bounds or p
    assert _claim(s(0.5), float("nan"), float("nan"), 0.01, expected, null) == "inconclusive"
    assert _claim(s(0.5), lo, hi, float("nan"), expected, null) == "inconclusive"
    # too few replicates, or a failed precondition
    assert _claim(s(0.5), lo, hi, 0.01, expected, null, n=MIN_REPLICATES - 1) == "not testable here"
    assert _claim(s(0.5), lo, hi, 0.01, expected, null, precondition="no overfitting") == "not testable here"


def test_check_rows_use_equivalence():
    check = dict(kind="check", expected="equivalent", n=6, null=0.0, margin=0.1)
    assert decide(estimate=0.01, ci_low=-0.05, ci_high=0.07, p_holm=0.01, **check) == "supported"
    assert decide(estimate=0.01, ci_low=-0.05, ci_high=0.07, p_holm=0.06, **check) == "inconclusive"
    assert decide(estimate=0.5, ci_low=0.3, ci_high=0.7, p_holm=0.9, **check) == "contradicted"
    assert decide(estimate=-0.5, ci_low=-0.7, ci_high=-0.3, p_holm=0.9, **check) == "contradicted"
    with pytest.raises(ValueError, match="is a check"):
        decide(kind="claim", expected="equivalent", n=5, estimate=0, ci_low=0, ci_high=0, null=0, p_holm=0.5, margin=0.1)


def test_directional_checks_follow_the_claim_rule_but_stay_checks():
    # an assumption check with a direction ("the defence defends") is decided like a claim ...
    for est, lo, hi, p, want in ((0.5, 0.3, 0.7, 0.01, "supported"), (-0.5, -0.7, -0.3, 0.01, "contradicted"),
                                 (0.5, -0.1, 1.1, 0.01, "inconclusive"), (0.5, 0.3, 0.7, 0.05, "inconclusive")):
        kw = dict(expected="positive", n=5, estimate=est, ci_low=lo, ci_high=hi, null=0.0, p_holm=p)
        assert decide(kind="check", **kw) == decide(kind="claim", **kw) == want
    # ... without an equivalence margin, and its p-value is the test's own (not TOST)
    t = ClaimsTable()
    t.add("assumption: adversarial training makes the nets robust", "robust − standard accuracy", "mean",
          np.array([0.5, 0.6, 0.55, 0.62, 0.58]), expected="positive", kind="check")
    row = t.frame().iloc[0]
    assert row["kind"] == "check" and row["verdict"] == "supported" and np.isnan(row["margin"])
    assert row["p_value"] == pytest.approx(stats.one_sample(np.array([0.5, 0.6, 0.55, 0.62, 0.58])).p_value)
    assert row["rule"].startswith("95% CI >")
    with pytest.raises(ValueError, match="is a check"):
        ClaimsTable().add("no effect", "x", "mean", np.zeros(5), expected="equivalent", margin=0.1, kind="claim")


# -- the table ----------------------------------------------------------------------------------------------
def test_table_holm_within_family_stability_and_replicates():
    t = ClaimsTable()
    seeds = [0, 1, 2, 3, 4, 5]
    strong = np.array([0.9, 1.1, 1.0, 1.2, 0.95, 1.05])
    weak = np.array([0.3, -0.1, 0.5, 0.2, -0.2, 0.4])
    t.add("c1", "strong", "mean", strong, family="f", replicates=seeds)
    t.add("c1", "weak", "mean", weak, family="f", replicates=seeds)
    t.add("c2", "paired", "paired", strong, strong - 0.5, expected="negative")
    t.add("c3", "two seeds only", "mean", [1.0, 1.1])
    t.add("c4", "no overfitting", "mean", strong, precondition=(False, "no robust overfitting occurred"))
    t.add("c5", "check", "mean", strong * 0.01, expected="equivalent", margin=0.5)
    x = np.arange(4.0)
    t.add("c6", "slope", "replicate_slope", x, np.outer(strong, x) + 0.01 * np.arange(24).reshape(6, 4) % 3)
    df = t.frame()
    assert df["verdict"].tolist() == ["supported", "inconclusive", "contradicted", "not testable here",
                                      "not testable here", "supported", "supported"]
    raw = df.loc[df.family == "f", "p_value"].to_numpy()
    assert np.allclose(df.loc[df.family == "f", "p_holm"], stats.holm(raw))
    assert df.loc[0, "p_holm"] == pytest.approx(min(1, 2 * min(raw)))
    assert df.loc[0, "stability"] == 1.0 and df.loc[3, "n"] == 2
    assert df.loc[4, "precondition"] == "no robust overfitting occurred"
    check_claims_table(df)
    rep = t.replicates_frame()
    assert set(rep["id"]) == set(df["id"])
    first = rep[rep.id == 1]
    assert first["replicate"].tolist() == seeds and np.allclose(first["value"], strong)
    assert len(rep[rep.id == 7]) == 24
    bad = df.copy()
    bad.loc[1, "verdict"] = "supported"
    with pytest.raises(AssertionError, match="row 2"):
        check_claims_table(bad)
    bad = df.copy()
    bad.loc[0, "p_holm"] = bad.loc[0, "p_value"]
    with pytest.raises(AssertionError, match="Holm"):
        check_claims_table(bad)


def test_fragile_verdict_has_stability_below_one():
    t = ClaimsTable()
    # significant with all five, not once the outlying replicate is left out
    t.add("c", "fragile", "mean", [0.3, 0.35, 0.4, 0.45, 3.0])
    t.add("c2", "robust", "mean", [1.0, 1.1, 0.9, 1.05, 0.95])
    df = t.frame()
    assert df.loc[1, "stability"] == 1.0
    loo = [stats.one_sample(np.delete([0.3, 0.35, 0.4, 0.45, 3.0], i)).p_value for i in range(5)]
    want = np.mean([(p < 0.05) == (df.loc[0, "p_holm"] < 0.05) for p in loo])
    assert df.loc[0, "stability"] == pytest.approx(want) and want < 1


def test_row_gated_on_a_check_follows_the_checks_final_verdict():
    rng = np.random.default_rng(3)
    effect = 1.0 + 0.1 * rng.standard_normal(6)
    t = ClaimsTable()
    # matched: the gap is within ±0.05 (TOST supported) — the gated claim is decided by its own rule
    ok = t.add("check: matched", "gap", "mean", 0.001 * rng.standard_normal(6), expected="equivalent", margin=0.05,
               family="gaps")
    t.add("c", "effect if matched", "mean", effect, precondition=(Requires(ok), "conditions not matched"))
    # not matched: a gap of 0.2 ± noise is not within ±0.05, so the same data are "not testable here"
    bad = t.add("check: matched (2)", "gap", "mean", 0.2 + 0.01 * rng.standard_normal(6), expected="equivalent",
                margin=0.05, family="gaps 2")
    t.add("c", "effect if matched (2)", "mean", effect, precondition=(Requires(bad), "conditions not matched"))
    df = t.frame()
    assert df["verdict"].tolist() == ["supported", "supported", "contradicted", "not testable here"]
    assert df.loc[1, "precondition"] == "" and df.loc[3, "precondition"].startswith("conditions not matched (row 3")
    check_claims_table(df)
    with pytest.raises(ValueError, match="earlier row"):
        t.add("c", "forward reference", "mean", effect, precondition=(Requires(99), "later row"))
    with pytest.raises(ValueError, match="valid choices"):
        t.add("c", "bad verdict", "mean", effect, precondition=(Requires(1, "likely"), "typo"))


def test_table_refuses_bad_input():
    t = ClaimsTable()
    with pytest.raises(ValueError, match="valid choices"):
        t.add("c", "s", "median", [1, 2, 3])
    with pytest.raises(ValueError, match="valid choices"):
        t.add("c", "s", "mean", [1, 2, 3], expected="upwards")
    with pytest.raises(ValueError, match="margin"):
        t.add("c", "s", "mean", [1, 2, 3], expected="equivalent")
    t.add("c", "nan replicate", "mean", [1.0, np.nan, 2.0, 3.0])
    row = t.frame().iloc[0]
    assert row["verdict"] == "inconclusive" and "non-finite" in row["note"]


def test_saved_row_round_trips_through_csv(tmp_path):
    t = ClaimsTable()
    t.add("c", "s", "paired", [1.0, 1.2, 1.1, 0.9], [0.1, 0.2, 0.0, 0.1])
    t.add("c", "chk", "mean", [0.01, -0.02, 0.0, 0.01], expected="equivalent", margin=0.1)
    t.frame().to_csv(tmp_path / "claims.csv", index=False)
    df = pd.read_csv(tmp_path / "claims.csv")
    check_claims_table(df)
    assert [verdict_of_row(r) for _, r in df.iterrows()] == df["verdict"].tolist()


# -- calibration: null data through the real claims path ---------------------------------------------------
NOMINAL = 0.025  # one-sided: "supported" needs the expected side


def _false_supported_rate(n, noise, sims, seed):
    rng = np.random.default_rng(seed)
    t = ClaimsTable()
    for i in range(sims):
        v = rng.normal(size=n) if noise == "normal" else rng.standard_t(3, size=n)
        t.add(f"sim {i}", "null mean", "mean", v, expected="positive")
    df = t.frame()
    return float((df["verdict"] == "supported").mean()), df


@pytest.mark.parametrize("noise", ["normal", "t3"])
@pytest.mark.parametrize("n", [3, 5, 7, 15])
def test_false_supported_rate_is_at_most_nominal(n, noise):
    sims = 1500
    rate, df = _false_supported_rate(n, noise, sims, seed=n * 7 + (noise == "t3"))
    mc = 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / sims)
    assert rate <= NOMINAL + mc, (n, noise, rate)
    check_claims_table(df.head(50))


def test_power_at_a_stated_effect_size():
    rng = np.random.default_rng(7)
    t = ClaimsTable()
    for i in range(400):  # effect size d = 1.5 (mean 1.5 SD), n = 7 replicates
        t.add(f"sim {i}", "mean", "mean", rng.normal(1.5, 1.0, 7))
    power = float((t.frame()["verdict"] == "supported").mean())
    assert power >= 0.8, power


def test_the_old_percentile_bootstrap_rule_fails_calibration():
    """The rule used before: "supported" when the 95% percentile-bootstrap CI of the mean excludes 0."""
    rng = np.random.default_rng(3)
    sims, n = 400, 3
    hits = 0
    for i in range(sims):
        v = rng.normal(size=n)
        lo, _ = stats.bootstrap_ci(np.mean, v, n_boot=400, seed=i)
        hits += lo > 0
    rate = hits / sims
    mc = 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / sims)
    assert rate > NOMINAL + mc, rate  # ~12%: the calibration test above would fail it


def test_mcnemar_matches_statsmodels_exact():
    sm = pytest.importorskip("statsmodels.stats.contingency_tables")
    from reprobust.stats import mcnemar
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.7
    b = np.where(rng.random(200) < 0.2, ~a, a)
    nb, nc, p = mcnemar(a, b)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    assert (nb, nc) == (table[0][1], table[1][0])
    assert p == pytest.approx(sm.mcnemar(table, exact=True).pvalue, rel=1e-10)
    with pytest.raises(ValueError, match="example-aligned"):
        mcnemar(a, b[:5])


def test_kendall_w_equals_scipy_friedman_with_ties_and_batches():
    from reprobust.stats import kendall_w
    rng = np.random.default_rng(3)
    for n, k in ((5, 4), (12, 3), (3, 6)):
        y = rng.integers(0, 4, size=(n, k)).astype(float)   # many ties
        chi2, p = sps.friedmanchisquare(*y.T)
        w, p_ours = kendall_w(y)
        assert w == pytest.approx(chi2 / (n * (k - 1)), rel=1e-12) and p_ours == pytest.approx(p, rel=1e-12)
    batch = rng.normal(size=(7, 5, 4))
    w, p = kendall_w(batch)
    assert w.shape == p.shape == (7,)
    for b in range(7):
        assert (w[b], p[b]) == pytest.approx(kendall_w(batch[b]), rel=1e-12)
    assert np.isnan(kendall_w(np.ones((4, 3)))[0])               # every value ties
    assert kendall_w([[1, 2, 3]] * 4)[0] == pytest.approx(1.0)   # perfect concordance
    with pytest.raises(ValueError, match="k ≥ 3"):
        kendall_w(np.ones((4, 2)))
