"""Benchmark for notebook 04: wall time of the α × seed training grid (quick profile settings) and
the rate of CIFAR-10-C-style corruption generation.

    python benchmarks/bench_selectivity.py                 # quick grid: 7 α × 1 seed, 8 epochs
    python benchmarks/bench_selectivity.py --seeds 2 --epochs 4

Nothing is cached here: every model is trained from scratch, so the numbers are the cold cost.
``reprobust.train`` has no ensemble (``torch.func``) trainer, so only sequential training is timed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reprobust import corruptions as corr
from reprobust.data import load_dataset
from reprobust.metrics import selectivity as sel  # noqa: F401 — registers the "class_selectivity" regulariser
from reprobust.models import build_model
from reprobust.train import fit

QUICK_ALPHAS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
QUICK_MODEL = dict(depth=8, width=8, strides="222")


def bench_grid(alphas, seeds: int, epochs: int) -> list[dict]:
    ds = load_dataset("digits", image_size=32)
    rows = []
    for alpha in alphas:
        for s in range(seeds):
            torch.manual_seed(s)
            model = build_model("resnet", **ds.model_kwargs(), **QUICK_MODEL)
            t0 = time.perf_counter()
            fit(model, ds.x_train, ds.y_train, epochs=epochs, batch_size=128, lr=0.05, seed=s, stratified=True,
                regularizer={"name": "class_selectivity", "alpha": alpha})
            rows.append(dict(alpha=alpha, seed=s, seconds=time.perf_counter() - t0))
    return rows


def bench_corruptions(n_images: int, repeats: int = 1) -> list[dict]:
    ds = load_dataset("digits", image_size=32)
    grey = ds.x_test[:n_images].numpy()
    colour = np.repeat(grey, 3, axis=1)
    rows = []
    for name in corr.CORRUPTIONS:
        x = colour if name in corr.COLOUR_ONLY else grey
        t0 = time.perf_counter()
        for r in range(repeats):
            for severity in corr.SEVERITIES:
                corr.corrupt_uint8(x, name, severity, seed=r)
        seconds = time.perf_counter() - t0
        rows.append(dict(corruption=name, images=len(x) * 5 * repeats, seconds=seconds,
                         rate=len(x) * 5 * repeats / seconds))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n-images", type=int, default=300)
    p.add_argument("--skip-grid", action="store_true")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    print(f"\nCorruption generation ({args.n_images} digits at 32×32, all 5 severities)")
    rows = bench_corruptions(args.n_images)
    print(f"{'corruption':<20}{'images':>8}{'seconds':>10}{'images/s':>12}")
    for r in rows:
        print(f"{r['corruption']:<20}{r['images']:>8}{r['seconds']:>10.2f}{r['rate']:>12.0f}")
    total_imgs = sum(r["images"] for r in rows)
    total_s = sum(r["seconds"] for r in rows)
    print(f"{'all':<20}{total_imgs:>8}{total_s:>10.2f}{total_imgs / total_s:>12.0f}")

    if not args.skip_grid:
        print(f"\nα × seed grid: {len(QUICK_ALPHAS)} α × {args.seeds} seeds, ResNet-8 {QUICK_MODEL}, "
              f"{args.epochs} epochs, 1,257 digits at 32×32, sequential")
        rows = bench_grid(QUICK_ALPHAS, args.seeds, args.epochs)
        print(f"{'alpha':>6}{'seed':>6}{'seconds':>10}")
        for r in rows:
            print(f"{r['alpha']:>6g}{r['seed']:>6}{r['seconds']:>10.2f}")
        total = sum(r["seconds"] for r in rows)
        print(f"grid total {total:.1f} s ({total / len(rows):.1f} s per model, "
              f"{total / len(rows) / args.epochs:.2f} s per epoch)")


if __name__ == "__main__":
    main()
