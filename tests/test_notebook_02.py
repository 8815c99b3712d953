"""End-to-end: notebook 02 (manifold proximity) on the smoke profile through the headless runner."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

FIGURES = ("knn_composition", "projection_distances", "preimages_mlp", "preimages_cnn", "umap_mlp", "umap_cnn",
           "snnl_ratio")
TABLES = ("training", "attack_summary", "attack_summary_per_seed", "manifold_methods", "manifold_methods_per_seed",
          "method2_k_dependence", "norm_effect", "snnl", "snnl_per_seed")


def _kendall_w_by_ranks(y):
    """Kendall's W from its definition (no ties): 12 S / (n² (k³ − k)), S the squared deviations of the
    treatments' rank sums — independent of SciPy's Friedman statistic."""
    n, k = y.shape
    ranks = np.argsort(np.argsort(y, axis=1), axis=1) + 1
    r = ranks.sum(0)
    return 12 * ((r - r.mean()) ** 2).sum() / (n ** 2 * (k ** 3 - k))


@pytest.mark.slow
def test_notebook_02_smoke(run_smoke):
    folder = run_smoke("02", FIGURES, TABLES)

    claims = pd.read_csv(folder / "claims.csv")
    reps = pd.read_csv(folder / "claims_replicates.csv")
    # Two seeds per architecture on smoke: every row is "not testable here" by design.
    assert (claims["n"] == 2).all() and (claims["verdict"] == "not testable here").all()
    premises = claims[claims.claim.str.contains("assumption")]
    assert len(premises) and (premises.kind == "check").all()
    attacks = pd.read_csv(folder / "attack_summary_per_seed.csv")
    assert set(attacks["seed"]) == {0, 1} and {"matched", "unmatched"} <= set(attacks["panel"])
    assert attacks["success rate"].between(0, 1).all()
    # PGD stays inside its L∞ ball; the pixel attack inside its pixel budget.
    pgd = attacks[attacks["attack"] == "L∞ PGD"]
    assert (pgd["median L∞"].dropna() <= 0.15 + 1e-5).all()
    l0 = [c for c in attacks.columns if c.startswith("median L0")][0]
    assert (attacks.loc[attacks["attack"] == "L0 pixel", l0].dropna() <= 20).all()

    # Recompute a method-1 row from the per-network table: mean over seeds of (AE fraction − clean floor).
    per_seed = pd.read_csv(folder / "manifold_methods_per_seed.csv")
    row = claims[claims["claim"] == "MLP: some L∞ PGD AEs stay near the true-class manifold (method 1)"].iloc[0]
    lh = row["statistic"].split(" at ")[1].split(",")[0]
    d = per_seed[(per_seed.model == "MLP") & (per_seed.layer == lh)].set_index(["group", "seed"])
    diff = (d.loc["L∞ PGD (matched)", "m1_contradicts_decision"] - d.loc["clean", "m1_contradicts_decision"]).mean()
    assert row["estimate"] == pytest.approx(diff, abs=1e-9)
    # Fractions are fractions; clean images' kNN vote rarely contradicts the network (the floor is low).
    assert per_seed[["m1_contradicts_decision", "m2_contradicts_decision"]].dropna().stack().between(0, 1).all()

    # The Friedman row's Kendall's W equals the rank definition on its replicate values (and SciPy's).
    row = claims[claims["claim"].str.contains("CNN: AE types of different norms behave differently \\(confidence")]
    row = row.iloc[0]
    y = reps[reps["id"] == row["id"]].pivot(index="replicate", columns="condition", values="value").to_numpy()
    if np.isfinite(row["estimate"]) and len(np.unique(y)) == y.size:
        assert row["estimate"] == pytest.approx(_kendall_w_by_ranks(y), abs=1e-9)
        chi2, _ = sps.friedmanchisquare(*y.T)
        assert row["estimate"] == pytest.approx(chi2 / (y.shape[0] * (y.shape[1] - 1)), abs=1e-9)

    # Method 2's k sweep flags k ≥ layer width; SNNL ratios are non-negative where defined.
    ks = pd.read_csv(folder / "method2_k_dependence.csv")
    assert (ks["k_ge_width"] == (ks["k_layer"] >= ks["layer_width"])).all()
    snnl = pd.read_csv(folder / "snnl_per_seed.csv")
    assert (snnl["ratio"].dropna() > -1e-9).all()
