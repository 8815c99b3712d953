"""End to end: each notebook's ``full`` profile (the paper's set-up) on CPU, shrunk only in size.

One fixture per notebook in ``tests/fixtures/full_tiny/<notebook>.json``::

    {"data": {"cifar10": {"n_train": 64, "n_test": 32}, "cifar10c": {"n_per_severity": 4}},
     "parameters": {"overrides": {"epochs": 1, "model": {"widen": 1}}, "n_seeds": 2},
     "expect_models": ["wide_resnet"]}

``data`` maps a data set to ``reprobust.synthetic_data.write_<name>(data_dir, **kwargs)`` (tiny learnable
data in the real on-disk layout); ``parameters`` are the notebook's ``-p`` parameters (``overrides``, the
generic dict of profile settings, shrinks epochs, image counts, widths and attack budgets); the model
*names* and data sets stay the paper's, and ``expect_models`` lists registry names that must have been
trained. The run goes through the headless runner in its own process, as ``./run_all.sh --profile full``.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from reprobust import synthetic_data
from reprobust.claims import VERDICTS, check_claims_table
from reprobust.models import MODELS
from reprobust.paths import NOTEBOOKS_DIR
from reprobust.plan import FULL_SETTINGS

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "full_tiny").glob("*.json"))
#: cache kinds whose configuration is a whole training spec (``data``, ``model``, ``train``, ``seed``)
MODEL_KINDS = ("model", "checkpoints")


def _fixture(path: Path) -> dict:
    spec = json.loads(path.read_text())
    missing = {"data", "parameters", "expect_models"} - set(spec)
    assert not missing, f"{path.name}: missing keys {sorted(missing)}"
    return spec


def _trained(cache_dir: Path) -> set:
    """``(model name, data set)`` of every model the run trained, read from the cache's metadata (each
    cached model keeps its full spec)."""
    out = set()
    for kind in MODEL_KINDS:
        for meta in (cache_dir / kind).glob("*.json"):
            cfg = json.loads(meta.read_text())["config"]
            out.add((cfg["model"]["name"], cfg["data"]["name"]))
    return out


def test_there_is_a_fixture_for_each_paper_notebook():
    names = {p.stem for p in FIXTURES}
    assert names == {p.stem for p in NOTEBOOKS_DIR.glob("0*_*.py")}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_is_well_formed(path):
    """Cheap checks before the slow run: a notebook that exists, data writers that exist, overrides that are
    settings of the notebook's full profile, expected models that are registry names."""
    spec = _fixture(path)
    assert (NOTEBOOKS_DIR / f"{path.stem}.py").exists(), f"{path.name}: no notebook {path.stem}"
    for name in spec["data"]:
        assert hasattr(synthetic_data, f"write_{name}"), f"{path.name}: no writer write_{name}"
    full = FULL_SETTINGS.get(path.stem, {})
    # a notebook with several paper set-ups (04) merges the chosen one's settings into its profile
    known = set(full) | {k for setup in full.get("setups", {}).values() for k in setup}
    unknown = set(spec["parameters"].get("overrides", {})) - known
    assert not unknown, f"{path.name}: overrides {sorted(unknown)} are not full-profile settings of {path.stem}"
    assert spec["expect_models"] and set(spec["expect_models"]) <= set(MODELS), spec["expect_models"]


@pytest.mark.slow
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_full_profile_runs_end_to_end(path, tmp_path):
    spec = _fixture(path)
    number = path.stem.split("_")[0]
    data_dir, cache_dir, out = tmp_path / "data", tmp_path / "cache", tmp_path / "figures"
    data_dir.mkdir()
    for name, kwargs in spec["data"].items():
        getattr(synthetic_data, f"write_{name}")(data_dir, **kwargs)
    cmd = [sys.executable, "-m", "reprobust.run", "--profile", "full", "--only", number, "--device", "cpu",
           "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--output-root", str(out)]
    for name, value in spec["parameters"].items():
        cmd += ["-p", name, json.dumps(value)]  # JSON is valid YAML, which is how the runner reads values
    env = {**os.environ, "REPROBUST_THREADS": "1"}  # the budget: ≤ 2 min per notebook on one CPU thread
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    print(f"{path.stem}: full profile (tiny) in {time.perf_counter() - t:.1f} s")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]

    folder = out / path.stem
    run = json.loads((folder / "_run.json").read_text())
    assert run["profile"] == "full" and run["parameters"]["overrides"] == spec["parameters"].get("overrides")
    assert any(folder.glob("*.png")) and any(folder.glob("*.pdf"))
    tables = {p.stem for p in folder.glob("*.csv")} - {"claims", "claims_replicates"}
    assert tables, "no table besides the claims"
    claims = pd.read_csv(folder / "claims.csv")
    assert len(claims) and set(claims["verdict"]) <= set(VERDICTS)
    check_claims_table(claims)
    assert set(pd.read_csv(folder / "claims_replicates.csv")["id"]) == set(claims["id"])

    # The paper's path ran: the paper's architectures were trained, on the fixture's (paper's) data sets.
    trained = _trained(cache_dir)
    assert set(spec["expect_models"]) <= {m for m, _ in trained}, trained
    assert {d for _, d in trained} <= set(spec["data"]), trained
