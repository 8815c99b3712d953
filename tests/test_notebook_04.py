"""End-to-end: notebook 04 (class selectivity) on the smoke profile through the headless runner."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

NOTEBOOK = "04_class_selectivity"
FIGURES = ("corruption_examples", "si_accuracy_vs_alpha", "corruption_robustness", "adversarial_robustness",
           "dimensionality", "gradient_variability", "tradeoff_summary")
TABLES = ("per_model", "corruption_per_type", "dimensionality", "gradient_variability", "claims")


@pytest.mark.slow
def test_notebook_04_smoke(tmp_path):
    out = tmp_path / "figures"
    res = subprocess.run(
        [sys.executable, "-m", "reprobust.run", "--profile", "smoke", "--only", "04", "--output-root", str(out),
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    folder = out / NOTEBOOK
    for name in FIGURES:
        assert (folder / f"{name}.png").stat().st_size > 1000, name
    for name in TABLES:
        assert (folder / f"{name}.csv").exists() and (folder / f"{name}.md").exists(), name

    claims = pd.read_csv(folder / "claims.csv")
    assert len(claims) == 10
    assert set(claims["verdict"]) <= {"supported", "not supported", "inconclusive"}
    models = pd.read_csv(folder / "per_model.csv")
    assert sorted(models["alpha"]) == [-1.0, 0.0, 1.0]  # smoke grid, one seed
    fractions = models[["mean_si", "dead_fraction", "clean_acc", "corrupted_acc", "pgd_auc"]].to_numpy()
    assert np.isfinite(fractions).all() and ((fractions >= 0) & (fractions <= 1)).all()
    dims = pd.read_csv(folder / "dimensionality.csv")
    assert set(dims["condition"]) == {"corrupted", "adversarial"}
    assert (dims[["n_clean", "n_perturbed", "n_delta"]] >= 0).all().all()
