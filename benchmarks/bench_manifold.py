"""Benchmark of the manifold-proximity analysis (notebook 02).

1. Seconds for method 1 (kNN class composition, both pools) + method 2 (convex projections and input-space
   hull distances) on the quick profile's data volume: digits, the notebook's MLP and CNN, ~1,000 queries
   per model (PGD adversarials + clean calibration images), k = 20.
2. Convex (simplex-constrained least-squares) projections per second for our solvers against the
   reference: ``scipy.optimize.nnls`` looped per query on the full augmented system ``[X; ρ·1ᵀ]``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_manifold.py [--quick-only | --nnls-only] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.optimize import nnls

from reprobust.attacks import pgd
from reprobust.data import load_dataset
from reprobust.features import capture_activations
from reprobust.metrics import manifold as M
from reprobust.train import predict, trained_model


def reference_projection(vertices: np.ndarray, query: np.ndarray) -> float:
    """The reference: scipy NNLS on the full system with a heavily weighted sum-to-one row."""
    rho = 1e3 * np.sqrt(((vertices - query) ** 2).sum(1).max())
    system = np.vstack([vertices.T, np.full((1, len(vertices)), rho)])
    w, _ = nnls(system, np.r_[query, rho], maxiter=50 * len(vertices))
    w /= w.sum()
    return float(np.linalg.norm(query - w @ vertices))


def bench_nnls(device: str, repeats: int = 1):
    rng = np.random.default_rng(0)
    rows = []
    for n, k, dim in ((2000, 20, 64), (2000, 20, 128), (500, 50, 784), (200, 100, 784)):
        vertices = rng.random((n, k, dim))
        queries = rng.random((n, dim))
        n_ref = min(n, 400)
        t = time.perf_counter()
        ref = np.array([reference_projection(v, q) for v, q in zip(vertices[:n_ref], queries[:n_ref])])
        ref_rate = n_ref / (time.perf_counter() - t)
        row = {"problems": n, "k": k, "dim": dim, "scipy loop /s": ref_rate}
        solvers = [("nnls", "cpu"), ("active_set", "cpu")]
        if device == "cuda" and torch.cuda.is_available():
            solvers.append(("active_set", "cuda"))
        for solver, dev in solvers:
            v = torch.as_tensor(vertices, device=dev)
            q = torch.as_tensor(queries, device=dev)
            best = float("inf")
            for _ in range(repeats):
                if dev == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                _, d = M.simplex_least_squares(v, q, solver=solver)
                if dev == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
            err = float(np.abs(d[:n_ref].cpu().numpy() - ref).max())
            row[f"{solver}@{dev} /s"] = n / best
            row[f"{solver}@{dev} ratio"] = (n / best) / ref_rate
            row[f"{solver}@{dev} max|Δd|"] = err
        rows.append(row)
    return rows


def bench_quick_analysis(k: int = 20, n_adv: int = 800, n_clean: int = 200):
    ds = load_dataset("digits")
    results = []
    for label, model_opts in (("MLP", {"name": "mlp", "hidden": (128, 128)}), ("CNN", {"name": "lenet"})):
        spec = {"data": {"name": "digits", "n_train": None, "n_test": None, "subset_seed": 0},
                "model": model_opts,
                "train": {"epochs": 40, "batch_size": 64, "lr": 1e-3, "optimizer": "adam", "schedule": "constant",
                          "weight_decay": 0.0},
                "seed": 0}
        model = trained_model(spec)
        x, y = ds.x_test, ds.y_test
        adv = pgd(model, x, y, eps=0.15, steps=20, seed=0)
        keep = adv.success.nonzero()[:, 0][:n_adv]
        x_q = torch.cat([adv.x_adv[keep], x[:n_clean]])
        true = torch.cat([y[keep], y[:n_clean]])
        logits = predict(model, x_q)
        masked = logits.clone()
        masked[torch.arange(len(true)), true] = -float("inf")
        pred = torch.where(logits.argmax(1) == true, masked.argmax(1), logits.argmax(1))

        def layers(xx):
            acts = capture_activations(model, xx, flatten=True, include_logits=True)
            return {"input": xx.flatten(1), **{n: acts[n] for n in model.layer_names}, "logits": acts["logits"]}

        train_acts, query_acts = layers(ds.x_train), layers(x_q)
        t = time.perf_counter()
        for pool in ("pair", "all"):
            M.knn_class_composition(train_acts, ds.y_train, query_acts, true, pred, k, pool=pool)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        M.convex_projection_distances(train_acts, query_acts, ds.x_train, ds.y_train, true, pred, k_layer=k, k_input=k)
        t2 = time.perf_counter() - t
        n_proj = 3 * len(true) * len(train_acts)
        results.append({"model": label, "queries": len(true), "layers": len(train_acts), "method 1 s": t1,
                        "method 2 s": t2, "total s": t1 + t2, "projections": n_proj,
                        "projections /s (incl. kNN)": n_proj / t2})
    return results


def table(rows, floatfmt="{:.3g}"):
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(floatfmt.format(r[c]) if isinstance(r[c], float) else str(r[c])
                                       for c in cols) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick-only", action="store_true")
    ap.add_argument("--nnls-only", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    if not args.nnls_only:
        print("\n## Method 1 + method 2 on the quick profile (digits, k = 20)\n")
        print(table(bench_quick_analysis()))
    if not args.quick_only:
        print("\n## Convex projections per second (reference: scipy.optimize.nnls per query, full system)\n")
        print(table(bench_nnls(args.device)))


if __name__ == "__main__":
    main()
