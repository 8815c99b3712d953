"""The plotting helpers and the headless runner (on two fixture notebooks in tests/fixtures)."""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from reprobust import plotting, run
from reprobust.context import setup_notebook

FIXTURES = Path(__file__).parent / "fixtures"


def test_figures_are_byte_stable_and_registered(tmp_path):
    def draw():
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [2, 1, 3], label="a")
        ax.legend()
        return fig

    plotting.apply_style()
    plotting.save_figure(draw(), "f", tmp_path / "a", caption="c")
    plotting.save_figure(draw(), "f", tmp_path / "b", caption="c")
    for ext in ("png", "pdf"):
        assert (tmp_path / "a" / f"f.{ext}").read_bytes() == (tmp_path / "b" / f"f.{ext}").read_bytes()
    index = json.loads((tmp_path / "a" / plotting.INDEX_FILE).read_text())
    assert index == [{"name": "f", "kind": "figure", "files": ["f.png"], "caption": "c"}]
    plt.close("all")


def test_tables_as_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"a": [1.23456789, float("nan")], "b": ["x|y", None]})
    plotting.save_table(df, "t", tmp_path)
    md = (tmp_path / "t.md").read_text().splitlines()
    assert md[0] == "| a | b |" and md[2] == "| 1.23 | x\\|y |" and md[3] == "|  |  |"
    assert pd.read_csv(tmp_path / "t.csv").shape == (2, 2)


def test_context_settings_and_smoke_output_folder(tmp_path):
    ctx = setup_notebook("99_x", profile="smoke", cache_dir=tmp_path)
    assert "build" in ctx.output_dir.parts and "figures" not in ctx.output_dir.parts
    s = ctx.settings({"smoke": {"epochs": 1, "n": 5}, "quick": {"epochs": 9, "n": 50}}, epochs=None, n=7)
    assert s == {"epochs": 1, "n": 7}
    with pytest.raises(ValueError, match="unknown setting 'lr'"):
        ctx.settings({"smoke": {"epochs": 1}}, lr=0.1)
    # the generic `overrides` parameter: applied after the named parameters, dicts merged key by key
    per = {"smoke": {"epochs": 1, "model": {"name": "wide_resnet", "depth": 28, "widen": 4}}}
    s = ctx.settings(per, overrides={"model": {"widen": 1}, "epochs": 2}, epochs=5)
    assert s == {"epochs": 2, "model": {"name": "wide_resnet", "depth": 28, "widen": 1}}
    assert per["smoke"]["model"]["widen"] == 4  # the notebook's own dict is not modified
    with pytest.raises(ValueError, match="unknown setting 'widen'"):
        ctx.settings(per, overrides={"widen": 1})
    with pytest.raises(ValueError, match="valid choices: full, quick, smoke"):
        setup_notebook("99_x", profile="medium")
    with pytest.raises(ValueError, match="does not exist"):
        setup_notebook("99_x", profile="smoke", data_dir=tmp_path / "missing")


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "reprobust.run", "--notebooks-dir", str(FIXTURES), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_runner_publishes_outputs_manifest_and_gallery_and_keeps_them_on_failure(tmp_path):
    out = tmp_path / "figs"
    res = _run("--profile", "smoke", "--only", "01", "--output-root", str(out), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 0, res.stdout + res.stderr
    folder = out / "01_demo"
    assert {p.name for p in folder.iterdir()} >= {"squares.png", "squares.pdf", "claims.csv", "claims.md", "_run.json"}
    manifest = json.loads((out / "MANIFEST.json").read_text())
    files = {e["file"]: e for e in manifest["files"]}
    assert set(files) == {"01_demo/squares.png", "01_demo/claims.csv", "01_demo/claims.md",
                          "01_demo/claims_replicates.csv", "01_demo/claims_replicates.md"}
    import hashlib
    entry = files["01_demo/squares.png"]
    assert entry["sha256"] == hashlib.sha256((folder / "squares.png").read_bytes()).hexdigest()
    assert entry["profile"] == "smoke" and entry["seed"] == 0 and entry["parameters"]["fail"] is False
    assert entry["parameters"]["data_dir"] is None and "cache_dir" not in entry["parameters"]
    assert "supported" in (out / "README.md").read_text() and "![squares]" in (out / "README.md").read_text()
    before = (folder / "squares.png").read_bytes()

    # a failing run reports the cell, exits 1 and leaves the published outputs as they were
    res = _run("--profile", "smoke", "--only", "01", "--output-root", str(out), "-p", "fail", "true",
               "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 1
    assert "FAILED" in res.stdout and "AssertionError: asked to fail" in res.stdout
    assert (folder / "squares.png").read_bytes() == before
    assert json.loads((folder / "_run.json").read_text())["parameters"]["fail"] is False

    # a notebook that saves no figure fails; the other one still runs (runner continues)
    res = _run("--profile", "smoke", "--output-root", str(out), "--cache-dir", str(tmp_path / "c"))
    assert res.returncode == 1
    assert "01_demo: ok" in res.stdout and "02_nofigure: FAILED" in res.stdout and "saved no figure" in res.stdout
    assert not (out / "02_nofigure").exists()


@pytest.mark.parametrize("args,msg", [
    (["--only", "42"], "unknown notebook '42'; valid choices: 01_demo, 02_nofigure"),
    (["--profile", "huge"], "unknown profile 'huge'; valid choices: smoke, quick, full"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--data-dir", "/nonexistent/dir"], "does not exist"),
    (["--only", "01", "-p", "bogus", "1"], "unknown parameter 'bogus' for notebook 01_demo; valid choices: fail"),
    (["-p", "bogus", "1"], "unknown parameter 'bogus' for the selected notebooks; valid choices: fail"),
    (["--jobs", "0"], "--jobs=0 is out of range"),
])
def test_runner_bad_input_is_one_line_and_exit_2(tmp_path, args, msg):
    res = _run("--output-root", str(tmp_path / "o"), *args)
    assert res.returncode == 2
    assert msg in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_parameter_values_are_typed():
    assert run.parse_value("5") == 5 and run.parse_value("0.5") == 0.5
    assert run.parse_value("[1, 2]") == [1, 2] and run.parse_value("null") is None and run.parse_value("abc") == "abc"


def test_list_shows_parameters():
    res = _run("--list")
    assert res.returncode == 0 and "01_demo: " in res.stdout and "fail=False" in res.stdout
