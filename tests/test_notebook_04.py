"""End-to-end: notebook 04 (class selectivity) on the smoke profile through the headless runner."""

import numpy as np
import pandas as pd
import pytest

FIGURES = ("corruption_examples", "si_accuracy_vs_alpha", "corruption_robustness", "adversarial_robustness",
           "dimensionality", "gradient_variability", "bidirectionality", "tradeoff_summary")
TABLES = ("training", "per_model", "per_alpha", "corruption_effect", "influence", "dimensionality",
          "gradient_variability", "arms", "attack_diagnostics")


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
    # Premises (the regulariser moves SI, the arms' training does what it is for) are checks, not claims.
    premises = claims[claims.claim.str.startswith("check:")]
    assert len(premises) == 4 and (premises.kind == "check").all()
    assert (claims[~claims.claim.str.startswith("check:")].kind == "claim").all()
