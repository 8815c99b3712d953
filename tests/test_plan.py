"""--plan: the full profile's grids and their cost, without running anything."""

import pytest

from reprobust import plan as P
from reprobust import run
from reprobust.models import build_model


def test_settings_are_copies():
    s = P.full_settings("05_feature_maps")
    s["epochs"] = 1
    assert P.full_settings("05_feature_maps")["epochs"] == 110
    with pytest.raises(ValueError, match="unknown notebook"):
        P.full_settings("06_nothing")


@pytest.mark.parametrize("notebook", sorted(P.FULL_SETTINGS))
def test_every_planned_model_exists_in_the_registry(notebook):
    plan = P.notebook_plan(notebook)
    assert plan.trains and plan.evals
    for job in plan.trains + plan.evals:
        opts = dict(job.model)
        name = opts.pop("name")
        shape, _, _ = P.DATA[job.dataset]
        build_model(name, input_shape=shape, num_classes=10, **opts)


def test_paper_e_grid_is_the_paper_s_set_up():
    plan = P.notebook_plan("05_feature_maps")
    # PGD-AT with 10 steps (11 passes per image) and the matched standard control, 110 epochs
    assert {t.epochs for t in plan.trains} == {110} and {t.passes_per_image for t in plan.trains} == {1, 11}
    strides = {(t.model["name"], t.model["strides"], t.model["upsample"]) for t in plan.trains}
    assert {("resnet18", "1222", 1), ("resnet18", "1122", 1), ("resnet18", "1222", 2)} <= strides
    assert {("preact_resnet18", "1122", 1), ("vgg16_bn", "11222", 1), ("alexnet", "1122", 1)} <= strides
    at_1122 = [t for t in plan.trains if t.model == {"name": "resnet18", "strides": "1122", "head": "avg", "upsample": 1}
               and t.passes_per_image == 11]
    assert sum(t.count for t in at_1122) == 5
    # the notebook reads the same settings: its schedule, augmentation and ensemble are the paper's
    s = P.full_settings("05_feature_maps")
    assert s["train_extra"]["milestones"] == [100, 105] and s["train_extra"]["augment"]["pad_mode"] == "reflect"
    assert s["at_step_size"] == pytest.approx(2 / 255) and s["ensemble"] == "standard"


@pytest.mark.parametrize("notebook", ["01_raw_zero_shot", "02_manifold_proximity", "03_representation_similarity"])
def test_full_settings_are_in_the_notebook_s_own_keys(notebook):
    # The notebook's settings cell takes `"full": full_settings(notebook)`; its smoke profile must name exactly
    # the same settings, or a -p override / overrides key would mean different things per profile.
    import re

    from reprobust.paths import NOTEBOOKS_DIR

    source = (NOTEBOOKS_DIR / f"{notebook}.py").read_text()
    assert f'"full": full_settings("{notebook}")' in source
    smoke = source[source.index('"smoke": dict('):source.index('"quick": dict(')]
    keys = set(re.findall(r"[(,]\s*(\w+)=", smoke.replace("\n", " ")))
    full = set(P.full_settings(notebook))
    assert full <= keys | {"milestones"}, sorted(full - keys)


def test_paper_a_grid_is_the_paper_s_set_up():
    s = P.full_settings("01_raw_zero_shot")
    plan = P.notebook_plan("01_raw_zero_shot")
    names = {t.model["name"] for t in plan.trains}
    assert names == {"wide_resnet", "resnet", "nin", "allconv", "densenet_bc", "lenet", "capsnet"}
    # 7 architectures × (none + 3 training defences) × 5 seeds × (1 full + 10 leave-one-out models)
    assert sum(t.count for t in plan.trains) == 7 * 4 * 5 * 11
    assert {t.epochs for t in plan.trains if t.model["name"] == "capsnet"} == {50}
    assert {t.model.get("widen") for t in plan.trains if t.model["name"] == "wide_resnet"} == {8}
    assert s["optimizer"] == "cmaes" and s["attack_budget"]["pixel"] == {"popsize": 400, "max_iter": 100}


def test_paper_b_and_c_grids_follow_the_data_set_and_the_width():
    mnist = P.notebook_plan("02_manifold_proximity", {"dataset": "mnist"})
    cifar = P.notebook_plan("02_manifold_proximity")
    assert {t.model["name"] for t in mnist.trains} == {"mlp", "lenet"} and {t.epochs for t in mnist.trains} == {25}
    assert {t.model["name"] for t in cifar.trains} == {"cifar_conv"} and {t.epochs for t in cifar.trains} == {40}
    plan = P.notebook_plan("03_representation_similarity")
    widens = {t.model["widen"] for t in plan.trains}
    assert {t.model["name"] for t in plan.trains} == {"wide_resnet"} and {1, 2, 4, 8, 10} <= widens
    assert plan.trains[0].model == {"name": "wide_resnet", "depth": 28, "widen": 4}


def test_a_setting_per_data_set_needs_the_data_set():
    assert P.for_dataset("epochs", {"mnist": 25, "cifar10": 40}, "cifar10") == 40
    assert P.for_dataset("models", {"mlp": 1}, "cifar10") == {"mlp": 1}   # keys are not data sets: as is
    with pytest.raises(ValueError, match="no value for dataset 'fashion_mnist'; given for: cifar10, mnist"):
        P.for_dataset("epochs", {"mnist": 25, "cifar10": 40}, "fashion_mnist")


def test_resnet18_flops_match_the_published_figure():
    # ResNet-18 (CIFAR stem) is commonly listed at 0.56 GMACs per 32×32 image, i.e. 1.11 GFLOPs.
    assert P.forward_flops({"name": "resnet18"}, "cifar10") == pytest.approx(1.11e9, rel=0.02)


def test_gpu_hours_follow_from_the_grid(monkeypatch):
    monkeypatch.setattr(P, "forward_flops", lambda model, dataset: 1e10)
    rows, source = P.plan_table(["05_feature_maps"])
    per_pass = 3 * 1e10 / P.REFERENCE_FLOPS
    # 3 ResNet-18 configurations × 2 heads, 5 seeds, standard (1 pass) + PGD-AT (11 passes), and 6 other
    # networks with PGD-AT, one seed each; 110 epochs on the 45,000 images left after the validation split
    train = (6 * 5 * (1 + 11) + 6 * 11) * 110 * 45_000
    # every model: PGD-20 × 2 (robust, consistency) + FGSM + DeepFool-50 + L2 PGD-20 + a 7-ε sweep of PGD-10
    # = 221 passes, and the standard ensemble: 5 × PGD-20 + (5 + 9) × APGD-100 + 5,000 Square queries / 3
    evals = 66 * 10_000 * (221 + 100 + 1400 + 5000 / 3)
    assert rows[0]["gpu_hours"] == pytest.approx((train + evals) * per_pass / 3600)
    assert rows[0]["models"] == 66 and rows[0]["model_epochs"] == 66 * 110
    assert "396 TFLOP/s" in source
    # tiny models are costed at the throughput ceiling, not at their FLOPs
    monkeypatch.setattr(P, "forward_flops", lambda model, dataset: 1.0)
    rows, _ = P.plan_table(["05_feature_maps"])
    assert rows[0]["gpu_hours"] == pytest.approx((train + evals) / P.REFERENCE_MAX_IMAGES_PER_S / 3600)


def test_run_plan_prints_the_table_and_runs_nothing(monkeypatch, capsys):
    monkeypatch.setattr(P, "forward_flops", lambda model, dataset: 1e9)
    monkeypatch.setattr(run, "execute", lambda *a, **k: pytest.fail("--plan must not run notebooks"))
    assert run.main(["--profile", "full", "--plan", "--only", "05", "-p", "epochs", "10"]) == 0
    out = capsys.readouterr().out
    assert "| 05_feature_maps | 66 | 660 |" in out and "est. GPU-hours" in out
    assert run.main(["--profile", "quick", "--plan", "--only", "05"]) == 2
    assert "--profile full --plan" in capsys.readouterr().err


def test_measured_cost_is_seconds_per_image():
    t = P.measured_pass_seconds({"name": "lenet"}, "mnist", "cpu", batch_size=8, steps=1)
    assert 0 < t < 1


def test_paper_d_grid_has_both_set_ups_in_the_notebook_s_keys():
    s = P.full_settings("04_class_selectivity")
    assert s["dataset"] == "tiny_imagenet" and set(s["setups"]) == {"tiny_imagenet", "cifar10"}
    assert s["setups"]["tiny_imagenet"]["model"] == {"name": "resnet18"} and s["setups"]["tiny_imagenet"]["image_size"] == 64
    assert s["setups"]["cifar10"]["model"]["depth"] == 20 and s["ensemble_eps"] in s["eps_linf"]
    plan = P.notebook_plan("04_class_selectivity")
    # per set-up: 9 α × 5 seeds, plus the noise and adversarial arms (5 seeds each)
    for ds in ("tiny_imagenet", "cifar10"):
        assert sum(t.count for t in plan.trains if t.dataset == ds) == (9 + 2) * 5
    adv = [t for t in plan.trains if "adversarial" in t.label]
    assert {t.passes_per_image for t in adv} == {8}
    corr = {e.dataset: e.n_images for e in plan.evals if "corruptions" in e.label}
    assert corr == {"tiny_imagenet": 10_000 * 15 * 5, "cifar10": 10_000 * 19 * 5}  # every file of each release


def test_plan_takes_the_generic_overrides_dict_key_by_key():
    plan = P.notebook_plan("03_representation_similarity", {"overrides": {"model": {"depth": 10}, "widths": [1]},
                                                            "epochs": 3, "not_a_setting": 1})
    assert plan.trains[0].model == {"name": "wide_resnet", "depth": 10, "widen": 4} and plan.trains[0].epochs == 3
    assert {t.model["widen"] for t in plan.trains if "width sweep" in t.label} == {1}
