"""Input-unit gradients: how strongly each hidden unit depends on the input, per sample.

Leavitt & Morcos (arXiv 2010.07693) report that "the input-unit gradient is more variable across
samples and units in high-selectivity networks". The operationalisation here (the paper's exact one is
not known to us) is:

* ``g_u(x) = ∂a_u(x)/∂x`` for a unit ``u`` (a post-ReLU channel averaged over space) and input ``x``,
  and its magnitude ``m_{u,x} = ‖g_u(x)‖_p``;
* variability across **samples**: the coefficient of variation ``std_x(m)/mean_x(m)`` per unit,
  averaged over units;
* variability across **units**: ``std_u(m)/mean_u(m)`` per sample, averaged over samples.

The gradients of all units of a layer are computed with one batched backward pass
(``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``vmap`` over the unit axis), using that in
eval mode every sample's activation depends on its own input only, so the gradient of the batch sum
is the per-sample gradient. The forward pass stops at the requested layer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..validation import check_choice, check_range
from .selectivity import unit_activations

NORMS = (1, 2, "inf")


class _StopForward(Exception):
    """Raised by the hook to skip the layers after the one we need."""


def _layer_output(model: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Run ``model`` on ``x`` up to ``layer`` and return that layer's output (with its graph)."""
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(f"unknown layer {layer!r}; valid choices: {', '.join(names)}") from None
    captured = []

    def hook(_module, _inputs, output):
        # clone: an in-place op after the hook must not alter the captured tensor
        captured.append(output.clone())
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"layer {layer!r} was not called in the forward pass")
    return captured[0]


def input_unit_gradient_norms(model: torch.nn.Module, x: torch.Tensor, layer: str,
                              units: Sequence[int] | None = None, norm=2, batch_size: int = 64,
                              max_chunk_bytes: int = 256 * 2**20, max_units: int | None = None) -> np.ndarray:
    """``‖∂a_u/∂x‖`` for every sample and unit of one layer.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode here (BatchNorm must use running statistics so samples do not interact).
    x : Tensor of shape (N, C, H, W)
        Inputs in the model's pixel space.
    layer : str
        Name of a module (``model.get_submodule``) whose output are the (post-ReLU) activations; conv
        channels are averaged over space.
    units : sequence of int, optional
        Subset of units (default: all).
    norm : {1, 2, "inf"}
        Norm of the input gradient.
    batch_size : int
    max_chunk_bytes : int
        Memory cap for the batched (units × samples × input) gradient tensor.
    max_units : int, optional
        Keep only the first ``max_units`` of the (selected) units, to bound the cost.

    Returns
    -------
    ndarray of shape (N, U), float64

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU())
    >>> input_unit_gradient_norms(net, torch.rand(5, 1, 2, 2), "2").shape
    (5, 3)
    """
    check_choice("norm", norm, NORMS)
    check_range("batch_size", batch_size, low=1)
    if max_units is not None:
        check_range("max_units", max_units, low=1)
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    ord_ = float("inf") if norm == "inf" else norm
    out_rows = []
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].to(device).detach().requires_grad_(True)
            acts = unit_activations(_layer_output(model, xb, layer))  # (B, U_all)
            if units is not None:
                acts = acts[:, list(units)]
            if max_units is not None:
                acts = acts[:, :max_units]
            n_units = acts.shape[1]
            per_unit_bytes = xb.numel() * xb.element_size()
            chunk = max(1, min(n_units, max_chunk_bytes // max(per_unit_bytes, 1)))
            norms_b = []
            for u0 in range(0, n_units, chunk):
                u1 = min(n_units, u0 + chunk)
                # grad_outputs[k] selects unit u0+k for every sample: one vmapped backward for the chunk
                selector = torch.zeros(u1 - u0, *acts.shape, dtype=acts.dtype, device=acts.device)
                selector[torch.arange(u1 - u0), :, torch.arange(u0, u1)] = 1.0
                retain = u1 < n_units
                try:
                    (grads,) = torch.autograd.grad(acts, xb, grad_outputs=selector, retain_graph=retain,
                                                   is_grads_batched=True)
                except RuntimeError:
                    # some ops have no batching rule: fall back to one backward per unit
                    grads = torch.stack([
                        torch.autograd.grad(acts, xb, grad_outputs=selector[k], retain_graph=True)[0]
                        for k in range(u1 - u0)])
                norms_b.append(torch.linalg.vector_norm(grads.flatten(2), ord=ord_, dim=2).T)  # (B, chunk)
            out_rows.append(torch.cat(norms_b, dim=1).detach().double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out_rows, dim=0).numpy()


def coefficient_of_variation(values: np.ndarray, axis: int) -> np.ndarray:
    """``std / mean`` along ``axis``; NaN where the mean is 0 (nothing to compare).

    Parameters
    ----------
    values : ndarray
    axis : int

    Returns
    -------
    ndarray with ``axis`` removed

    Example
    -------
    >>> coefficient_of_variation(np.array([[1.0, 3.0], [0.0, 0.0]]), axis=1).tolist()
    [0.5, nan]
    """
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=axis)
    std = values.std(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, std / np.where(mean > 0, mean, 1.0), np.nan)


def gradient_variability(norms: np.ndarray) -> dict:
    """Variability of input-unit gradient magnitudes across samples and across units.

    Parameters
    ----------
    norms : ndarray of shape (N, U)
        Output of :func:`input_unit_gradient_norms`.

    Returns
    -------
    dict with
        ``cv_across_samples`` : mean over units of std_x/mean_x (units that never get a gradient, i.e.
        dead units, are left out),
        ``cv_across_units`` : mean over samples of std_u/mean_u,
        ``mean_norm`` : mean magnitude,
        ``zero_unit_fraction`` : fraction of units with zero gradient for every sample.

    Example
    -------
    >>> out = gradient_variability(np.array([[1.0, 1.0], [1.0, 1.0]]))
    >>> out["cv_across_samples"], out["cv_across_units"]
    (0.0, 0.0)
    """
    norms = np.asarray(norms, dtype=np.float64)
    if norms.ndim != 2:
        raise ValueError(f"norms.ndim={norms.ndim} is out of range; valid range: 2 (samples × units)")
    cv_samples = coefficient_of_variation(norms, axis=0)
    cv_units = coefficient_of_variation(norms, axis=1)
    return dict(
        cv_across_samples=float(np.nanmean(cv_samples)) if np.isfinite(cv_samples).any() else float("nan"),
        cv_across_units=float(np.nanmean(cv_units)) if np.isfinite(cv_units).any() else float("nan"),
        mean_norm=float(norms.mean()),
        zero_unit_fraction=float((norms.max(axis=0) <= 0).mean()),
    )


def layer_gradient_variability(model: torch.nn.Module, x: torch.Tensor, layers: Sequence[str],
                               max_units: int | None = None, norm=2, batch_size: int = 64) -> list[dict]:
    """:func:`gradient_variability` of the input-unit gradients of several layers.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (N, C, H, W)
    layers : sequence of str
    max_units : int, optional
        Use the first ``max_units`` units (channels) of each layer, to bound the cost.
    norm : {1, 2, "inf"}
    batch_size : int

    Returns
    -------
    list of dict with keys ``layer``, ``n_units`` and those of :func:`gradient_variability`
    """
    rows = []
    for layer in layers:
        norms = input_unit_gradient_norms(model, x, layer, norm=norm, batch_size=batch_size, max_units=max_units)
        rows.append(dict(layer=layer, n_units=norms.shape[1], **gradient_variability(norms)))
    return rows
