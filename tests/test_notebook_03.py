"""End-to-end: notebook 03 (representation similarity) on the smoke profile through the headless runner."""

import subprocess
import sys

import pandas as pd
import pytest

NOTEBOOK = "03_representation_similarity"
FIGURES = ("within_model_cka", "cross_model_cka", "clean_vs_adversarial", "robust_overfitting", "threat_models",
           "width_sweep", "first_pc_variance")
TABLES = ("block_structure", "model_accuracy", "width_sweep", "claims")


@pytest.mark.slow
def test_notebook_03_smoke(tmp_path):
    out = tmp_path / "figures"
    res = subprocess.run(
        [sys.executable, "-m", "reprobust.run", "--profile", "smoke", "--only", "03", "--output-root", str(out),
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
    assert len(claims) == 7
    assert set(claims["verdict"]) <= {"supported", "not supported", "inconclusive"}
    # Every model used is reported with clean and PGD accuracy, all proper fractions.
    acc = pd.read_csv(folder / "model_accuracy.csv")
    assert {"standard#0", "linf#0", "l2#0"} <= set(acc["model"])
    values = acc.drop(columns="model").to_numpy()
    assert ((values >= 0) & (values <= 1)).all() and values.shape[1] == 3
    # Block-structure statistics are CKA averages: within [-1, 1] (unbiased CKA may dip below 0).
    blocks = pd.read_csv(folder / "block_structure.csv")
    assert blocks[["mean_off_diagonal", "long_range"]].abs().le(1.0 + 1e-9).all().all()
