"""Benchmark: reprobust.metrics.cka against torch-cka 0.21 and cka-pytorch 1.1.3.

Same two models (different random initialisations of one 20-layer CNN), the same 20 layers of each, the same
2,000 examples in the same 8 batches of 250, one pass, CPU, minibatch CKA with the unbiased HSIC₁ — the
estimator all three implement. Prints

1. wall time and max |Δ| of the 20×20 matrix against ours, with models, data and the packages' own
   accumulators in float64 (the 1e-6 check) and again in float32 (the packages' default; ours forms the
   Grams of batch-centred features in the activations' dtype and centres and sums them in float64);
2. the speed ratios;
3. torch-cka's row labels (module *definition* order) against the order its rows are actually filled
   (hook *call* order) on a model where the two differ.

The two packages are a benchmark-only extra, installed without their dependency trees so that pip does not
swap the torch build:

    pip install --no-deps torch-cka==0.21 cka-pytorch==1.1.3 lightning==2.6.6 torchmetrics==1.9.0 \
        lightning-utilities==0.15.3

(cka-pytorch imports ``lightning.fabric`` and ``torchmetrics`` at module level.) Run with
``OMP_NUM_THREADS=1 python benchmarks/bench_cka.py``; add ``--quick`` for a 500-example run, and
``--batch-size 1024`` for the full profile's (and the authors') CKA batch size (2 batches of 1,000).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from reprobust.metrics import cka as C

N_LAYERS = 20


class Plain20(nn.Module):
    """10 × (conv3×3 → ReLU) on 1×16×16 inputs: 20 hookable layers, defined in the order they run."""

    def __init__(self, seed: int, width: int = 16):
        super().__init__()
        torch.manual_seed(seed)
        blocks = []
        in_ch = 1
        for i in range(10):
            stride = 2 if i in (4, 7) else 1
            blocks += [nn.Conv2d(in_ch, width, 3, stride, 1), nn.ReLU()]  # not in-place: torch-cka does not clone
            in_ch = width
        self.features = nn.Sequential(*blocks)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                # He init keeps the activation scale across depth. With PyTorch's default init the signal
                # shrinks ~10× per 2 layers while the ReLU mean stays, and the Song et al. Eq. 3 form of HSIC₁
                # (both packages) then cancels catastrophically even in float64; U-centring does not.
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.classifier = nn.Linear(width, 10)
        self.layer_names = [f"features.{i}" for i in range(2 * 10)]

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class DefinedBackwards(nn.Module):
    """Modules defined in the reverse of the order they run (for the torch-cka labelling check)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.late = nn.Linear(32, 8)
        self.early = nn.Linear(64, 32)

    def forward(self, x):
        return self.late(torch.tanh(self.early(x.flatten(1))))


def digits_2000(n: int) -> torch.Tensor:
    """sklearn digits upsampled to 16×16, tiled to ``n`` images with small seeded noise (no exact duplicates)."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None]
    x = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    x = x.repeat(-(-n // len(x)), 1, 1, 1)[:n]
    noise = 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return (x + noise).clamp(0, 1)


def run_ours(model_a, model_b, x, layers, batch_size):
    return C.layer_cka(model_a, model_b, x=x, layers_a=layers, layers_b=layers, batch_size=batch_size, passes=1,
                       seed=0)


def loader(x_ordered, batch_size):
    return DataLoader(TensorDataset(x_ordered, torch.zeros(len(x_ordered))), batch_size=batch_size, shuffle=False)


def run_torch_cka(model_a, model_b, x_ordered, layers, batch_size):
    from torch_cka import CKA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cka = CKA(model_a, model_b, "A", "B", model1_layers=layers, model2_layers=layers, device="cpu")
        import torch_cka.cka as tc

        tc.tqdm = lambda it, **kw: it  # silence its progress bar
        cka.compare(loader(x_ordered, batch_size))
    out = cka.export()["CKA"].numpy()
    _remove_hooks(model_a)
    _remove_hooks(model_b)
    return out


def run_cka_pytorch(model_a, model_b, x_ordered, layers, batch_size):
    from cka_pytorch import CKACalculator

    calc = CKACalculator(model_a, model_b, model1_layers=layers, model2_layers=layers,
                         batched_feature_size=64, device=torch.device("cpu"), verbose=False)
    # epsilon=0: its default 1e-4 is added inside the normaliser's square root and changes the estimator.
    out = calc.calculate_cka_matrix(loader(x_ordered, batch_size), num_epochs=1, epsilon=0.0).numpy()
    calc.hook_manager1.clear_all()
    calc.hook_manager2.clear_all()
    return out


def _remove_hooks(model):
    # torch-cka never removes its hooks; drop them so later runs on the same model are not slowed down.
    for m in model.modules():
        m._forward_hooks.clear()


def timed(fn, *args, repeats: int = 1):
    """Output and the best of ``repeats`` wall times (the least disturbed run, as ``timeit`` reports)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return out, min(times)


def label_check():
    """Where does torch-cka put the row of the layer that runs first when definition order differs?"""
    from torch_cka import CKA

    net = DefinedBackwards().eval()
    x = torch.rand(64, 64, generator=torch.Generator().manual_seed(1))
    truth = C.layer_cka(net, net, x=x, layers_a=["early", "late"], layers_b=["early"], batch_size=32, passes=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch_cka.cka as tc

        tc.tqdm = lambda it, **kw: it
        cka = CKA(net, net, "A", "B", model1_layers=["early", "late"], model2_layers=["early"], device="cpu")
        cka.compare(loader(x, 32))
    res = cka.export()
    _remove_hooks(net)
    labels = res["model1_layers"]
    row_of_late = labels.index("late")
    print("\ntorch-cka labels vs. values, model whose modules are defined in reverse execution order:")
    print(f"  torch-cka row labels (definition order): {labels}")
    print(f"  CKA(late, early): ours {truth[1, 0]:.4f}; torch-cka row labelled 'late' holds "
          f"{float(res['CKA'][row_of_late, 0]):.4f} (that is CKA(early, early) = 1: rows are in call order)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 examples instead of 2,000")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation; the best counts")
    args = parser.parse_args()
    n = 500 if args.quick else 2000
    torch.set_num_threads(1)

    x = digits_2000(n)
    order = np.concatenate(C.batch_partition(n, args.batch_size, 1, 0))
    x_ordered = x[torch.as_tensor(order)]  # the very batches layer_cka forms, handed to the loaders in order
    layers = Plain20(seed=1).layer_names
    assert len(layers) == N_LAYERS

    print(f"{N_LAYERS}x{N_LAYERS} layer grid, {n} examples, batches of {args.batch_size}, 1 pass, CPU, "
          f"torch threads={torch.get_num_threads()}, best of {args.repeats} runs after one untimed warm-up")

    runners = [("reprobust", run_ours, x), ("cka-pytorch 1.1.3", run_cka_pytorch, x_ordered),
               ("torch-cka 0.21", run_torch_cka, x_ordered)]
    results = {}
    for dtype in (torch.float64, torch.float32):
        # Default dtype float64 makes the packages' own accumulators (torch.zeros / torch.ones) float64 too.
        torch.set_default_dtype(dtype)
        a, b = Plain20(seed=1).to(dtype).eval(), Plain20(seed=2).to(dtype).eval()
        for name, fn, inputs in runners:
            try:
                fn(a, b, inputs[: 2 * args.batch_size].to(dtype), layers, args.batch_size)  # warm-up, untimed
                out, t = timed(fn, a, b, inputs.to(dtype), layers, args.batch_size, repeats=args.repeats)
                if np.isnan(out).any():
                    raise FloatingPointError("NaN in the CKA matrix")
                results[name, dtype] = (out, t, "")
            except (AssertionError, FloatingPointError) as err:
                results[name, dtype] = (None, float("nan"), f"failed: {err}")
    torch.set_default_dtype(torch.float32)

    for dtype in (torch.float64, torch.float32):
        ref, t_ref, _ = results["reprobust", dtype]
        print(f"\nmodels and data in {str(dtype).replace('torch.', '')}:")
        print(f"{'implementation':<20}{'time [s]':>10}{'ours faster by':>16}{'max|Δ| vs ours':>17}  note")
        for name, _, _ in runners:
            out, t, note = results[name, dtype]
            diff = "" if out is None else f"{np.abs(out - ref).max():.1e}"
            print(f"{name:<20}{t:>10.2f}{t / t_ref:>15.1f}x{diff:>17}  {note}")
    ref64 = results["reprobust", torch.float64][0]
    worst = max(np.abs(results[name, torch.float64][0] - ref64).max() for name, _, _ in runners[1:]
                if results[name, torch.float64][0] is not None)
    print(f"\nfloat64 agreement within 1e-6: {'yes' if worst <= 1e-6 else 'NO'} (worst {worst:.1e}); "
          f"grid mean CKA {ref64.mean():.4f}, diagonal mean {np.diag(ref64).mean():.4f}")
    label_check()


if __name__ == "__main__":
    main()
