"""End-to-end: notebook 05 (feature-map size vs robustness) on the smoke profile through the headless runner."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

FIGURES = ("theory_check", "accuracy_vs_map_size", "decomposition", "pooled_perturbation", "eps_sweep")
TABLES = ("synthetic_slopes", "convergence", "configurations", "results", "robust_accuracy", "attack_diagnostics")


@pytest.mark.slow
def test_notebook_05_smoke(run_smoke):
    folder = run_smoke("05", FIGURES, TABLES)

    claims = pd.read_csv(folder / "claims.csv")
    reps = pd.read_csv(folder / "claims_replicates.csv")
    # Assumption checks are labelled as checks (equivalence with a stated margin), not as paper claims.
    checks = claims[claims.kind == "check"]
    assert len(checks) >= 5 and checks.margin.notna().all() and (checks.expected == "equivalent").all()
    assert checks.statistic.str.contains("max pool").sum() == 4  # the max head under every growth mode

    # Recompute a trained-network row from its replicate values: per seed the least-squares slope of
    # the metric on log2(map side) (SciPy's linregress), then their mean.
    row = claims[claims.statistic.str.startswith("slope of pgd on log2(map side), avg head, stride")].iloc[0]
    d = reps[(reps.id == row.id) & (reps.series == "y")]
    per_seed = [sps.linregress(g.condition.astype(float), g.value).slope for _, g in d.groupby("replicate")]
    assert row.n == len(per_seed) == 2
    assert row.estimate == pytest.approx(np.mean(per_seed), abs=1e-9)

    # A synthetic row against another saved table: the mean slope in synthetic_slopes.csv (3 decimals).
    syn = pd.read_csv(folder / "synthetic_slopes.csv").set_index(["growth", "perturbation"])
    assert len(syn) == 12 and syn["avg slope mean"].notna().all()
    srow = claims[claims.statistic == "log-log slope, growth by stride, sign δ, avg pool"].iloc[0]
    assert srow.estimate == pytest.approx(syn.loc[("stride", "sign"), "avg slope mean"], abs=6e-4)

    # Convergence is reported per distinct model; the 1×1-map model is shared by both heads (counted once).
    conv = pd.read_csv(folder / "convergence.csv")
    assert {"epoch_cap", "epochs_trained", "best_epoch", "cap_hit", "val_natural", "natural", "converged"} <= set(conv.columns)
    assert (conv.best_epoch <= conv.epochs_trained).all() and (conv.epochs_trained <= conv.epoch_cap).all()
    assert (conv.cap_hit == (conv.epochs_trained == conv.epoch_cap)).all()
    assert conv.val_natural.between(0, 1).all()
    # smoke: per training and seed 122211×1 (shared by both heads) + 112211×1, 122211×2 and the
    # matched-receptive-field 12211111×1 with each head
    assert len(conv) == 7 * 2 * 2

    # The configuration table reports theoretical and effective receptive fields next to the map size,
    # and upsampling costs FLOPs.
    configs = pd.read_csv(folder / "configurations.csv").set_index("config")
    assert {"map_side", "receptive_field", "erf_corner_pixels", "erf_centre_pixels", "MFLOPs_per_image"} <= set(configs.columns)
    assert configs.loc["122211 ×2", "map_side"] == configs.loc["112211 ×1", "map_side"] == 2
    assert configs.loc["122211 ×2", "MFLOPs_per_image"] > configs.loc["122211 ×1", "MFLOPs_per_image"]
    assert (configs.erf_corner_pixels <= configs.erf_centre_pixels).all() and (configs.erf_centre_pixels <= 64).all()
    # the matched-receptive-field configuration: the 2×2 map of 112211 at the base string's receptive field
    assert configs.loc["12211111 ×1", "map_side"] == 2
    assert configs.loc["12211111 ×1", "receptive_field"] == configs.loc["122211 ×1", "receptive_field"] == 49
    assert configs.loc["112211 ×1", "receptive_field"] < 49
    rf_rows = claims[claims.family.str.startswith("matched receptive field")]
    assert len(rf_rows) == 6 and (rf_rows.kind == "check").sum() == 2
    assert rf_rows.statistic.str.startswith("consistency: 12211111 ×1").sum() == 3

    # Consistency rows for the max head on its own, in their own family (the avg rows' Holm is unchanged).
    max_rows = claims[claims.statistic.str.startswith("slope of consistency on log2(map side), max head")]
    assert len(max_rows) == 2 and set(max_rows.family) == {"map size → consistency, max head"}
    assert (max_rows.expected == "negative").all()

    # The masking check gives every image its own ε (distance to the nearest other-class training image).
    mask_row = claims[claims.family == "attack checks"].iloc[0]
    assert "each image at its own ε" in mask_row.statistic and mask_row.kind == "check"

    # Throughput: a separate, machine-dependent table (listed, not compared by --compare-to-committed),
    # with the ×2-upsampling vs one-fewer-stride-2 cost row kept out of claims.csv.
    import json
    index = {e["name"]: e for e in json.loads((folder / "_outputs.json").read_text())}
    assert index["throughput"].get("machine_dependent") and index["throughput_claims"].get("machine_dependent")
    assert not any(index[n].get("machine_dependent") for n in ("claims", "configurations", "results"))
    tp = pd.read_csv(folder / "throughput.csv")
    assert len(tp) == 2 * len(configs) and (tp["min"] <= tp["median"]).all() and (tp["median"] <= tp["max"]).all()
    cost = pd.read_csv(folder / "throughput_claims.csv")
    assert len(cost) == 2 and cost.statistic.str.startswith("log time ratio (122211 ×2) / (112211 ×1)").all()
    assert not claims.family.str.startswith("cost").any()

    # The reported robust accuracy is the ensemble's worst case per image; PGD-20 is kept beside it.
    robust = pd.read_csv(folder / "robust_accuracy.csv")
    assert len(robust) == len(conv)  # one row per distinct model
    attacks = robust[["ens_pgd", "ens_apgd-ce", "ens_apgd-t"]].to_numpy()
    assert (robust.ensemble.to_numpy()[:, None] <= attacks + 1e-12).all()  # worst case over the attacks
    assert (attacks <= robust.ens_clean.to_numpy()[:, None] + 1e-12).all()  # an attack only removes images
    assert (robust.pgd <= robust.natural + 1e-12).all()
    assert robust.ensemble.mean() <= robust.pgd.mean() + 1e-12  # the ensemble is at least as strong on average
    results = pd.read_csv(folder / "results.csv")
    assert results.ensemble.str.contains("±").all()
    # ... and it is what the robust-accuracy claim reads; the PGD-20 rows are their own family.
    assert claims.statistic.str.startswith("slope of ensemble on log2(map side), avg head").sum() == 2
    assert set(claims[claims.statistic.str.startswith("slope of pgd on")].family) == {"map size → PGD-20 robust accuracy"}
    # Attack-strength checks on the main models (base and largest map at ×1), each a rule with a verdict.
    diag = pd.read_csv(folder / "attack_diagnostics.csv")
    assert set(diag.model.str.split(",").str[0]) == {"122211 ×1", "112211 ×1"}
    assert diag.groupby("model").size().eq(5).all()
    assert diag.check.str.contains("large eps").sum() == 2 and diag.check.str.contains("Square").sum() == 2
    assert diag.passed.isin([True, False]).all()
