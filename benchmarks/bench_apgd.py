"""Benchmark for the robust-accuracy evaluation: APGD throughput vs torchattacks' APGD.

    python benchmarks/bench_apgd.py                       # 300 test digits, APGD-CE, 100 iterations, L∞ and L2
    python benchmarks/bench_apgd.py --images 540 --seeds 5

Both attacks run on the same model (a 5-block CNN with PGD adversarial training on the digits, the
quick-profile model of notebook 03, trained here from scratch without the cache), the same images and
the same settings: 100 iterations, one random start, cross-entropy loss, one torch thread (CPU), repeated
with ``--seeds`` random-start seeds (the robust accuracy of one start varies by an image or two). Reported
per norm: images per second for each over all seeds, the ratio (ours / torchattacks), and the mean robust
accuracy each leaves (ours should be equal or lower). The reference is ``torchattacks==3.5.1`` (the test-only extra:
``pip install --no-deps torchattacks==3.5.1``).

Where the speed comes from: torchattacks runs every image through all 100 iterations; ours drops an image
once an iterate fools it (nothing else depends on it), so the cost falls with the attack's success rate.
"""

from __future__ import annotations

import argparse
import time

import torch

from reprobust.attacks import apgd
from reprobust.data import load_dataset
from reprobust.models import build_model
from reprobust.train import fit

SETTINGS = {"linf": 0.2, "l2": 1.0}


def robust_model(ds):
    torch.manual_seed(0)
    net = build_model("cnn", channels=(16, 16, 32, 32, 64), strides="11212", batchnorm=True, **ds.model_kwargs())
    fit(net, ds.x_train, ds.y_train, epochs=15, batch_size=128, lr=0.05, schedule="cosine", seed=0,
        adversarial={"attack": "pgd", "norm": "linf", "eps": 0.2, "steps": 3})
    return net.eval()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3, help="random-start seeds per attack")
    args = parser.parse_args(argv)
    import torchattacks

    torch.set_num_threads(1)
    ds = load_dataset("digits")
    net = robust_model(ds)
    x, y = ds.x_test[: args.images], ds.y_test[: args.images]
    print(f"torch threads: {torch.get_num_threads()}; {len(x)} images x {args.seeds} seeds; {args.steps} iterations; "
          f"torchattacks {torchattacks.__version__}")
    print(f"{'norm':5} {'eps':>5} {'ours img/s':>11} {'torchattacks img/s':>19} {'ratio':>6} "
          f"{'robust ours':>12} {'robust torchattacks':>20}")
    for norm, eps in SETTINGS.items():
        t_ours = t_ref = robust_ours = robust_ref = 0.0
        for seed in range(args.seeds):
            t, res = timed(lambda: apgd(net, x, y, eps=eps, norm=norm, loss="ce", steps=args.steps, seed=seed))
            t_ours += t
            robust_ours += float((~res.success).float().mean()) / args.seeds
            ref = torchattacks.APGD(net, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, steps=args.steps,
                                    n_restarts=1, loss="ce", seed=seed)
            t, x_ref = timed(lambda: ref(x, y))
            t_ref += t
            with torch.no_grad():
                robust_ref += float((net(x_ref).argmax(1) == y).float().mean()) / args.seeds
        n = len(x) * args.seeds
        print(f"{norm:5} {eps:5.2f} {n / t_ours:11.1f} {n / t_ref:19.1f} {t_ref / t_ours:6.2f} "
              f"{robust_ours:12.4f} {robust_ref:20.4f}")


if __name__ == "__main__":
    main()
