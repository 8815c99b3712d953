"""Benchmark of the manifold-proximity analysis (notebook 02).

1. Seconds for method 1 (kNN class composition, both pools) + method 2 (convex projections and input-space
   hull distances) on the quick profile's data volume: digits, the notebook's MLP and CNN, ~1,000 queries
   per model (PGD adversarials + clean calibration images), k = 20.
2. Convex (simplex-constrained least-squares) projections per second for our solvers against two
   references: ``scipy.optimize.nnls`` looped per query on the full augmented system ``[X; ρ·1ᵀ]``, and
   ``scipy.optimize.minimize(method="SLSQP")`` looped per query (the follow-up code's solver; we give it the
   analytic gradient, which only makes it faster). Problem sizes: the quick profile's (k = 20, dim 64/128),
   two intermediate ones and k = 300, dim = 784 (the paper's k on MNIST). Every solver must reach the NNLS
   reference's optimum: max |Δd| ≤ ``EQUAL_TOL`` is asserted (SLSQP, an iterative method with ``ftol`` =
   1e-10, must not end more than ``SLSQP_TOL`` *above* it).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_manifold.py [--quick-only | --nnls-only] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.optimize import minimize, nnls

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


EQUAL_TOL = 1e-6   # max |Δd| between our solvers and the NNLS reference (distances are O(1) here)
SLSQP_TOL = 1e-4   # SLSQP may stop this far above the optimum (its tolerance is on the objective)


def slsqp_projection(vertices: np.ndarray, query: np.ndarray) -> float:
    """The follow-up code's solver: SLSQP on the simplex (here with the analytic gradient)."""
    c = vertices - query
    gram = c @ c.T
    k = len(vertices)
    res = minimize(lambda w: w @ gram @ w, np.full(k, 1.0 / k), jac=lambda w: 2 * gram @ w, method="SLSQP",
                   bounds=[(0, None)] * k, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1,
                                                        "jac": lambda w: np.ones_like(w)}],
                   options={"ftol": 1e-10, "maxiter": 1000})
    w = np.clip(res.x, 0, None)
    w /= w.sum()
    return float(np.linalg.norm(query - w @ vertices))


def bench_nnls(device: str, repeats: int = 1):
    rng = np.random.default_rng(0)
    rows = []
    for n, k, dim in ((2000, 20, 64), (2000, 20, 128), (500, 50, 784), (200, 100, 784), (200, 300, 784)):
        vertices = rng.random((n, k, dim))
        queries = rng.random((n, dim))
        n_ref = min(n, 400)
        t = time.perf_counter()
        ref = np.array([reference_projection(v, q) for v, q in zip(vertices[:n_ref], queries[:n_ref])])
        ref_rate = n_ref / (time.perf_counter() - t)
        n_sl = min(n_ref, 100 if k <= 50 else 20 if k <= 100 else 5)  # SLSQP is slow at large k: fewer problems
        t = time.perf_counter()
        sl = np.array([slsqp_projection(v, q) for v, q in zip(vertices[:n_sl], queries[:n_sl])])
        sl_rate = n_sl / (time.perf_counter() - t)
        sl_gap = float((sl - ref[:n_sl]).max())
        assert sl_gap <= SLSQP_TOL, f"SLSQP ended {sl_gap:.2e} above the NNLS optimum at k={k}, dim={dim}"
        row = {"problems": n, "k": k, "dim": dim, "scipy nnls loop /s": ref_rate, "scipy SLSQP loop /s": sl_rate,
               "SLSQP d − nnls d (max)": sl_gap}
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
            assert err <= EQUAL_TOL, f"{solver}@{dev}: max |Δd| = {err:.2e} from the NNLS optimum at k={k}, dim={dim}"
            row[f"{solver}@{dev} /s"] = n / best
            row[f"{solver}@{dev} × nnls loop"] = (n / best) / ref_rate
            row[f"{solver}@{dev} × SLSQP loop"] = (n / best) / sl_rate
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
