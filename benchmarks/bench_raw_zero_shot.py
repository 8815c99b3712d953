"""Benchmark for notebook 01 (Raw Zero-Shot): training throughput and black-box attack throughput.

1. Models trained per second with the quick profile's settings (digits, every training image, Adam with a
   cosine schedule over at most 60 epochs, batch 64, early stopping on a 10 % validation split with
   patience 5; lr 2e-3, 1e-2 for the linear model): one full model + N = 10 leave-one-out models per
   architecture, no cache.
2. Black-box attack throughput (images attacked per second) at a fixed threshold, with each generation's
   population of *all* images scored in one batched forward pass, against the per-image loop reference
   (same seeds, same results, one forward pass per image per generation), and their ratio.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_raw_zero_shot.py [--quick-archs]``. Prints tables.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from reprobust.attacks.blackbox import pixel_attack, threshold_attack
from reprobust.cache import Cache
from reprobust.train import predict, trained_model

# notebook 01's quick profile (notebooks/01_raw_zero_shot.py: SMALL_TRAIN, arch_train, model_spec)
QUICK_TRAIN = dict(epochs=60, batch_size=64, lr=2e-3, optimizer="adam", weight_decay=0.0, schedule="cosine",
                   val_fraction=0.1, patience=5)
ARCH_TRAIN = {"linear": dict(lr=1e-2)}
CAPSNET = dict(primary_types=4, class_dim=8)


def spec(arch, exclude):
    return {"data": {"name": "digits", "n_train": None, "exclude_class": exclude},
            "model": {"name": arch, **(CAPSNET if arch == "capsnet" else {})},
            "train": {**QUICK_TRAIN, **ARCH_TRAIN.get(arch, {}), "loss": "margin" if arch == "capsnet" else "ce"},
            "seed": 0}


def bench_training(archs):
    off = Cache(enabled=False)
    rows = []
    for arch in archs:
        t0 = time.perf_counter()
        models = [trained_model(spec(arch, k), cache=off, device="cpu") for k in [None, *range(10)]]
        dt = time.perf_counter() - t0
        rows.append((arch, len(models), dt, len(models) / dt))
    print("\nTraining (quick profile settings, N + 1 = 11 models per architecture, no cache)")
    print(f"{'architecture':<12} {'models':>6} {'seconds':>8} {'models/s':>9}")
    for arch, n, dt, rate in rows:
        print(f"{arch:<12} {n:>6} {dt:>8.2f} {rate:>9.2f}")
    total_n, total_t = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'all':<12} {total_n:>6} {total_t:>8.2f} {total_n / total_t:>9.2f}")


def bench_attacks(archs, n_images, popsize, max_iter, repeats):
    from reprobust.data import load_dataset

    ds = load_dataset("digits")
    print(f"\nAttack throughput: {n_images} correctly classified test images, popsize {popsize}, "
          f"{max_iter} generations, DE, early stop (best of {repeats})")
    print(f"{'architecture':<12} {'attack':<16} {'success':>7} {'batched img/s':>14} {'per-image img/s':>16} {'ratio':>6}")
    for arch in archs:
        model = trained_model(spec(arch, None), device="cpu")  # default cache: trained once
        correct = torch.nonzero(predict(model, ds.x_test).argmax(1) == ds.y_test).flatten()[:n_images]
        x, y = ds.x_test[correct], ds.y_test[correct]
        for name, fn, th in (("threshold@1grey", threshold_attack, 1 / 16), ("pixel@2", pixel_attack, 2)):
            times = {}
            for batched in (True, False):
                best = np.inf
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    res = fn(model, x, y, th, popsize=popsize, max_iter=max_iter, seed=0, batch_images=batched)
                    best = min(best, time.perf_counter() - t0)
                times[batched] = best
                success = float(res.success.float().mean())
            print(f"{arch:<12} {name:<16} {success:>7.2f} {len(x) / times[True]:>14.1f} "
                  f"{len(x) / times[False]:>16.1f} {times[False] / times[True]:>6.1f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["linear", "mlp", "lenet", "cnn", "capsnet"])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--popsize", type=int, default=100)   # the quick profile's pixel-attack budget
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-training", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if not a.skip_training:
        bench_training(a.archs)
    bench_attacks(a.archs, a.images, a.popsize, a.max_iter, a.repeats)


if __name__ == "__main__":
    main()
