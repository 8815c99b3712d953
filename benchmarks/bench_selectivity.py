"""Benchmark for notebook 04: wall time of the α × seed training grid (quick profile settings, models
per second) and the rate of CIFAR-10-C-style corruption generation (images per second per corruption),
side by side with the per-image functions of Hendrycks' ``make_cifar_c.py`` where they run without
ImageMagick (wand), OpenCV or scikit-image: gaussian and shot noise, contrast, pixelate, JPEG. Those
reference functions are re-typed here in the original's per-image form (PIL image in, float array out,
``np.uint8`` truncation); equal outputs are checked on the deterministic ones.

    python benchmarks/bench_selectivity.py                 # quick grid: 4 α × 5 seeds, 8 epochs
    python benchmarks/bench_selectivity.py --seeds 1 --epochs 4 --n-images 100

Nothing is cached here: every model is trained from scratch, so the numbers are the cold cost.
``reprobust.train`` has no ensemble (``torch.func``) trainer, so only sequential training is timed.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
import torch
from PIL import Image

from reprobust import corruptions as corr
from reprobust.data import load_dataset
from reprobust.metrics import selectivity as sel  # noqa: F401 — registers the "class_selectivity" regulariser
from reprobust.models import build_model
from reprobust.train import fit

QUICK_ALPHAS = (-2.0, -1.0, 0.0, 1.0)
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


# -- make_cifar_c.py's per-image reference functions (those needing only numpy and PIL) -------------
def _ref_gaussian_noise(x, severity=1):
    c = [0.04, 0.06, .08, .09, .10][severity - 1]
    x = np.array(x) / 255.
    return np.clip(x + np.random.normal(size=x.shape, scale=c), 0, 1) * 255


def _ref_shot_noise(x, severity=1):
    c = [500, 250, 100, 75, 50][severity - 1]
    x = np.array(x) / 255.
    return np.clip(np.random.poisson(x * c) / c, 0, 1) * 255


def _ref_contrast(x, severity=1):
    c = [.75, .5, .4, .3, 0.15][severity - 1]
    x = np.array(x) / 255.
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _ref_pixelate(x, severity=1):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    x = x.resize((int(32 * c), int(32 * c)), Image.BOX)
    return x.resize((32, 32), Image.BOX)


def _ref_jpeg_compression(x, severity=1):
    c = [80, 65, 58, 50, 40][severity - 1]
    buf = io.BytesIO()
    x.save(buf, "JPEG", quality=c)
    return Image.open(buf)


REFERENCE = {"gaussian_noise": _ref_gaussian_noise, "shot_noise": _ref_shot_noise, "contrast": _ref_contrast,
             "pixelate": _ref_pixelate, "jpeg_compression": _ref_jpeg_compression}
DETERMINISTIC = ("contrast", "pixelate", "jpeg_compression")


def bench_reference(n_images: int) -> list[dict]:
    """Ours (batched) vs the reference (one PIL image at a time), all 5 severities, greyscale digits."""
    ds = load_dataset("digits", image_size=32)
    x = ds.x_test[:n_images].numpy()
    u8 = np.round(x * 255).astype(np.uint8)            # the reference reads 8-bit images
    pil = [Image.fromarray(im[0], mode="L") for im in u8]
    rows = []
    for name, ref in REFERENCE.items():
        t0 = time.perf_counter()
        ours = [corr.corrupt_uint8(u8 / 255.0, name, sev, seed=0) for sev in corr.SEVERITIES]
        t_ours = time.perf_counter() - t0
        np.random.seed(0)
        t0 = time.perf_counter()
        theirs = [np.stack([np.uint8(np.asarray(ref(im, sev), dtype=np.float64)) for im in pil])[:, None]
                  for sev in corr.SEVERITIES]
        t_ref = time.perf_counter() - t0
        diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(ours, theirs))
        rows.append(dict(corruption=name, ours=5 * n_images / t_ours, reference=5 * n_images / t_ref,
                         ratio=t_ref / t_ours, max_level_diff=diff if name in DETERMINISTIC else None))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
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

    print(f"\nOurs vs make_cifar_c.py per-image functions ({args.n_images} digits, 5 severities; images/s)")
    print(f"{'corruption':<20}{'ours':>10}{'reference':>11}{'speed-up':>10}{'max |Δ| (8-bit levels)':>26}")
    for r in bench_reference(args.n_images):
        d = "random (not compared)" if r["max_level_diff"] is None else str(r["max_level_diff"])
        print(f"{r['corruption']:<20}{r['ours']:>10.0f}{r['reference']:>11.0f}{r['ratio']:>10.1f}{d:>26}")

    if not args.skip_grid:
        print(f"\nα × seed grid: {len(QUICK_ALPHAS)} α × {args.seeds} seeds, ResNet-8 {QUICK_MODEL}, "
              f"{args.epochs} epochs, 1,257 digits at 32×32, sequential")
        rows = bench_grid(QUICK_ALPHAS, args.seeds, args.epochs)
        print(f"{'alpha':>6}{'seed':>6}{'seconds':>10}")
        for r in rows:
            print(f"{r['alpha']:>6g}{r['seed']:>6}{r['seconds']:>10.2f}")
        total = sum(r["seconds"] for r in rows)
        print(f"grid total {total:.1f} s ({total / len(rows):.1f} s per model = {len(rows) / total:.3f} models/s, "
              f"{total / len(rows) / args.epochs:.2f} s per epoch)")


if __name__ == "__main__":
    main()
