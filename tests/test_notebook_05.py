"""End-to-end: notebook 05 (feature-map size vs robustness) on the smoke profile through the headless runner."""

import subprocess
import sys

import pandas as pd
import pytest

NOTEBOOK = "05_feature_maps"
FIGURES = ("theory_check", "accuracy_vs_map_size", "upsampling_sweep", "eps_sweep")
TABLES = ("synthetic_slopes", "configurations", "results", "claims")


@pytest.mark.slow
def test_notebook_05_smoke(tmp_path):
    out = tmp_path / "figures"
    res = subprocess.run(
        [sys.executable, "-m", "reprobust.run", "--profile", "smoke", "--only", "05", "--output-root", str(out),
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
    assert len(claims) >= 10
    assert set(claims["verdict"]) <= {"supported", "not supported", "inconclusive"}
    # The configuration table reports the receptive field next to the map size, and upsampling costs FLOPs.
    configs = pd.read_csv(folder / "configurations.csv").set_index("config")
    assert {"map_side", "receptive_field", "covers_image", "MFLOPs_per_image"} <= set(configs.columns)
    assert configs.loc["122211 ×2", "map_side"] == configs.loc["112211 ×1", "map_side"] == 2
    assert configs.loc["122211 ×2", "MFLOPs_per_image"] > configs.loc["122211 ×1", "MFLOPs_per_image"]
    # Synthetic slopes: every growth × perturbation, for both heads.
    slopes = pd.read_csv(folder / "synthetic_slopes.csv")
    assert len(slopes) == 9 and slopes["avg slope mean"].notna().all()
