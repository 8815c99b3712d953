"""Training throughput (images/s) of the full-profile training step vs a plain PyTorch loop.

Reference (what a straightforward script does): float32, default memory format, a ``DataLoader`` over a
``TensorDataset`` in host memory whose per-image ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``
run on the host (torchvision transforms), batches copied to the device, SGD with momentum.

Full profile: :func:`reprobust.train.fit` as the notebooks call it — data resident on the device,
random crop + flip on the device for the whole batch (:mod:`reprobust.augment`), bf16 autocast and
channels-last on CUDA (both off on the CPU), same model, batch size and optimiser.

Also reported: ``fit`` with AMP / channels-last forced off (their share of the gain), PGD-10 adversarial
training and PGD-20 evaluation throughput.

    python benchmarks/bench_train_throughput.py                       # CPU, small: ResNet-20 on 1,024 images
    python benchmarks/bench_train_throughput.py --device cuda --model resnet18 --n 10000 --epochs 2

Each variant trains once for a warm-up epoch, then ``--epochs`` timed epochs; images/s = images seen /
seconds of the timed epochs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from reprobust.attacks import pgd  # noqa: E402
from reprobust.models import build_model  # noqa: E402
from reprobust.train import fit  # noqa: E402

MODELS = {"resnet": dict(name="resnet", depth=20), "resnet18": dict(name="resnet18"),
          "wrn28_4": dict(name="wide_resnet", depth=28, widen=4), "vgg16_bn": dict(name="vgg16_bn"),
          "capsnet": dict(name="capsnet")}


def make_model(key, seed=0):
    torch.manual_seed(seed)
    opts = dict(MODELS[key])
    name = opts.pop("name")
    return build_model(name, input_shape=(3, 32, 32), num_classes=10, mean=(0.49, 0.48, 0.45),
                       std=(0.25, 0.24, 0.26), **opts)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(model, x, y, dev, epochs, batch_size, workers):
    """The reference: host-side torchvision augmentation per image through a DataLoader, float32."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    class Augmented(Dataset):
        def __init__(self):
            self.t = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])

        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return self.t(x[i]), y[i]

    loader = DataLoader(Augmented(), batch_size=batch_size, shuffle=True, num_workers=workers,
                        pin_memory=dev.type == "cuda", drop_last=False)
    model.to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    times = []
    for _ in range(epochs + 1):  # the first epoch is the warm-up
        sync(dev)
        t = time.perf_counter()
        for xb, yb in loader:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(dev)
        times.append(time.perf_counter() - t)
    return len(y) * epochs / sum(times[1:])


def fit_rate(model, x, y, dev, epochs, batch_size, **kw):
    """Images/s of reprobust's fit (warm-up epoch excluded via per-epoch timestamps)."""
    stamps = []

    def stamp(epoch, m, h):
        sync(dev)
        stamps.append(time.perf_counter())

    sync(dev)
    t0 = time.perf_counter()
    fit(model, x, y, epochs=epochs + 1, batch_size=batch_size, lr=0.05, device=dev, on_epoch_end=stamp,
        augment=dict(padding=4, flip=True), **kw)
    return len(y) * epochs / (stamps[-1] - stamps[0]) if epochs else len(y) / (stamps[0] - t0)


def eval_rate(model, x, y, dev, batch_size, steps=20):
    model.to(dev).eval()
    amp = dev.type == "cuda"
    sync(dev)
    t = time.perf_counter()
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            pgd(model, xb, yb, eps=8 / 255, steps=steps, step_size=2 / 255, seed=i)
    sync(dev)
    return len(x) / (time.perf_counter() - t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="resnet", choices=sorted(MODELS))
    p.add_argument("--n", type=int, default=1024, help="training images (random CIFAR-shaped data)")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs after one warm-up epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference loop")
    p.add_argument("--skip-adversarial", action="store_true")
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(int(os.environ.get("REPROBUST_THREADS", torch.get_num_threads())))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (a.n,), generator=g)
    print(f"{a.model} on {a.n} images, batch {a.batch_size}, device {dev} "
          f"({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'})")
    ref = plain_loop(make_model(a.model), x, y, dev, a.epochs, a.batch_size, a.workers)
    full = fit_rate(make_model(a.model), x, y, dev, a.epochs, a.batch_size)
    rows = [("plain PyTorch loop (fp32, host DataLoader + torchvision aug)", ref),
            ("reprobust fit, full-profile step (device aug, AMP + channels-last on CUDA)", full)]
    if dev.type == "cuda":
        rows.append(("reprobust fit, AMP and channels-last off",
                     fit_rate(make_model(a.model), x, y, dev, a.epochs, a.batch_size, amp=False, channels_last=False)))
        rows.append(("reprobust fit, AMP on, channels-last off",
                     fit_rate(make_model(a.model), x, y, dev, a.epochs, a.batch_size, amp=True, channels_last=False)))
    if not a.skip_adversarial:
        adv = dict(attack="pgd", eps=8 / 255, steps=10, step_size=2 / 255)
        rows.append(("reprobust fit, PGD-10 adversarial training",
                     fit_rate(make_model(a.model), x, y, dev, a.epochs, a.batch_size, adversarial=adv)))
        rows.append(("PGD-20 evaluation (images/s)", eval_rate(make_model(a.model), x[:512], y[:512], dev, 256)))
    width = max(len(r[0]) for r in rows)
    for name, rate in rows:
        print(f"  {name:<{width}}  {rate:10.1f} images/s")
    print(f"  ratio full-profile step / plain loop: {full / ref:.2f}×")


if __name__ == "__main__":
    main()
