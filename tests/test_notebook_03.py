"""End-to-end: notebook 03 (representation similarity) on the smoke profile through the headless runner."""

import pandas as pd
import pytest

FIGURES = ("within_model_cka", "cross_model_cka", "clean_vs_adversarial", "robust_overfitting", "threat_models",
           "width_sweep", "first_pc_variance")
TABLES = ("block_structure", "model_accuracy", "width_sweep")


@pytest.mark.slow
def test_notebook_03_smoke(run_smoke):
    folder = run_smoke("03", FIGURES, TABLES)

    claims = pd.read_csv(folder / "claims.csv")
    assert len(claims) == 7
    # Every model used is reported with clean and PGD accuracy, all proper fractions.
    acc = pd.read_csv(folder / "model_accuracy.csv")
    assert {"standard#0", "linf#0", "l2#0"} <= set(acc["model"])
    values = acc.drop(columns="model").to_numpy()
    assert ((values >= 0) & (values <= 1)).all() and values.shape[1] == 3
    # Block-structure statistics are CKA averages: within [-1, 1] (unbiased CKA may dip below 0).
    blocks = pd.read_csv(folder / "block_structure.csv")
    assert blocks[["mean_off_diagonal", "long_range"]].abs().le(1.0 + 1e-9).all().all()
