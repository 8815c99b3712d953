"""End-to-end: notebook 05 (feature-map size vs robustness) on the smoke profile through the headless runner."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

FIGURES = ("theory_check", "accuracy_vs_map_size", "decomposition", "pooled_perturbation", "eps_sweep")
TABLES = ("synthetic_slopes", "convergence", "configurations", "results")


@pytest.mark.slow
def test_notebook_05_smoke(run_smoke):
    folder = run_smoke("05", FIGURES, TABLES)

    claims = pd.read_csv(folder / "claims.csv")
    reps = pd.read_csv(folder / "claims_replicates.csv")
    # Assumption checks are labelled as checks (equivalence with a stated margin), not as paper claims.
    checks = claims[claims.kind == "check"]
    assert len(checks) >= 5 and checks.margin.notna().all() and (checks.expected == "equivalent").all()
    assert checks.statistic.str.contains("max pool").sum() == 4  # the max head under every growth mode

    # Recompute a trained-network row from its replicate values: per seed the least-squares slope of
    # the metric on log2(map side) (SciPy's linregress), then their mean.
    row = claims[claims.statistic.str.startswith("slope of pgd on log2(map side), avg head, stride")].iloc[0]
    d = reps[(reps.id == row.id) & (reps.series == "y")]
    per_seed = [sps.linregress(g.condition.astype(float), g.value).slope for _, g in d.groupby("replicate")]
    assert row.n == len(per_seed) == 2
    assert row.estimate == pytest.approx(np.mean(per_seed), abs=1e-9)

    # A synthetic row against another saved table: the mean slope in synthetic_slopes.csv (3 decimals).
    syn = pd.read_csv(folder / "synthetic_slopes.csv").set_index(["growth", "perturbation"])
    assert len(syn) == 12 and syn["avg slope mean"].notna().all()
    srow = claims[claims.statistic == "log-log slope, growth by stride, sign δ, avg pool"].iloc[0]
    assert srow.estimate == pytest.approx(syn.loc[("stride", "sign"), "avg slope mean"], abs=6e-4)

    # Convergence is reported per distinct model; the 1×1-map model is shared by both heads (counted once).
    conv = pd.read_csv(folder / "convergence.csv")
    assert {"epochs_trained", "best_epoch", "natural", "converged"} <= set(conv.columns)
    assert (conv.best_epoch <= conv.epochs_trained).all()
    # smoke: per training and seed 122211×1 (shared by both heads) + 112211×1 and 122211×2 with each head
    assert len(conv) == 5 * 2 * 2

    # The configuration table reports theoretical and effective receptive fields next to the map size,
    # and upsampling costs FLOPs.
    configs = pd.read_csv(folder / "configurations.csv").set_index("config")
    assert {"map_side", "receptive_field", "erf_corner_pixels", "erf_centre_pixels", "MFLOPs_per_image"} <= set(configs.columns)
    assert configs.loc["122211 ×2", "map_side"] == configs.loc["112211 ×1", "map_side"] == 2
    assert configs.loc["122211 ×2", "MFLOPs_per_image"] > configs.loc["122211 ×1", "MFLOPs_per_image"]
    assert (configs.erf_corner_pixels <= configs.erf_centre_pixels).all() and (configs.erf_centre_pixels <= 64).all()
