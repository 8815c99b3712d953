"""End-to-end: notebook 02 (manifold proximity) on the smoke profile through the headless runner."""

import numpy as np
import pandas as pd
import pytest

FIGURES = ("knn_composition", "projection_distances", "preimages_mlp", "preimages_cnn", "umap_mlp", "umap_cnn",
           "snnl_ratio")
TABLES = ("attack_summary", "knn_composition", "projection_distances", "snnl")


@pytest.mark.slow
def test_notebook_02_smoke(run_smoke):
    folder = run_smoke("02", FIGURES, TABLES)

    claims = pd.read_csv(folder / "claims.csv")
    assert len(claims) == 12  # six claims for each of the two models
    attacks = pd.read_csv(folder / "attack_summary.csv")
    assert {"L∞ PGD", "L2 C&W", "L1 EAD", "L0 pixel"} <= set(attacks["attack"])
    assert attacks["success rate"].between(0, 1).all()
    # PGD stays inside its L∞ ball; the pixel attack inside its pixel budget.
    pgd = attacks[attacks["attack"] == "L∞ PGD"]
    assert (pgd["median L∞"].dropna() <= 0.15 + 1e-5).all()
    assert (attacks.loc[attacks["attack"] == "L0 pixel", "median L0 (pixels)"].dropna() <= 20).all()
    # Method 1: neighbour shares are fractions; clean calibration images sit mostly with their own class.
    knn = pd.read_csv(folder / "knn_composition.csv")
    assert knn["true_fraction_mean"].dropna().between(0, 1).all()
    assert (knn[knn["group"] == "clean"]["true_fraction_mean"] > 0.5).all()
    # Method 2: distances are non-negative; the logits (10-d) are flagged as a full-dimensional layer hull.
    proj = pd.read_csv(folder / "projection_distances.csv")
    assert (proj[["d_true_mean", "d_pred_mean"]].dropna().to_numpy() >= 0).all()
    assert proj.loc[proj["layer"] == "logits", "layer_hull_full_dimensional"].all()
    snnl = pd.read_csv(folder / "snnl.csv")
    assert np.isfinite(snnl["ratio"]).all() and (snnl["ratio"] > -1e-9).all()
