"""What the runner prints and records: progress lines, the summary table, the platform, the gallery's
claims section; and a real run that shows no kernel-transport warning."""

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from reprobust import run

FIXTURES = Path(__file__).parent / "fixtures"


def test_progress_board_in_a_log_prints_a_heartbeat_not_every_cell():
    out = io.StringIO()
    board = run.ProgressBoard(out, interactive=False, heartbeat_s=3600)
    board.start("05_x", "[1/2] 05_x (smoke)")
    for i in range(10):
        board.cell("05_x", i, 10)
        board.tick()
    board.finish("05_x", "[1/2] 05_x: ok in 1.0 s, 3 outputs")
    lines = out.getvalue().splitlines()
    assert lines == ["[1/2] 05_x (smoke): starting kernel, 0 s", "[1/2] 05_x: ok in 1.0 s, 3 outputs"]
    out = io.StringIO()
    board = run.ProgressBoard(out, interactive=False, heartbeat_s=0)
    board.start("05_x", "05_x")
    board.cell("05_x", 6, 20)
    board.tick()
    assert out.getvalue().splitlines()[-1].startswith("05_x: cell 7/20, ")


def test_progress_board_on_a_terminal_redraws_one_line_per_notebook_in_place():
    out = io.StringIO()
    board = run.ProgressBoard(out, interactive=True)
    board.start("a", "a")
    board.start("b", "b")
    board.cell("b", 2, 9)
    board.tick()
    text = out.getvalue()
    # the last frame: both live lines, after moving the cursor up over the previous two
    assert text.endswith("\x1b[2F\x1b[Ja: starting kernel, 0 s\nb: cell 3/9, 0 s\n")
    board.finish("a", "a: ok")
    assert out.getvalue().endswith("\x1b[2F\x1b[Ja: ok\nb: cell 3/9, 0 s\n")


def _claims(path, **cols):
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


def test_verdicts_are_counted_by_kind_whatever_their_vocabulary(tmp_path):
    new = _claims(tmp_path / "new.csv", id=["a", "b", "c", "d"], kind=["claim", "claim", "check", "claim"],
                  verdict=["supported", "contradicted", "supported", "not testable here"])
    assert run.count_verdicts(new) == {"claim": Counter({"supported": 1, "contradicted": 1, "not testable here": 1}),
                                       "check": Counter({"supported": 1})}
    old = _claims(tmp_path / "old.csv", claim=["x", "y", "z"], verdict=["not supported", "supported", "not supported"])
    assert run.count_verdicts(old) == {"": Counter({"not supported": 2, "supported": 1})}
    results = [{"name": "01_a", "ok": True, "seconds": 12.34, "figures": 4},
               {"name": "02_b", "ok": False, "seconds": 3.0, "figures": 0}]
    (tmp_path / "01_a").mkdir()
    (tmp_path / "01_a" / "claims.csv").write_bytes(new.read_bytes())
    rows = run.summarize(results, tmp_path)
    assert [r["figures"] for r in rows] == [4, None] and rows[1]["verdicts"] == {}
    text = run.format_summary(rows, "smoke", tmp_path)
    lines = text.splitlines()
    assert lines[1].split() == ["notebook", "status", "wall", "figures", "verdicts"]
    assert lines[2].split()[:5] == ["01_a", "ok", "12.3", "s", "4"]
    assert lines[2].endswith("claim: 1 supported, 1 contradicted, 1 not testable here; check: 1 supported")
    assert lines[3].split() == ["02_b", "FAILED", "3.0", "s", "-", "-"]


def test_gallery_claims_show_stability_and_mark_fragile_rows(tmp_path):
    path = _claims(tmp_path / "claims.csv", id=["c1", "c2"], kind=["claim", "check"], claim=["A", "B"],
                   statistic=["r", "tost"], estimate=[0.5, 0.01], ci_low=[0.2, -0.02], ci_high=[0.8, 0.04],
                   n=[5, 5], verdict=["supported", "supported"], stability=[1.0, 0.8])
    md = run.gallery_claims(path)
    rows = [line for line in md.splitlines() if line.startswith("| c")]
    assert rows[0].endswith("| supported | 1.00 |") and "0.5 [0.2, 0.8]" in rows[0]
    assert rows[1].endswith("| supported | 0.80 **fragile** |")
    assert "1 of 2 verdicts are **fragile**" in md


def test_platform_records_threads_blas_and_versions(monkeypatch):
    import importlib.metadata

    from threadpoolctl import threadpool_info

    monkeypatch.setenv("REPROBUST_THREADS", "3")
    info = run.platform_info()
    assert info["torch_threads"] == 3 and info["cpu_count"] >= 1 and info["cpu_model"]
    assert info["libraries"]["torch"] == importlib.metadata.version("torch")
    loaded = {(p["internal_api"], p["version"]) for p in threadpool_info() if p["user_api"] == "blas"}
    assert {(b["internal_api"], b["version"]) for b in info["blas"]} == loaded
    json.dumps(info)
    # the manifest records the common platform and names the notebooks published from another one
    other = {**info, "cpu_model": "elsewhere"}
    m = run._manifest_platform({"01": info, "02": info, "03": other})
    assert m["platform"] == info and m["platform_differs"] == {"03": other}
    assert run._manifest_platform({"01": info}) == {"platform": info}


@pytest.mark.slow
def test_parallel_run_is_quiet_and_ends_with_the_summary(tmp_path):
    out = tmp_path / "figs"
    res = subprocess.run([sys.executable, "-m", "reprobust.run", "--notebooks-dir", str(FIXTURES), "--profile", "smoke",
                          "--jobs", "2", "--output-root", str(out), "--cache-dir", str(tmp_path / "c")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stdout + res.stderr            # 02_nofigure fails by design
    assert "WARNING" not in res.stderr and "without encryption" not in res.stdout + res.stderr, res.stderr
    lines = res.stdout.splitlines()
    assert "[1/2] 01_demo: ok in" in res.stdout and "[2/2] 02_nofigure: FAILED" in res.stdout
    head = lines.index(next(line for line in lines if line.startswith("summary (smoke profile")))
    table = lines[head + 1:head + 4]
    assert table[0].split() == ["notebook", "status", "wall", "figures", "verdicts"]
    assert table[1].split()[:2] == ["01_demo", "ok"] and table[1].split()[4] == "1"
    verdicts = pd.read_csv(out / "01_demo" / "claims.csv")["verdict"].value_counts()
    assert table[1].endswith(", ".join(f"{n} {v}" for v, n in verdicts.items()))
    assert table[2].split()[:2] == ["02_nofigure", "FAILED"]
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["platform"]["torch_threads"] == run.platform_info()["torch_threads"]
    assert manifest["platform"] == json.loads((out / "01_demo" / "_run.json").read_text())["platform"]
