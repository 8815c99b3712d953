"""Linear dimensionality of representations: PCA components for a variance fraction, participation ratio.

Leavitt & Morcos (arXiv 2010.07693) relate class selectivity to the dimensionality of (early-layer)
representations, and compare how much corrupted and adversarial inputs raise it. The paper's exact
estimator is not known to us, so both usual ones are provided:

* ``n_components``: the number of principal components needed to explain a fraction (default 95 %)
  of the variance;
* participation ratio :math:`PR = (\\sum_i \\lambda_i)^2 / \\sum_i \\lambda_i^2` of the covariance
  eigenvalues :math:`\\lambda_i`.

Both are computed from the covariance spectrum, obtained with ``eigh`` of the D×D covariance when
there are more samples than features, and with the singular values of the centred N×D data otherwise
(same nonzero spectrum, cheaper). Leading batch dimensions are supported, so several layers of equal
width or several conditions can be done in one call.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..validation import check_choice, check_range

REDUCTIONS = ("flatten", "channel_mean")


def covariance_spectrum(x) -> torch.Tensor:
    """Eigenvalues of the sample covariance, in descending order.

    Parameters
    ----------
    x : Tensor or ndarray of shape (..., N, D)
        N samples of D features; leading dimensions are batched.

    Returns
    -------
    Tensor of shape (..., min(N, D)), float64, descending, non-negative

    Example
    -------
    >>> covariance_spectrum(np.array([[0., 0.], [2., 0.]])).tolist()
    [2.0, 0.0]
    """
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().double()
    if x.ndim < 2:
        raise ValueError(f"x.ndim={x.ndim} is out of range; valid range: >= 2 (samples × features)")
    n, d = x.shape[-2], x.shape[-1]
    if n < 2:
        raise ValueError(f"number of samples={n} is out of range; valid range: >= 2")
    centred = x - x.mean(dim=-2, keepdim=True)
    if d <= n:
        cov = centred.transpose(-1, -2) @ centred / (n - 1)
        eig = torch.linalg.eigvalsh(cov).flip(-1)
    else:
        eig = torch.linalg.svdvals(centred) ** 2 / (n - 1)
    return eig.clamp_min(0.0)


def n_components_for_variance(x=None, threshold: float = 0.95, *, spectrum=None):
    """Number of principal components needed to explain ``threshold`` of the variance.

    Parameters
    ----------
    x : Tensor or ndarray of shape (..., N, D), optional
    threshold : float in (0, 1]
    spectrum : Tensor of shape (..., K), optional
        Precomputed :func:`covariance_spectrum` (then ``x`` is not needed).

    Returns
    -------
    int or ndarray of int with the leading (batch) shape
        0 for data without variance.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 10))   # rank 3
    >>> int(n_components_for_variance(x, 0.999999))
    3
    """
    check_range("threshold", threshold, low=0, high=1, low_inclusive=False)
    eig = covariance_spectrum(x) if spectrum is None else torch.as_tensor(spectrum).double()
    total = eig.sum(dim=-1, keepdim=True)
    ratio = eig.cumsum(dim=-1) / total.clamp_min(torch.finfo(torch.float64).tiny)
    # count components strictly below the threshold, +1 for the one that crosses it; a small tolerance
    # keeps exact-rank data from needing one spurious component because of round-off
    k = (ratio < threshold - 1e-12).sum(dim=-1) + 1
    k = torch.where(total.squeeze(-1) > 0, k, torch.zeros_like(k))
    k = k.clamp_max(eig.shape[-1])
    return int(k) if k.ndim == 0 else k.numpy()


def participation_ratio(x=None, *, spectrum=None):
    """Participation ratio ``(Σλ)² / Σλ²`` of the covariance eigenvalues.

    Parameters
    ----------
    x : Tensor or ndarray of shape (..., N, D), optional
    spectrum : Tensor of shape (..., K), optional

    Returns
    -------
    float or ndarray with the leading (batch) shape
        Between 1 (one direction) and the number of features (isotropic); 0 without variance.

    Example
    -------
    >>> float(participation_ratio(spectrum=torch.tensor([1.0, 1.0, 0.0])))
    2.0
    """
    eig = covariance_spectrum(x) if spectrum is None else torch.as_tensor(spectrum).double()
    sq = (eig ** 2).sum(dim=-1)
    pr = torch.where(sq > 0, eig.sum(dim=-1) ** 2 / sq.clamp_min(torch.finfo(torch.float64).tiny),
                     torch.zeros_like(sq))
    return float(pr) if pr.ndim == 0 else pr.numpy()


def _features(acts, reduce: str) -> torch.Tensor:
    acts = torch.as_tensor(np.asarray(acts) if not isinstance(acts, torch.Tensor) else acts).detach()
    if acts.ndim > 2 and reduce == "channel_mean":
        return acts.flatten(2).mean(dim=2)
    return acts.flatten(1)


def layer_dimensionality(activations_by_layer: Mapping[str, object], threshold: float = 0.95,
                         reduce: str = "flatten") -> list[dict]:
    """``n_components`` and participation ratio of every layer's representation.

    Parameters
    ----------
    activations_by_layer : mapping layer name -> activations of shape (N, ...)
        Use the same N for every condition you compare (both estimators grow with N for flattened maps).
    threshold : float
        Variance fraction for ``n_components``.
    reduce : {"flatten", "channel_mean"}
        Flatten full feature maps (C·H·W features) or average each channel over space (C features).

    Returns
    -------
    list of dict with keys ``layer``, ``n_components``, ``participation_ratio``, ``n_features``

    Example
    -------
    >>> rows = layer_dimensionality({"a": np.eye(4)}, threshold=0.5)
    >>> rows[0]["n_components"], rows[0]["n_features"]
    (2, 4)
    """
    check_choice("reduce", reduce, REDUCTIONS)
    rows = []
    for name, acts in activations_by_layer.items():
        feats = _features(acts, reduce)
        eig = covariance_spectrum(feats)
        rows.append(dict(layer=name, n_components=n_components_for_variance(spectrum=eig, threshold=threshold),
                         participation_ratio=participation_ratio(spectrum=eig), n_features=feats.shape[1]))
    return rows


def perturbation_dimensionality(clean: Mapping[str, object], perturbed: Mapping[str, object],
                                threshold: float = 0.95, reduce: str = "flatten") -> list[dict]:
    """Dimensionality of clean and perturbed representations and of the change between them.

    Computes, per layer, (a) the dimensionality of the clean and of the perturbed activations
    (their difference is the "Δdim" of the later paper versions) and (b) the dimensionality of the
    perturbation-induced change ``perturbed − clean`` (Leavitt & Morcos' workshop version).

    Parameters
    ----------
    clean, perturbed : mapping layer name -> activations of shape (N, ...)
        Row ``i`` of ``perturbed`` must be the perturbed version of row ``i`` of ``clean``.
    threshold : float
    reduce : {"flatten", "channel_mean"}

    Returns
    -------
    list of dict with keys ``layer``, ``n_clean``, ``n_perturbed``, ``n_delta``, ``pr_clean``,
    ``pr_perturbed``, ``pr_delta`` (``n_*``: components for ``threshold`` of the variance,
    ``pr_*``: participation ratio)

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(50, 1)) @ np.ones((1, 6))          # rank 1
    >>> rows = perturbation_dimensionality({"l": a}, {"l": a + rng.normal(size=(50, 6))})
    >>> rows[0]["n_clean"] < rows[0]["n_delta"]
    True
    """
    check_choice("reduce", reduce, REDUCTIONS)
    rows = []
    for name, acts in clean.items():
        if name not in perturbed:
            raise ValueError(f"perturbed activations lack layer {name!r}; valid choices: {sorted(perturbed)}")
        c, p = _features(acts, reduce), _features(perturbed[name], reduce)
        if c.shape != p.shape:
            raise ValueError(f"layer {name!r}: perturbed shape {tuple(p.shape)} != clean shape {tuple(c.shape)}")
        spectra = covariance_spectrum(torch.stack([c, p, p - c]).double())  # one batched decomposition
        ks = n_components_for_variance(spectrum=spectra, threshold=threshold)
        prs = participation_ratio(spectrum=spectra)
        rows.append(dict(layer=name, n_clean=int(ks[0]), n_perturbed=int(ks[1]), n_delta=int(ks[2]),
                         pr_clean=float(prs[0]), pr_perturbed=float(prs[1]), pr_delta=float(prs[2])))
    return rows
