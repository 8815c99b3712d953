"""Notebook 01 (Raw Zero-Shot) end to end on the smoke profile, through the headless runner."""

import pandas as pd
import pytest


@pytest.mark.slow
def test_notebook_01_smoke(run_smoke):
    folder = run_smoke("01")
    names = {p.name for p in folder.iterdir()}
    for fig in ("amalgam_heatmaps", "polygon_projection", "metrics_bars", "attack_success_vs_threshold",
                "metric_vs_attack", "accuracy_vs_metric"):
        assert f"{fig}.png" in names, fig
    claims = pd.read_csv(folder / "claims.csv")
    assert claims["claim"].str.contains("correlate").any() and claims["claim"].str.contains("CapsNet|capsule").any()
    metrics = pd.read_csv(folder / "metrics.csv")
    assert (metrics["dbi"] > 0).all() and metrics["amalgam"].between(0, 2).all()
    attacks = pd.read_csv(folder / "attack_success.csv")
    assert attacks["success"].between(0, 1).all()
    # success read off minimal thresholds is monotone in the threshold
    for _, g in attacks[attacks.attack != "pgd"].groupby(["architecture", "defence", "attack"]):
        assert g.sort_values("level")["success"].is_monotonic_increasing
