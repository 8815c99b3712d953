"""Notebook 01 (Raw Zero-Shot) end to end on the smoke profile, through the headless runner."""

import numpy as np
import pandas as pd
import pytest

from reprobust import stats


@pytest.mark.slow
def test_notebook_01_smoke(run_smoke):
    folder = run_smoke("01")
    names = {p.name for p in folder.iterdir()}
    for fig in ("amalgam_heatmaps", "polygon_projection", "metrics_bars", "attack_success_vs_threshold",
                "metric_vs_attack", "accuracy_vs_metric", "variant_sweep", "confidence_vs_metric"):
        assert f"{fig}.png" in names, fig
    metrics = pd.read_csv(folder / "metrics.csv")
    assert {"dbi_raw", "dbi_cal", "amalgam_raw", "amalgam_cal", "epochs", "temperature", "defence_cost"} <= set(metrics)
    assert metrics.seed.nunique() == 2 and (metrics.temperature > 0).all()
    assert metrics["amalgam_cal"].between(0, 2).all()
    attacks = pd.read_csv(folder / "attack_success.csv")
    assert attacks["success"].between(0, 1).all()
    # both countings are read off per-image minimal thresholds: monotone in the threshold
    for _, g in attacks.groupby(["architecture", "defence", "seed", "attack"]):
        g = g.sort_values("level")
        assert g["success"].is_monotonic_increasing and g["success_authors"].is_monotonic_increasing
    # the oracle table: the black-box attack never beats the exact minimal perturbation
    oracle = pd.read_csv(folder / "attack_vs_oracle.csv")
    assert (oracle["gap_mean"] >= -1e-9).all()
    # recompute a claims row from the published replicate values: CapsNet − linear (calibrated DBI), paired t
    claims = pd.read_csv(folder / "claims.csv")
    reps = pd.read_csv(folder / "claims_replicates.csv")
    row = claims[claims.statistic == "dbi_cal: CapsNet − linear"].iloc[0]
    r = reps[reps.id == row["id"]]
    after = r[r.series == "after"].sort_values("replicate")["value"].to_numpy()
    before = r[r.series == "before"].sort_values("replicate")["value"].to_numpy()
    est = stats.paired(after, before)
    assert est.value == pytest.approx(row["estimate"], rel=1e-4)  # the CSVs hold 6 significant digits
    # and the same number straight from the metrics table
    und = metrics[metrics.defence == "none"].set_index(["architecture", "seed"])["dbi_cal"]
    direct = np.mean([und["capsnet", s] - und["linear", s] for s in (0, 1)])
    assert direct == pytest.approx(row["estimate"], abs=1e-3)
    # C1 between architectures, recomputed from the published tables: Pearson r of the architecture means
    # (over seeds and the defences within the cost bound) of calibrated DBI and pixel success at the reference
    row = claims[claims.statistic.str.startswith("r(dbi_cal, pixel@") & (claims.family == "C1 between")].iloc[0]
    level = int(row["statistic"].split("pixel@")[1].split(")")[0])
    cost = metrics.groupby("defence")["defence_cost"].mean()
    in_bound = cost[cost <= 0.05].index  # the smoke profile's max_defence_cost
    px = attacks[(attacks.attack == "pixel") & (attacks.level == level)]
    table = metrics.merge(px[["architecture", "defence", "seed", "success"]], on=["architecture", "defence", "seed"])
    means = table[table.defence.isin(in_bound)].groupby("architecture")[["dbi_cal", "success"]].mean()
    if means["success"].notna().all() and np.ptp(means["success"]) > 0:
        assert np.corrcoef(means["dbi_cal"], means["success"])[0, 1] == pytest.approx(row["estimate"], abs=1e-4)
    else:
        assert np.isnan(row["estimate"])
    # every trained model has its early-stopping record: smoke = 3 architectures × 2 training defences
    # (none, label smoothing) × 2 seeds × (1 full + 10 leave-one-out)
    log = pd.read_csv(folder / "training_log.csv")
    assert len(log) == 3 * 2 * 2 * 11 and set(log.excluded_class) == set(range(-1, 10))
    assert (log.best_epoch <= log.epochs).all() and (log.epochs <= log.epoch_cap).all()
    assert (log.cap_hit == (log.epochs >= log.epoch_cap)).all() and log.val_score.between(0, 1).all()
