"""Comparing a rerun with the committed results (reprobust.compare, runner --compare-to-committed)."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reprobust import compare

FIXTURES = Path(__file__).parent / "fixtures"


def test_relative_difference_closed_forms():
    assert compare.relative_difference(-0.509, -0.507) == pytest.approx(0.002 / 0.509)
    assert compare.relative_difference(2.0, 1.0) == 0.5 == compare.relative_difference(1.0, 2.0)
    assert compare.relative_difference(1.0, -1.0) == 2.0          # sign flip
    assert compare.relative_difference(0.0, 0.0) == 0.0
    assert compare.relative_difference(float("nan"), float("nan")) == 0.0
    assert compare.relative_difference(1.0, float("nan")) == math.inf


def _write(path, df):
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def test_tables_compare_every_number_and_locate_the_largest_difference(tmp_path):
    ref = pd.DataFrame({"model": ["a", "b", "c"], "acc": [0.9, 0.8, 0.5], "n": [10, 10, 10]})
    new = ref.copy()
    new.loc[1, "acc"] = 0.81
    new.loc[2, "acc"] = 0.5000001
    _write(tmp_path / "ref.csv", ref)
    _write(tmp_path / "new.csv", new)
    res = compare.compare_tables(tmp_path / "ref.csv", tmp_path / "new.csv")
    assert res["numbers"] == 6 and res["differ"] == 2 and res["note"] == ""   # 'model' is not a number
    assert res["max_rel_diff"] == pytest.approx(0.01 / 0.81)
    assert res["worst"] == {"row": 1, "column": "acc", "committed": 0.8, "rerun": 0.81}


def test_tables_with_ids_are_aligned_by_id_not_position(tmp_path):
    ref = pd.DataFrame({"id": ["x", "y"], "estimate": [1.0, 2.0]})
    _write(tmp_path / "ref.csv", ref)
    _write(tmp_path / "new.csv", ref.iloc[::-1])
    res = compare.compare_tables(tmp_path / "ref.csv", tmp_path / "new.csv")
    assert res["numbers"] == 2 and res["differ"] == 0 and res["max_rel_diff"] == 0.0
    _write(tmp_path / "short.csv", ref.iloc[:1])
    res = compare.compare_tables(tmp_path / "ref.csv", tmp_path / "short.csv")
    assert res["numbers"] == 1 and "2 committed, 1 rerun" in res["note"]


def test_changed_verdicts_by_id_or_by_claim_and_statistic(tmp_path):
    ref = pd.DataFrame({"id": ["c1", "c2", "k1"], "claim": ["A", "B", "C"], "statistic": ["r", "r", "d"],
                        "verdict": ["supported", "inconclusive", "supported"]})
    new = ref.copy()
    new.loc[1, "verdict"] = "contradicted"
    _write(tmp_path / "ref.csv", ref)
    _write(tmp_path / "new.csv", new.iloc[[2, 1, 0]])
    res = compare.compare_verdicts(tmp_path / "ref.csv", tmp_path / "new.csv")
    assert res == {"rows": 3, "changed": [{"key": "c2", "committed": "inconclusive", "rerun": "contradicted"}]}
    # older tables without ids: keyed by (claim, statistic); a vanished row is a change too
    _write(tmp_path / "ref2.csv", ref.drop(columns="id"))
    _write(tmp_path / "new2.csv", new.drop(columns="id").iloc[:2])
    res = compare.compare_verdicts(tmp_path / "ref2.csv", tmp_path / "new2.csv")
    assert res["changed"] == [{"key": "B | r", "committed": "inconclusive", "rerun": "contradicted"},
                              {"key": "C | d", "committed": "supported", "rerun": None}]


def _notebook_folder(folder, claims, table, platform):
    folder.mkdir(parents=True)
    _write(folder / "claims.csv", claims)
    _write(folder / "metrics.csv", table)
    (folder / "fig.png").write_bytes(b"\x89PNG same bytes")
    (folder / "_run.json").write_text(json.dumps({"profile": "quick", "platform": platform}))


def test_folders_report_files_numbers_verdicts_and_platform(tmp_path):
    claims = pd.DataFrame({"id": ["c1", "c2"], "estimate": [-0.509, 0.3], "verdict": ["supported", "inconclusive"]})
    table = pd.DataFrame({"layer": [1, 2], "cka": [0.25, 0.5]})
    plat = {"cpu_model": "A", "torch_threads": 1, "libraries": {"torch": "2.14.1"}}
    _notebook_folder(tmp_path / "committed" / "01_x", claims, table, plat)
    rerun_claims = claims.copy()
    rerun_claims.loc[0, "estimate"] = -0.507
    rerun_claims.loc[1, "verdict"] = "supported"
    _notebook_folder(tmp_path / "rerun" / "01_x", rerun_claims, table,
                     {**plat, "cpu_model": "B", "libraries": {"torch": "2.14.2"}})
    report = compare.compare_folders(tmp_path / "committed", tmp_path / "rerun", ["01_x"])
    nb = report["notebooks"]["01_x"]
    assert nb["files"] == {"identical": 2, "compared": 3, "missing": [], "machine_dependent": []}  # fig.png, metrics.csv
    assert nb["max_rel_diff"] == pytest.approx(0.002 / 0.509)
    assert nb["worst"] == {"table": "claims", "row": "c1", "column": "estimate", "committed": -0.509, "rerun": -0.507}
    assert nb["tables"]["metrics"]["differ"] == 0
    assert nb["verdicts"]["changed"] == [{"key": "c2", "committed": "inconclusive", "rerun": "supported"}]
    assert report["platform"]["differs"] == {"cpu_model": ["A", "B"], "libraries.torch": ["2.14.1", "2.14.2"]}
    text = compare.format_report(report, "figures", "build/compare/quick")
    assert "01_x: 2/3 files byte-identical; largest relative difference 0.00393" in text
    assert "verdict changed: c2: inconclusive -> supported" in text and "cpu_model 'A' -> 'B'" in text
    json.dumps(report)   # serialisable as COMPARISON.json


def test_machine_dependent_tables_are_listed_and_not_compared(tmp_path):
    from reprobust.plotting import save_table

    for side, ips in (("committed", 1000.0), ("rerun", 700.0)):  # the same table, timed on two machines
        folder = tmp_path / side / "05_x"
        folder.mkdir(parents=True)
        save_table(pd.DataFrame({"config": ["a"], "img_per_s": [ips]}), "throughput", folder, machine_dependent=True)
        save_table(pd.DataFrame({"config": ["a"], "acc": [0.5]}), "results", folder)
    index = json.loads((tmp_path / "committed" / "05_x" / "_outputs.json").read_text())
    assert [e.get("machine_dependent", False) for e in index] == [True, False]  # only the marked table
    nb = compare.compare_notebook(tmp_path / "committed" / "05_x", tmp_path / "rerun" / "05_x")
    assert nb["files"]["machine_dependent"] == ["throughput.csv", "throughput.md"]
    assert nb["files"]["compared"] == 2 and nb["files"]["identical"] == 2  # results.csv/.md only
    assert set(nb["tables"]) == {"results"} and nb["max_rel_diff"] == 0.0
    assert "machine-dependent, not compared: throughput.csv, throughput.md" in compare.format_report(
        {"platform": {"differs": {}}, "notebooks": {"05_x": nb}}, "figures", "rerun")


def test_reference_must_hold_the_notebooks_of_the_same_profile(tmp_path):
    (tmp_path / "01_x").mkdir()
    (tmp_path / "01_x" / "_run.json").write_text(json.dumps({"profile": "quick"}))
    compare.check_reference(tmp_path, "quick", ["01_x"])
    with pytest.raises(ValueError, match="of profile 'quick', not 'smoke'; rerun with --profile quick"):
        compare.check_reference(tmp_path, "smoke", ["01_x"])
    with pytest.raises(ValueError, match="no committed results for 02_y .*; valid choices: 01_x"):
        compare.check_reference(tmp_path, "quick", ["02_y"])


def _run(*args):
    return subprocess.run([sys.executable, "-m", "reprobust.run", "--notebooks-dir", str(FIXTURES), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_compare_to_committed_reruns_and_reports_a_changed_number_and_a_flipped_verdict(tmp_path):
    # a real run of the fixture notebook stands for the committed results ...
    res = _run("--profile", "smoke", "--only", "01", "--output-root", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stdout + res.stderr
    committed = tmp_path / "committed"
    shutil.copytree(tmp_path / "a", committed)
    # ... in which one number and one verdict are changed by hand
    claims = pd.read_csv(committed / "01_demo" / "claims.csv")
    value_col = "estimate"
    original = float(claims.loc[0, value_col])
    claims.loc[0, value_col] = original * 1.25
    old_verdict = claims.loc[0, "verdict"]
    claims.loc[0, "verdict"] = "inconclusive" if old_verdict != "inconclusive" else "supported"
    claims.to_csv(committed / "01_demo" / "claims.csv", index=False)

    res = _run("--profile", "smoke", "--only", "01", "--compare-to-committed", "--committed-dir", str(committed),
               "--output-root", str(tmp_path / "rerun"), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "rerun" / "COMPARISON.json").read_text())
    nb = report["notebooks"]["01_demo"]
    # the rerun reproduces everything else exactly (same platform, same threads)
    assert nb["tables"]["claims"]["differ"] == 1
    assert nb["max_rel_diff"] == pytest.approx(compare.relative_difference(original * 1.25, original), rel=1e-5)
    assert nb["files"]["identical"] == nb["files"]["compared"] - 1
    assert len(nb["verdicts"]["changed"]) == 1 and nb["verdicts"]["changed"][0]["rerun"] == old_verdict
    assert report["platform"]["differs"] == {}
    assert "1 of 1 verdicts changed" in res.stdout and f"-> {old_verdict}" in res.stdout
    assert "platform: the same as the committed run's" in res.stdout

    # a committed folder of another profile is refused before anything runs
    res = _run("--profile", "quick", "--only", "01", "--compare-to-committed", "--committed-dir", str(committed),
               "--output-root", str(tmp_path / "other"))
    assert res.returncode == 2 and "of profile 'smoke', not 'quick'" in res.stderr
    assert not (tmp_path / "other").exists()
