import math

import numpy as np
import pytest
from scipy import stats as sps

from reprobust.claims import ClaimsTable, verdict
from reprobust.stats import Estimate, bootstrap_ci, correlation, mean_ci, paired_difference, slope


def test_correlation_matches_scipy_and_ci_brackets_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    for method, fn in (("pearson", sps.pearsonr), ("spearman", sps.spearmanr)):
        est = correlation(x, y, method, n_boot=500)
        r, p = fn(x, y)
        assert math.isclose(est.value, r) and math.isclose(est.p_value, p)
        assert est.low < est.value < est.high


def test_constant_input_gives_nan_not_a_crash():
    est = correlation([1, 1, 1, 1], [1, 2, 3, 4])
    assert math.isnan(est.value) and verdict(est, "positive") == "inconclusive"


def test_slope_and_paired_difference():
    x = np.arange(10.0)
    s = slope(x, 2 * x + 1 + np.sin(x) * 0.01, n_boot=300)
    assert abs(s.value - 2) < 0.01 and s.low <= s.value <= s.high
    d = paired_difference([2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7.5], n_boot=300)
    assert d.value > 0 and d.p_value < 0.05


def test_bootstrap_is_seeded():
    data = np.arange(20.0)
    assert bootstrap_ci(np.mean, data, seed=1) == bootstrap_ci(np.mean, data, seed=1)
    assert mean_ci(data).value == pytest.approx(9.5)


@pytest.mark.parametrize("est,expected,rule,want", [
    (Estimate(0.5, 0.2, 0.8, 0.01), "positive", "ci", "supported"),
    (Estimate(0.5, -0.1, 0.8, 0.2), "positive", "ci", "inconclusive"),
    (Estimate(-0.5, -0.8, -0.2, 0.01), "positive", "ci", "not supported"),
    (Estimate(-0.1, -0.5, 0.3, 0.6), "positive", "ci", "not supported"),
    (Estimate(-0.5, -0.8, -0.2, 0.01), "negative", "ci", "supported"),
    (Estimate(0.5, float("nan"), float("nan"), 0.01), "positive", "p", "supported"),
    (Estimate(0.5, float("nan"), float("nan"), 0.2), "positive", "p", "inconclusive"),
])
def test_verdict_rules(est, expected, rule, want):
    assert verdict(est, expected, rule=rule) == want


def test_verdict_against_a_null_value():
    assert verdict(Estimate(0.7, 0.6, 0.8, float("nan")), "positive", null=0.5) == "supported"
    assert verdict(Estimate(0.7, 0.6, 0.8, float("nan")), "negative", null=0.9) == "supported"


def test_claims_table_frame_has_computed_verdicts():
    t = ClaimsTable()
    t.add("a", "r", Estimate(0.5, 0.2, 0.8, 0.01), expected="positive", n=10)
    t.add("b", "r", Estimate(0.5, 0.2, 0.8, 0.01), expected="negative")
    df = t.frame()
    assert df["verdict"].tolist() == ["supported", "not supported"]
    assert df.loc[0, "rule"] == "95% CI > 0"
    with pytest.raises(ValueError, match="valid choices"):
        t.add("c", "r", Estimate(0.5, 0.2, 0.8, 0.01), expected="upwards")
