"""Where the time of the default run goes: each notebook on the quick profile, cold and warm, per phase.

Runs every notebook (or ``--only``) through the headless runner twice with a fresh cache folder —
cold (trains everything), then warm (everything from the cache) — one notebook at a time with one
torch thread, and reads papermill's per-cell durations from the executed notebook to sum the time
spent under each markdown heading of the notebook (its phases: training, attacks, metrics, plots).

    python benchmarks/bench_quick_profile.py [--only 03 05] [--profile quick] [--top 6]

Prints one table per notebook (phase, cold s, warm s) and a summary (notebook, cold s, warm s). The
budget of issue 12: all five notebooks cold ≤ 15 min and warm ≤ 90 s with ``./run_all.sh`` (two
notebooks at a time on a 2-core machine), i.e. the sum of the cold column ≤ ~30 min of single-core time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def phases(executed: Path) -> dict[str, float]:
    """Seconds per phase: papermill cell durations summed under the latest markdown heading."""
    nb = json.loads(executed.read_text())
    out: dict[str, float] = {}
    heading = "(set-up)"
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            lines = [ln.lstrip("#").strip() for ln in "".join(cell["source"]).splitlines() if ln.startswith("#")]
            if lines:
                heading = lines[0][:60]
            continue
        dur = (cell.get("metadata", {}).get("papermill", {}) or {}).get("duration") or 0.0
        out[heading] = out.get(heading, 0.0) + float(dur)
    return out


def run_once(number: str, profile: str, cache: Path, out: Path) -> tuple[float, dict]:
    env = dict(os.environ, REPROBUST_THREADS="1", MPLBACKEND="Agg", PYTHONHASHSEED="0")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "reprobust.run", "--profile", profile, "--only", number,
                          "--jobs", "1", "--cache-dir", str(cache), "--output-root", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"notebook {number} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    (executed,) = [p for p in (REPO / "build" / "notebooks").glob(f"{number}_*.ipynb")]
    return wall, phases(executed)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=["01", "02", "03", "04", "05"])
    p.add_argument("--profile", default="quick")
    p.add_argument("--top", type=int, default=8, help="phases shown per notebook (largest cold first)")
    args = p.parse_args()
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for number in args.only:
            cache, out = Path(tmp) / f"cache{number}", Path(tmp) / f"out{number}"
            cold, ph_cold = run_once(number, args.profile, cache, out)
            warm, ph_warm = run_once(number, args.profile, cache, out)
            summary.append((number, cold, warm))
            print(f"\n{number} ({args.profile}): cold {cold:.1f} s, warm {warm:.1f} s (wall, runner start-up included)")
            print(f"  {'phase':<62} {'cold s':>8} {'warm s':>8}")
            for name, secs in sorted(ph_cold.items(), key=lambda kv: -kv[1])[: args.top]:
                print(f"  {name:<62} {secs:8.1f} {ph_warm.get(name, 0.0):8.1f}")
    print(f"\n{'notebook':<10} {'cold s':>8} {'warm s':>8}")
    for number, cold, warm in summary:
        print(f"{number:<10} {cold:8.1f} {warm:8.1f}")
    print(f"{'sum':<10} {sum(c for _, c, _ in summary):8.1f} {sum(w for _, _, w in summary):8.1f}"
          f"   (single-core time; ./run_all.sh runs two notebooks at a time)")


if __name__ == "__main__":
    main()
