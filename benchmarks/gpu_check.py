"""GPU check of the full profile: per notebook one paper-scale grid point for a few epochs, timed.

Run by ``benchmarks/gpu_check.sh`` (which adds the training-throughput benchmark). Data are synthetic
sets written in the real on-disk formats (:mod:`reprobust.synthetic_data`; the GPU machine has no
network), read back through the real loaders, so every step is the code path of the ``full`` profile at
the papers' model sizes: only the number of images and epochs is small.

    python benchmarks/gpu_check.py --device cuda             # about 4 minutes on one H100/H200
    python benchmarks/gpu_check.py --device cpu --scale tiny  # the same steps, tiny, to check the script

Each step prints one line ``[name] ok|FAILED  seconds  detail``; a failing step does not stop the others;
the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import torch  # noqa: E402

SCALES = {
    # images per training run, epochs, attacked images, black-box popsize / generations, CKA images / batch
    "gpu": dict(n_train=5000, epochs=2, n_attack=500, popsize=400, max_iter=3, n_cka=2048, cka_batch=1024,
                tiny_per_class=25, budget="16GB"),
    "tiny": dict(n_train=40, epochs=1, n_attack=4, popsize=8, max_iter=2, n_cka=16, cka_batch=8,
                 tiny_per_class=1, budget="200MB"),
}

RESULTS = []


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def step(name, dev):
    """Decorator: run, time and report one check; exceptions become a FAILED line."""
    def wrap(fn):
        sync(dev)
        t = time.perf_counter()
        try:
            detail = fn()
            ok = True
        except Exception as e:  # noqa: BLE001 — report and go on with the other checks
            detail = f"{type(e).__name__}: {e}"
            traceback.print_exc()
            ok = False
        sync(dev)
        secs = time.perf_counter() - t
        mem = f", peak {torch.cuda.max_memory_allocated(dev) / 2**30:.1f} GiB" if dev.type == "cuda" else ""
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        RESULTS.append((name, ok, secs))
        print(f"[{name}] {'ok' if ok else 'FAILED'}  {secs:7.1f} s{mem}  {detail}", flush=True)
        return fn
    return wrap


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--scale", default="gpu", choices=sorted(SCALES))
    p.add_argument("--data-dir", default=None, help="where to write the synthetic data (default: a temp dir)")
    a = p.parse_args(argv)
    S = SCALES[a.scale]
    dev = torch.device(a.device)
    root = Path(a.data_dir or tempfile.mkdtemp(prefix="reprobust-gpu-check-"))
    print(f"torch {torch.__version__}, device {dev}"
          + (f" ({torch.cuda.get_device_name(dev)}, bf16 {torch.cuda.is_bf16_supported()})" if dev.type == "cuda" else ""),
          flush=True)

    from reprobust import synthetic_data as SD
    from reprobust.attacks import pgd
    from reprobust.attacks.blackbox import threshold_attack
    from reprobust.corruptions import corruption_accuracy, load_tiny_imagenet_c
    from reprobust.data import load_dataset
    from reprobust.metrics.cka import layer_cka
    from reprobust.models import build_model
    from reprobust.train import accuracy, fit

    n, E = S["n_train"], S["epochs"]
    state = {}

    @step("data: synthetic sets in the real formats, loaded", dev)
    def _():
        SD.write_cifar10(root, n_train=max(n, 10), n_test=max(S["n_attack"], 10))
        SD.write_mnist(root, n_train=max(n, 10), n_test=max(S["n_attack"], 10))
        SD.write_tiny_imagenet(root, n_classes=200, n_train_per_class=S["tiny_per_class"], n_val_per_class=2)
        SD.write_tiny_imagenet_c(root, n_classes=200, n_per_class=1, corruptions=["fog", "pixelate"], severities=(1, 5))
        state["cifar"] = load_dataset("cifar10", data_dir=root)
        state["mnist"] = load_dataset("mnist", data_dir=root)
        state["tiny"] = load_dataset("tiny_imagenet", data_dir=root)
        return (f"cifar10 {tuple(state['cifar'].x_train.shape)}, tiny_imagenet {tuple(state['tiny'].x_train.shape)}")

    cifar = state.get("cifar")
    if cifar is None:
        return 1
    x, y = cifar.x_train, cifar.y_train
    aug = dict(padding=4, flip=True)

    def model(name, ds=cifar, **opts):
        torch.manual_seed(0)
        return build_model(name, **ds.model_kwargs(), **opts)

    def rate(images, t0):
        sync(dev)
        return f"{images / (time.perf_counter() - t0):,.0f} images/s"

    @step("01: CapsNet (Sabour, CIFAR conv 8×8) margin loss, + black-box threshold attack under a budget", dev)
    def _():
        net = model("capsnet", conv_kernel=8)
        t0 = time.perf_counter()
        fit(net, x, y, epochs=E, batch_size=64, lr=1e-3, optimizer="adam", schedule="exponential",
            gamma=0.9048, loss="margin", augment=aug, device=dev)
        train = rate(E * len(y), t0)
        net.memory_budget = S["budget"]
        t0 = time.perf_counter()
        xa, ya = cifar.x_test[:S["n_attack"]].to(dev), cifar.y_test[:S["n_attack"]].to(dev)
        res = threshold_attack(net, xa, ya, 10 / 255, popsize=S["popsize"], max_iter=S["max_iter"],
                               memory_budget=S["budget"])
        return f"train {train}; attack {rate(len(xa), t0)} ({S['popsize']}×{S['max_iter']} queries), success {float(res.success.float().mean()):.2f}"

    @step("01: WRN-16-8 and DenseNet-BC-100, one run each", dev)
    def _():
        out = []
        for name, opts in (("wide_resnet", dict(depth=16, widen=8)), ("densenet_bc", {})):
            net = model(name, **opts)
            t0 = time.perf_counter()
            fit(net, x, y, epochs=E, batch_size=64, lr=0.1, schedule="multistep", milestones=(60, 120, 160),
                gamma=0.2, augment=aug, device=dev)
            out.append(f"{name} {rate(E * len(y), t0)}")
        return "; ".join(out)

    @step("02: VGG-like CIFAR net, PGD-100 L∞ 0.04", dev)
    def _():
        net = model("cifar_conv")
        t0 = time.perf_counter()
        fit(net, x, y, epochs=E, lr=0.05, augment=aug, device=dev)
        train = rate(E * len(y), t0)
        xa, ya = cifar.x_test[:S["n_attack"]].to(dev), cifar.y_test[:S["n_attack"]].to(dev)
        t0 = time.perf_counter()
        pgd(net.to(dev).eval(), xa, ya, eps=0.04, steps=100, step_size=0.004)
        return f"train {train}; PGD-100 {rate(len(xa), t0)}"

    @step("03: WRN-28-4 PGD-10 AT with per-epoch checkpoints, then 79-layer minibatch CKA", dev)
    def _():
        net = model("wide_resnet", depth=28, widen=4)
        t0 = time.perf_counter()
        ckpt = root / "wrn28_4_state.pt"
        fit(net, x, y, epochs=E, lr=0.1, augment=aug, device=dev, checkpoint_path=ckpt,
            adversarial=dict(eps=8 / 255, steps=10, step_size=2 / 255))
        train = rate(E * len(y), t0)
        # A restart finds the finished run and does no epoch.
        t1 = time.perf_counter()
        fit(model("wide_resnet", depth=28, widen=4), x, y, epochs=E, lr=0.1, augment=aug, device=dev,
            checkpoint_path=ckpt, adversarial=dict(eps=8 / 255, steps=10, step_size=2 / 255))
        resume = time.perf_counter() - t1
        xc = cifar.x_test[:S["n_cka"]] if len(cifar.x_test) >= S["n_cka"] else x[:S["n_cka"]]
        t0 = time.perf_counter()
        m = layer_cka(net.to(dev).eval(), x=xc, batch_size=S["cka_batch"], passes=1, device=dev,
                      memory_budget=S["budget"])
        return f"AT {train}; resume of a finished run {resume:.1f} s; CKA {m.shape} {rate(len(xc), t0)}"

    @step("04: ResNet-18 on Tiny ImageNet (200 classes) with the selectivity regulariser, Tiny ImageNet-C", dev)
    def _():
        tiny = state["tiny"]
        net = model("resnet18", ds=tiny)
        t0 = time.perf_counter()
        fit(net, tiny.x_train, tiny.y_train, epochs=E, lr=0.1, batch_size=256, augment=dict(padding=8, flip=True),
            stratified=True, regularizer={"name": "class_selectivity", "alpha": -1.0}, device=dev)
        train = rate(E * len(tiny.y_train), t0)
        cset = load_tiny_imagenet_c(root, ["fog", "pixelate"], severities=(1, 5))
        acc = corruption_accuracy(net, cset, device=dev)
        return f"train {train}; Tiny ImageNet-C accuracy {acc.shape}, clean {accuracy(net, tiny.x_test, tiny.y_test):.3f}"

    @step("05: ResNet-18 strides 1122, PGD-AT 8/255 (multi-step 100/105), PGD-20 eval", dev)
    def _():
        net = model("resnet18", strides="1122")
        t0 = time.perf_counter()
        fit(net, x, y, epochs=E, lr=0.1, schedule="multistep", milestones=(100, 105), gamma=0.1, augment=aug,
            adversarial=dict(eps=8 / 255, steps=10, step_size=2 / 255), device=dev)
        train = rate(E * len(y), t0)
        xa, ya = cifar.x_test[:S["n_attack"]].to(dev), cifar.y_test[:S["n_attack"]].to(dev)
        t0 = time.perf_counter()
        r = pgd(net.to(dev).eval(), xa, ya, eps=8 / 255, steps=20, step_size=2 / 255)
        return f"PGD-AT {train}; PGD-20 {rate(len(xa), t0)}, robust acc {1 - float(r.success.float().mean()):.2f}"

    @step("05: VGG-16-bn 11222 and AlexNet 1122, PGD-AT", dev)
    def _():
        out = []
        for name, strides in (("vgg16_bn", "11222"), ("alexnet", "1122")):
            net = model(name, strides=strides)
            t0 = time.perf_counter()
            fit(net, x, y, epochs=E, lr=0.05, augment=aug, adversarial=dict(eps=8 / 255, steps=10, step_size=2 / 255),
                device=dev)
            out.append(f"{name} {rate(E * len(y), t0)}")
        return "; ".join(out)

    failed = [r for r in RESULTS if not r[1]]
    print(f"gpu_check: {len(RESULTS) - len(failed)} ok, {len(failed)} failed, "
          f"{sum(r[2] for r in RESULTS):.0f} s in the checks", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
