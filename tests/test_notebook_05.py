"""End-to-end: notebook 05 (feature-map size vs robustness) on the smoke profile through the headless runner."""

import pandas as pd
import pytest

FIGURES = ("theory_check", "accuracy_vs_map_size", "upsampling_sweep", "eps_sweep")
TABLES = ("synthetic_slopes", "configurations", "results")


@pytest.mark.slow
def test_notebook_05_smoke(run_smoke):
    folder = run_smoke("05", FIGURES, TABLES)

    claims = pd.read_csv(folder / "claims.csv")
    assert len(claims) >= 10
    # The configuration table reports the receptive field next to the map size, and upsampling costs FLOPs.
    configs = pd.read_csv(folder / "configurations.csv").set_index("config")
    assert {"map_side", "receptive_field", "covers_image", "MFLOPs_per_image"} <= set(configs.columns)
    assert configs.loc["122211 ×2", "map_side"] == configs.loc["112211 ×1", "map_side"] == 2
    assert configs.loc["122211 ×2", "MFLOPs_per_image"] > configs.loc["122211 ×1", "MFLOPs_per_image"]
    # Synthetic slopes: every growth × perturbation, for both heads.
    slopes = pd.read_csv(folder / "synthetic_slopes.csv")
    assert len(slopes) == 9 and slopes["avg slope mean"].notna().all()
