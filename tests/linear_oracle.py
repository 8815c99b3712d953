"""Linear classifiers whose minimal adversarial perturbation is known in closed form (test helper)."""

import torch
from torch import nn

DIM = 16


class Linear(nn.Module):
    """Logits ``W (x − 0.5) + b`` on 4×4 images: the decision regions are polytopes."""

    def __init__(self, n_classes, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.lin = nn.Linear(DIM, n_classes)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(n_classes, DIM, generator=g))
            self.lin.bias.copy_(0.1 * torch.randn(n_classes, generator=g))

    def forward(self, x):
        return self.lin(x.flatten(1) - 0.5)


def minimal_distance(model, x, y, norm):
    """Exact smallest perturbation (in ``norm``) that misclassifies each image, ignoring the [0, 1] box:
    the closest of the half-spaces ``z_j ≥ z_y``, at distance ``(z_y − z_j) / ‖w_y − w_j‖_*`` (dual norm)."""
    with torch.no_grad():
        z = model(x)
        w = model.lin.weight
        diff = w[y][:, None, :] - w[None, :, :]
        dual = diff.abs().sum(2) if norm == "linf" else diff.norm(dim=2)
        d = (z.gather(1, y[:, None]) - z) / dual
        d[torch.arange(len(y)), y] = torch.inf
        return d.min(1).values


def linear_problem(n_classes, norm, n=120):
    model = Linear(n_classes)
    g = torch.Generator().manual_seed(1)
    x = 0.5 + 0.05 * (2 * torch.rand(n, 1, 4, 4, generator=g) - 1)
    y = model(x).argmax(1)
    d = minimal_distance(model, x, y, norm)
    eps = float(d.median())
    # The oracle ignores the box: check that no minimal perturbation can reach it.
    assert eps + 0.05 < 0.45 if norm == "linf" else eps < 0.4
    return model, x, y, d, eps


def check_oracle(res, d, eps, tol):
    must, cannot = d < eps / (1 + tol), d > eps
    assert must.sum() > 20 and cannot.sum() > 20
    assert res.success[must].all(), f"missed images with d/eps = {(d[must & ~res.success] / eps).tolist()}"
    assert not res.success[cannot].any()  # impossible inside the ball: catches a wrong projection
