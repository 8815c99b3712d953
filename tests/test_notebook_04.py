"""End-to-end: notebook 04 (class selectivity) on the smoke profile through the headless runner."""

import numpy as np
import pandas as pd
import pytest

FIGURES = ("corruption_examples", "si_accuracy_vs_alpha", "corruption_robustness", "adversarial_robustness",
           "dimensionality", "gradient_variability", "tradeoff_summary")
TABLES = ("per_model", "corruption_per_type", "dimensionality", "gradient_variability")


@pytest.mark.slow
def test_notebook_04_smoke(run_smoke):
    folder = run_smoke("04", FIGURES, TABLES)

    claims = pd.read_csv(folder / "claims.csv")
    assert len(claims) == 10
    models = pd.read_csv(folder / "per_model.csv")
    assert sorted(models["alpha"]) == [-1.0, 0.0, 1.0]  # smoke grid, one seed
    fractions = models[["mean_si", "dead_fraction", "clean_acc", "corrupted_acc", "pgd_auc"]].to_numpy()
    assert np.isfinite(fractions).all() and ((fractions >= 0) & (fractions <= 1)).all()
    dims = pd.read_csv(folder / "dimensionality.csv")
    assert set(dims["condition"]) == {"corrupted", "adversarial"}
    assert (dims[["n_clean", "n_perturbed", "n_delta"]] >= 0).all().all()
