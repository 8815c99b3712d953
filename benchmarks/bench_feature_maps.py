"""Benchmark for notebook 05: training throughput of the stride-modified vs the upsampled CNN, and the
whole notebook's quick-profile time.

    python benchmarks/bench_feature_maps.py                  # throughput table + cold quick notebook run
    python benchmarks/bench_feature_maps.py --no-notebook    # throughput table only

Throughput is measured with ``reprobust.train.fit`` on the digits training split (1,257 images), one
epoch after a warm-up epoch, for standard and PGD-3 adversarial training. The paper's key pair is
"one fewer stride-2" (112211 ×1) vs "upsampling ×2" (122211 ×2): both reach a 2×2 pre-pool map, but
upsampling makes every layer work on a larger map. The notebook timing is a cold run (fresh cache
folder) through the headless runner.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import torch

from reprobust.data import load_dataset
from reprobust.metrics import feature_maps as fm
from reprobust.models import build_model

CHANNELS = [4, 8, 8, 8, 8, 8]  # the quick profile's CNN (one channel count per layer)
CONFIGS = [("122211", 1, "baseline"), ("112211", 1, "one fewer stride-2"), ("122211", 2, "upsampling ×2"),
           ("111211", 1, "two fewer stride-2"), ("122211", 4, "upsampling ×4"),
           ("12211111", 1, "matched receptive field")]  # the notebook's 2×2 map at the base string's RF


def channels_for(strides: str) -> list:
    """The quick profile's channels, 8 for every layer beyond the sixth (the matched-RF configuration)."""
    return CHANNELS + [8] * (len(strides) - len(CHANNELS))


def throughput(strides: str, upsample: int, adversarial, epochs: int = 1) -> float:
    """Training images/s over the whole digits training split (``fm.training_throughput``, what the notebook shows)."""
    ds = load_dataset("digits")
    torch.manual_seed(0)
    net = build_model("cnn", **ds.model_kwargs(), channels=channels_for(strides), strides=strides, upsample=upsample,
                      batchnorm=True)
    n_batches = epochs * -(-len(ds.x_train) // 128)
    x, y = ds.x_train.repeat(epochs, 1, 1, 1), ds.y_train.repeat(epochs)
    return fm.training_throughput(net, x, y, adversarial=adversarial, batch_size=128, n_batches=n_batches)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--no-notebook", action="store_true")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'config':<12} {'method':<24} {'map':>4} {'MFLOP/img':>10} {'std img/s':>10} {'PGD-AT img/s':>13}")
    rates = {}
    for strides, up, label in CONFIGS:
        net = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, channels=channels_for(strides), strides=strides,
                          upsample=up, batchnorm=True)
        side = fm.prepool_map_size(net, (1, 8, 8))[0]
        flops = fm.forward_cost(net, (1, 8, 8), batch_size=8, repeats=1)["flops_per_image"] / 1e6
        std = throughput(strides, up, None, args.epochs)
        adv = throughput(strides, up, {"attack": "pgd", "eps": 0.1, "steps": 3}, args.epochs)
        rates[label] = (std, adv)
        print(f"{strides + ' ×' + str(up):<12} {label:<24} {side:>4} {flops:>10.3f} {std:>10.0f} {adv:>13.0f}", flush=True)
    # the paper's cost claim: the same 2×2 map costs more time by upsampling than by one fewer stride-2
    (s1, a1), (s2, a2) = rates["one fewer stride-2"], rates["upsampling ×2"]
    print(f"time ratio upsampling ×2 / one fewer stride-2: standard ×{s1 / s2:.2f}, PGD-AT ×{a1 / a2:.2f}")
    if not args.no_notebook:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "reprobust.run", "--profile", "quick", "--only", "05",
                                  "--output-root", f"{tmp}/figures", "--cache-dir", f"{tmp}/cache"],
                                 capture_output=True, text=True)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "reprobust.run", "--profile", "quick", "--only", "05",
                            "--output-root", f"{tmp}/figures", "--cache-dir", f"{tmp}/cache"],
                           capture_output=True, text=True)
            warm = time.perf_counter() - t0
        status = "ok" if res.returncode == 0 else f"FAILED ({res.stdout[-300:]})"
        print(f"notebook 05 quick profile: cold {cold:.1f} s, warm cache {warm:.1f} s [{status}]")


if __name__ == "__main__":
    main()
