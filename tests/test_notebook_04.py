"""End-to-end: notebook 04 (class selectivity) on the smoke profile through the headless runner."""

import numpy as np
import pandas as pd
import pytest

FIGURES = ("corruption_examples", "si_accuracy_vs_alpha", "corruption_robustness", "adversarial_robustness",
           "dimensionality", "gradient_variability", "bidirectionality", "tradeoff_summary")
TABLES = ("training", "per_model", "per_alpha", "corruption_effect", "influence", "dimensionality",
          "gradient_variability", "arms", "attack_diagnostics", "effect_matched", "unit_correlations")


@pytest.mark.slow
def test_notebook_04_smoke(run_smoke):
    folder = run_smoke("04", FIGURES, TABLES)

    claims = pd.read_csv(folder / "claims.csv")
    models = pd.read_csv(folder / "per_model.csv")
    # smoke grid: 3 α × 2 seeds (standard) plus the two α = 0 arms × 2 seeds
    assert sorted(models[models.arm == "standard"]["alpha"]) == [-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]
    assert sorted(models[models.arm != "standard"]["arm"]) == ["adversarial"] * 2 + ["noise"] * 2
    fractions = models[["mean_si", "dead_fraction", "clean_acc", "corrupted_acc", "pgd_auc", "fgsm_auc"]].to_numpy()
    assert np.isfinite(fractions).all() and ((fractions >= 0) & (fractions <= 1)).all()
    dims = pd.read_csv(folder / "dimensionality.csv")
    assert set(dims["condition"]) == {"corrupted", "adversarial", "noise", "adversarial_matched"}
    assert (dims[["n_clean", "n_perturbed", "n_delta", "n_input"]] >= 0).all().all()
    effect = pd.read_csv(folder / "corruption_effect.csv")
    assert "frost" in set(effect["corruption"])
    np.testing.assert_array_equal(effect["measurable"], effect["acc_drop_mean"] >= 0.02)

    # recompute a per-seed-slope row from claims_replicates with np.polyfit (independent of stats.py)
    reps = pd.read_csv(folder / "claims_replicates.csv")
    row = claims[claims["statistic"] == "slope of PGD area/clean on SI"].iloc[0]
    r = reps[reps["id"] == row["id"]]
    slopes = []
    for _, g in r.groupby("replicate"):
        si = g[g.series == "si"].sort_values("condition")["value"].to_numpy()
        y = g[g.series == "y"].sort_values("condition")["value"].to_numpy()
        slopes.append(np.polyfit(si, y, 1)[0])
    assert len(slopes) == 2
    assert np.isclose(row["estimate"], np.mean(slopes), rtol=1e-3, atol=1e-9)  # CSV: 6 digits, SI spread small
    # … and the SI of the PGD row's replicates is the per-model SI table's
    si_table = models[models.arm == "standard"].pivot(index="seed", columns="alpha", values="mean_si")
    got = r[r.series == "si"].pivot(index="replicate", columns="condition", values="value")
    np.testing.assert_allclose(got.to_numpy(), si_table.to_numpy(), rtol=1e-5)
    # recompute the paired arm row from per_model
    row = claims[claims["statistic"] == "mean SI, noise − standard"].iloc[0]
    arms = models[models.alpha == 0.0].pivot(index="seed", columns="arm", values="mean_si")
    assert np.isclose(row["estimate"], (arms["noise"] - arms["standard"]).mean(), rtol=1e-4, atol=1e-7)

    # The reported worst-case number: the ensemble's robust accuracy at one ε, on the PGD curve's images
    # (n_ensemble = n_attack on smoke), with PGD-10 (the curve at that ε) beside it.
    attacks = models[["ens_pgd", "ens_apgd-ce", "ens_apgd-t"]].to_numpy()
    assert (models.ensemble.to_numpy()[:, None] <= attacks + 1e-12).all()  # worst case over the attacks
    assert (attacks <= models.ens_clean.to_numpy()[:, None] + 1e-12).all()
    assert (models.pgd_at_ens_eps <= models.ens_clean + 1e-12).all()  # same images: PGD-k ≤ clean
    assert models.ensemble.mean() <= models.pgd_at_ens_eps.mean() + 1e-12
    np.testing.assert_allclose(models.ensemble_rel, models.ensemble / models.ens_clean.clip(lower=1e-12), rtol=1e-5)
    rows = claims[claims.family == "2 (ensemble)"]
    assert len(rows) == 2 and rows.statistic.str.contains("ensemble robust/clean").all()
    # Attack-strength checks on the extreme-α and adversarially trained models of the first seed.
    diag = pd.read_csv(folder / "attack_diagnostics.csv")
    assert sorted(set(diag.model)) == ["α=-1, seed 0, standard", "α=0, seed 0, adversarial", "α=1, seed 0, standard"]
    assert diag.groupby("model").size().eq(5).all() and diag.passed.isin([True, False]).all()
    # Premises (the regulariser moves SI, clean accuracy per α, the matched accuracies, the arms' training)
    # are checks, not claims: 1 + 2 α values ≠ 0 + 1 + 2 on smoke.
    premises = claims[claims.claim.str.startswith("check:")]
    assert len(premises) == 6 and (premises.kind == "check").all()
    assert (claims[~claims.claim.str.startswith("check:")].kind == "claim").all()

    # The α-grid rule: one paired TOST per α ≠ 0 on clean accuracy over all test images, Holm over the α.
    rule = claims[claims.family == "α-grid accuracy rule"]
    assert len(rule) == 2 and (rule.expected == "equivalent").all() and (rule.margin == 0.02).all()
    std = models[models.arm == "standard"].pivot(index="seed", columns="alpha", values="clean_acc_test")
    for _, row in rule.iterrows():
        a = float(row.statistic.split("α = ")[1].split(" ")[0])
        assert np.isclose(row.estimate, (std[a] - std[0.0]).mean(), rtol=1e-4, atol=1e-7)

    # Effect-matched PGD-L2: per model the bisected ε gives the corrupted set's accuracy (to the tolerance
    # when converged); the TOST check reads the per-seed mean gap and the matched claim row is gated on it.
    match = pd.read_csv(folder / "effect_matched.csv")
    assert len(match) == 6 and (match.eps_l2_matched >= 0).all()
    np.testing.assert_allclose(match.gap, match.acc_matched - match.acc_corrupted, atol=1e-6)
    assert (match.gap[match.converged].abs() <= 0.01 + 1e-9).all()
    gap_row = claims[claims.claim.str.startswith("check: the effect-matched")].iloc[0]
    assert np.isclose(gap_row.estimate, match.groupby("seed").gap.mean().mean(), atol=1e-6)
    matched_rows = claims[claims.claim.str.contains("effect-matched: same accuracy drop")]
    assert len(matched_rows) == 1 and matched_rows.iloc[0].id > gap_row.id
    if gap_row.verdict != "supported":  # smoke: 2 seeds, so the check is not testable and the claim is gated
        assert matched_rows.iloc[0].verdict == "not testable here"
        assert f"row {gap_row.id} is {gap_row.verdict}" in matched_rows.iloc[0].precondition
    dims_m = dims[(dims.condition == "adversarial_matched") & (dims.layer == "stem")].sort_values(["alpha", "seed"])
    np.testing.assert_allclose(dims_m.accuracy, match.sort_values(["alpha", "seed"]).acc_matched, atol=1e-6)

    # Every slope against SI has a rank version (except the raw all-corruption row, kept as published).
    slopes = claims.statistic.str.match(r"slope of .* on SI")
    ranks = claims.statistic.str.startswith("Spearman ρ")
    assert ranks.sum() == slopes.sum() - 1
    # Claim 1 with the corruptions weighted equally: drop / α = 0 drop is 1 on average at α = 0 (seed mean)
    assert claims.claim.str.contains("corruptions weighted equally").sum() == 2
    eq = claims[claims.claim == "1. (corruptions weighted equally)"].iloc[0]
    if pd.isna(eq.precondition) or not eq.precondition:  # some corruption is measurable
        at_zero = reps[(reps.id == eq.id) & (reps.series == "y") & (reps.condition == 1)]  # α = 0 (of −1, 0, 1)
        assert len(at_zero) == 2 and np.isclose(at_zero.value.mean(), 1.0, atol=1e-5)
    units = pd.read_csv(folder / "unit_correlations.csv")
    assert len(units) == 3 and units.spearman.between(-1, 1).all()
