"""Notebook 01 (Raw Zero-Shot) end to end on the smoke profile, through the headless runner."""

import subprocess
import sys

import pandas as pd
import pytest


@pytest.mark.slow
def test_notebook_01_smoke(tmp_path):
    out = tmp_path / "figs"
    res = subprocess.run([sys.executable, "-m", "reprobust.run", "--profile", "smoke", "--only", "01",
                          "--output-root", str(out), "--cache-dir", str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    folder = out / "01_raw_zero_shot"
    names = {p.name for p in folder.iterdir()}
    for fig in ("amalgam_heatmaps", "polygon_projection", "metrics_bars", "attack_success_vs_threshold",
                "metric_vs_attack", "accuracy_vs_metric"):
        assert f"{fig}.png" in names, fig
    claims = pd.read_csv(folder / "claims.csv")
    assert set(claims["verdict"]) <= {"supported", "not supported", "inconclusive"}
    assert claims["claim"].str.contains("correlate").any() and claims["claim"].str.contains("CapsNet|capsule").any()
    metrics = pd.read_csv(folder / "metrics.csv")
    assert (metrics["dbi"] > 0).all() and metrics["amalgam"].between(0, 2).all()
    attacks = pd.read_csv(folder / "attack_success.csv")
    assert attacks["success"].between(0, 1).all()
    # success read off minimal thresholds is monotone in the threshold
    for _, g in attacks[attacks.attack != "pgd"].groupby(["architecture", "defence", "attack"]):
        assert g.sort_values("level")["success"].is_monotonic_increasing
