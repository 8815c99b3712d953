"""Benchmark: the grid back-ends of reprobust.dispatch on this machine.

1. A quick-profile grid — notebook 01's model set of one architecture (the full model and the ten
   leave-one-out models, digits, 600 training images, 6 epochs, Adam; 11 models per seed, 2 seeds) — trained cold with
   ``inline`` (torch's default thread count, and one thread), and ``processes`` (the default: the
   threads shared among the workers, one each here). ``--oversubscribed`` adds ``processes`` with the
   inline thread count per worker (byte-identical to inline, but more threads than cores). Prints
   wall times, the ratio to inline, and whether the cached model files equal inline's byte for byte.
2. With ``--slurm``: the SLURM dispatch overhead per grid point — a grid of trivial points (each job
   starts Python, unpickles the task, imports the package, returns) submitted as one job array through
   submitit to a running SLURM (``$SLURM_CONF``), or to a throw-away single-node SLURM on localhost
   started for the run (``tests/local_slurm.py``; root only).

Run with ``python benchmarks/bench_dispatch.py [--slurm]``. On a shared machine the numbers are
inflated by contention: every spawned worker or job pays the ~2-10 s import of torch.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from reprobust.cache import Cache
from reprobust.dispatch import run_grid, train_grid
from reprobust.paths import REPO_ROOT


def grid_specs(arch: str, n_models: int):
    train = dict(epochs=6, batch_size=64, lr=2e-3, optimizer="adam", weight_decay=0.0, schedule="cosine")
    classes = [None] + list(range(10))
    return [{"data": {"name": "digits", "n_train": 600, "exclude_class": classes[k % 11]},
             "model": {"name": arch}, "train": train, "seed": k // 11} for k in range(n_models)]


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*.pt")):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def trivial_point(cfg):
    """A grid point that does no work: what is left is the dispatch overhead."""
    return cfg


def bench_backends(args, work: Path):
    specs = grid_specs(args.arch, args.n_models)
    # Warm-up (first data load, first model build), so that no row pays the one-off costs.
    train_grid(specs[:1], executor="inline", cache=Cache(work / "warmup"), load=False)
    rows = []
    n = torch.get_num_threads()
    per_worker = max(1, n // args.jobs)
    runs = [(f"inline, {n} threads", "inline", n), ("inline, 1 thread", "inline", 1),
            (f"processes (default), {per_worker} thread/worker", "processes", None)]
    if args.oversubscribed:
        runs.append((f"processes, {n} threads/worker", "processes", n))
    for label, executor, threads in runs:
        cache = Cache(work / str(len(rows)))
        t0 = time.perf_counter()
        if executor == "inline":
            torch.set_num_threads(threads)
            train_grid(specs, executor="inline", cache=cache, load=False)
            torch.set_num_threads(n)
        else:
            train_grid(specs, executor="processes", cache=cache, jobs=args.jobs, threads=threads, load=False,
                       progress=False)
        rows.append((label, time.perf_counter() - t0, digest(cache.root)))
    base = rows[0][1]
    print(f"\n{len(specs)} {args.arch} models (notebook 01 quick grid, {len(specs) // 11} seeds), {args.jobs} workers, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads inline")
    print(f"{'back-end':<42} {'wall s':>8} {'inline/this':>12}  same bytes as inline ({n} | 1 threads)")
    for label, sec, dig in rows:
        print(f"{label:<42} {sec:8.1f} {base / sec:12.2f}  {dig == rows[0][2]} | {dig == rows[1][2]}")


def bench_slurm(args, work: Path):
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    cluster = None
    if subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        from local_slurm import LocalSlurm, SlurmUnavailable

        try:
            cluster = LocalSlurm(work / "slurm").start()
        except SlurmUnavailable as e:
            print(f"\nSLURM overhead: skipped ({e})")
            return
    try:
        cfg = {"allow_local_paths": True, "cpus_per_task": 1, "mem_gb": 0.5, "timeout_min": 10,
               "array_parallelism": args.slurm_parallel, "poll_interval_s": 0.5}
        n = args.slurm_points
        t0 = time.perf_counter()
        out = run_grid(trivial_point, [{"i": i} for i in range(n)], executor="slurm", cache_dir=work / "slurm-cache",
                       cluster_config=cfg, progress=False, name="overhead")
        wall = time.perf_counter() - t0
        assert out == [{"i": i} for i in range(n)]
        print(f"\nSLURM dispatch overhead ({'local single-node cluster' if cluster else 'running cluster'}, "
              f"{n} trivial points, one job array, {args.slurm_parallel} tasks at once)")
        print(f"{'wall s':>8} {'s per point (wall / n)':>24} {'s per job (one slot)':>22}")
        print(f"{wall:8.1f} {wall / n:24.2f} {wall * args.slurm_parallel / n:22.2f}")
    finally:
        if cluster is not None:
            cluster.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="lenet")
    p.add_argument("--n-models", type=int, default=22, help="11 per seed (full + 10 leave-one-out)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument("--oversubscribed", action="store_true",
                   help="also run processes with the inline thread count per worker")
    p.add_argument("--slurm", action="store_true", help="also measure the SLURM dispatch overhead")
    p.add_argument("--slurm-only", action="store_true")
    p.add_argument("--slurm-points", type=int, default=8)
    p.add_argument("--slurm-parallel", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    try:
        if not args.slurm_only:
            bench_backends(args, work)
        if args.slurm or args.slurm_only:
            bench_slurm(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
