"""Centered kernel alignment (CKA) between layer representations.

The functions follow the reference code of Kornblith et al. (2019, "Similarity of Neural Network
Representations Revisited", the Google demo colab) and the minibatch estimator of Nguyen, Raghu & Kornblith
(2021, "Do Wide and Deep Networks Learn the Same Things?"), which is also what Cianfarani et al. (2022) use.
Each formula is one short function named after the quantity it computes:

=================================  ================================================================
``gram_linear(x)``                 K = X Xᵀ
``gram_rbf(x, threshold)``         K_ij = exp(−‖x_i − x_j‖² / (2 t² median‖·‖²))
``center_gram(K, unbiased)``       H K H (biased) or the U-statistic centring of Székely & Rizzo (2014)
``hsic_biased(K, L)``              HSIC₀ = tr(K H L H) / (n − 1)²
``hsic_unbiased(K, L)``            HSIC₁, Song et al. (2012) = Nguyen et al. (2021) Eq. 3
``cka(K, L, debiased)``            HSIC(K, L) / √(HSIC(K, K) HSIC(L, L)) on full-data Grams
``feature_space_linear_cka``       ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), cheaper when n > p
``MinibatchCKA``                   mean_i HSIC₁(K_i, L_i) / √(mean_i HSIC₁(K_i, K_i) · mean_i HSIC₁(L_i, L_i))
``layer_cka(model_a, model_b, x)`` layer × layer minibatch CKA of two networks on identical batches
=================================  ================================================================

Everything works in *Gram space*: each layer's n×n Gram matrix is built right after the forward pass and the
features are dropped, all layers' centred Grams are stacked into one L×n² matrix and every layer pair comes
out of a single matrix product, accumulated in float64. This never forms a d×d feature covariance, whose cost
grows with the (large) conv-map dimension instead of the (small) batch size.

Inputs may be NumPy arrays or torch tensors; matrices come back as float64 torch tensors, scalars as floats.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..validation import check_choice, check_range

KERNELS = ("linear", "rbf")
ESTIMATORS = ("unbiased", "biased")
MIN_BATCH_EXAMPLES = 4  # HSIC₁ divides by n(n − 3) and (n − 1)(n − 2)


def _as_float64(x) -> torch.Tensor:
    """Return ``x`` as a float64 tensor (NumPy arrays are converted, tensors keep their device)."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _flatten_examples(x) -> torch.Tensor:
    """Flatten every dimension but the first (examples): a C×H×W map becomes a C·H·W vector."""
    x = _as_float64(x)
    if x.ndim < 2:
        raise ValueError(f"features must have shape (n_examples, ...) with ndim >= 2; got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _check_square(name: str, gram: torch.Tensor) -> None:
    if gram.ndim < 2 or gram.shape[-1] != gram.shape[-2]:
        raise ValueError(f"{name} must be a square (..., n, n) Gram matrix; got shape {tuple(gram.shape)}")


# ---------------------------------------------------------------------------------------------------------------
# Kernels and centring (Kornblith et al. 2019, Google demo)
# ---------------------------------------------------------------------------------------------------------------


def gram_linear(x) -> torch.Tensor:
    """Linear-kernel Gram matrix K = X Xᵀ.

    Parameters
    ----------
    x : array-like of shape (n_examples, n_features) or (n_examples, ...)
        Representations; trailing dimensions are flattened.

    Returns
    -------
    gram : torch.Tensor of shape (n_examples, n_examples), float64

    Example
    -------
    >>> gram_linear(np.eye(3)).diagonal().tolist()
    [1.0, 1.0, 1.0]
    """
    x = _flatten_examples(x)
    return x @ x.T


def _median(values: torch.Tensor) -> torch.Tensor:
    """NumPy-compatible median (mean of the two middle values for an even count; torch picks the lower)."""
    flat = values.reshape(-1)
    m = flat.numel()
    lower = torch.kthvalue(flat, (m + 1) // 2).values
    if m % 2:
        return lower
    return (lower + torch.kthvalue(flat, m // 2 + 1).values) / 2


def gram_rbf(x, threshold: float = 1.0) -> torch.Tensor:
    """RBF-kernel Gram matrix with the bandwidth set relative to the median distance.

    K_ij = exp(−‖x_i − x_j‖² / (2 t² m)), where m is the median of all squared distances, the zero diagonal
    included, as in the Google demo (its ``threshold`` t is a "fraction of the median distance").

    Parameters
    ----------
    x : array-like of shape (n_examples, n_features)
    threshold : float, default=1.0
        t > 0; Kornblith et al. use 0.5 in their demo.

    Returns
    -------
    gram : torch.Tensor of shape (n_examples, n_examples), float64

    Example
    -------
    >>> float(gram_rbf(np.random.default_rng(0).normal(size=(5, 3)), 0.5)[0, 0])
    1.0
    """
    check_range("threshold", threshold, low=0, low_inclusive=False)
    x = _flatten_examples(x)
    dot = x @ x.T
    sq_norms = dot.diagonal()
    sq_distances = (sq_norms[:, None] + sq_norms[None, :] - 2 * dot).clamp_min(0)
    return torch.exp(-sq_distances / (2 * threshold**2 * _median(sq_distances)))


def _center_gram_stacked(grams: torch.Tensor, unbiased: bool, overwrite: bool = False) -> torch.Tensor:
    """Centre a stack (..., n, n) of symmetric Grams without input checks (a float64 copy, or ``grams``
    itself when ``overwrite`` and it is float64 already)."""
    n = grams.shape[-1]
    centred = grams.to(torch.float64)
    if not (overwrite and centred is grams):
        centred = centred.clone()
    if unbiased:
        # U-statistic centring (Székely & Rizzo 2014); ⟨Ũ_K, Ũ_L⟩ / (n(n−3)) = HSIC₁ exactly.
        centred.diagonal(dim1=-2, dim2=-1).zero_()
        means = centred.sum(dim=-2) / (n - 2)
        means -= means.sum(dim=-1, keepdim=True) / (2 * (n - 1))
        centred -= means[..., :, None]
        centred -= means[..., None, :]
        centred.diagonal(dim1=-2, dim2=-1).zero_()
    else:
        # H K H: subtract row and column means, add back the grand mean.
        means = centred.mean(dim=-2)
        means -= means.mean(dim=-1, keepdim=True) / 2
        centred -= means[..., :, None]
        centred -= means[..., None, :]
    return centred


def center_gram(gram, unbiased: bool = False) -> torch.Tensor:
    """Centre a symmetric Gram matrix (or a stack of them).

    Biased: H K H with H = I − 11ᵀ/n. Unbiased (``unbiased=True``): zero the diagonal, subtract the
    U-statistic row/column means and zero the diagonal again, so that ⟨Ũ_K, Ũ_L⟩ / (n(n − 3)) equals the
    unbiased HSIC₁ of Song et al. (2012).

    Parameters
    ----------
    gram : array-like of shape (n, n) or (n_layers, n, n)
        Symmetric Gram matrices.
    unbiased : bool, default=False

    Returns
    -------
    centred : torch.Tensor, same shape as ``gram``, float64
        A new tensor; the input is left untouched.

    Example
    -------
    >>> k = center_gram(gram_linear(np.arange(6.0).reshape(3, 2)))
    >>> bool(torch.allclose(k.sum(0), torch.zeros(3, dtype=torch.float64)))
    True
    """
    gram = _as_float64(gram)
    _check_square("gram", gram)
    if not torch.allclose(gram, gram.transpose(-1, -2)):
        raise ValueError("gram must be symmetric; got a non-symmetric matrix")
    if unbiased and gram.shape[-1] < MIN_BATCH_EXAMPLES:
        raise ValueError(f"unbiased centring needs n >= {MIN_BATCH_EXAMPLES} examples; got n={gram.shape[-1]}")
    return _center_gram_stacked(gram, unbiased)


# ---------------------------------------------------------------------------------------------------------------
# HSIC estimators and full-data CKA
# ---------------------------------------------------------------------------------------------------------------


def hsic_biased(gram_x, gram_y) -> float:
    """Biased HSIC₀(K, L) = tr(K H L H) / (n − 1)² (Gretton et al. 2005; Kornblith et al. 2019 Eq. 3).

    Parameters
    ----------
    gram_x, gram_y : array-like of shape (n, n)

    Returns
    -------
    hsic : float

    Example
    -------
    >>> x = np.random.default_rng(0).normal(size=(10, 3))
    >>> hsic_biased(gram_linear(x), gram_linear(x)) > 0
    True
    """
    kx, ky = _as_float64(gram_x), _as_float64(gram_y)
    _check_square("gram_x", kx)
    _check_square("gram_y", ky)
    n = kx.shape[0]
    h = torch.eye(n, dtype=torch.float64, device=kx.device) - 1.0 / n
    return float(torch.trace(kx @ h @ ky @ h) / (n - 1) ** 2)


def hsic_unbiased(gram_x, gram_y) -> float:
    """Unbiased HSIC₁ of Song et al. (2012), Eq. 3 of Nguyen, Raghu & Kornblith (2021).

    HSIC₁(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3)),
    with K̃, L̃ the Grams with their diagonals set to zero.

    Parameters
    ----------
    gram_x, gram_y : array-like of shape (n, n), n >= 4

    Returns
    -------
    hsic : float

    Example
    -------
    >>> x = np.random.default_rng(0).normal(size=(10, 3))
    >>> hsic_unbiased(gram_linear(x), gram_linear(x)) > 0
    True
    """
    kx, ky = _as_float64(gram_x).clone(), _as_float64(gram_y).clone()
    _check_square("gram_x", kx)
    _check_square("gram_y", ky)
    n = kx.shape[0]
    check_range("number of examples n", n, low=MIN_BATCH_EXAMPLES)
    kx.fill_diagonal_(0)
    ky.fill_diagonal_(0)
    ones = torch.ones(n, dtype=torch.float64, device=kx.device)
    trace_term = torch.sum(kx * ky)  # tr(K̃L̃) for symmetric matrices
    sum_term = (ones @ kx @ ones) * (ones @ ky @ ones) / ((n - 1) * (n - 2))
    cross_term = 2.0 / (n - 2) * (ones @ kx @ ky @ ones)
    return float((trace_term + sum_term - cross_term) / (n * (n - 3)))


def cka(gram_x, gram_y, debiased: bool = False) -> float:
    """Full-data CKA between two Gram matrices (Kornblith et al. 2019 Eq. 4).

    Parameters
    ----------
    gram_x, gram_y : array-like of shape (n, n)
        Gram matrices of the same n examples (``gram_linear`` or ``gram_rbf``).
    debiased : bool, default=False
        Use the unbiased HSIC₁ (U-statistic centring); the ratio is then "still generally biased, but the
        bias is reduced" and may be slightly negative.

    Returns
    -------
    cka : float
        In [0, 1] when ``debiased=False``.

    Example
    -------
    >>> x = np.random.default_rng(0).normal(size=(20, 5))
    >>> round(cka(gram_linear(x), gram_linear(2 * x)), 6)
    1.0
    """
    kx = center_gram(gram_x, unbiased=debiased)
    ky = center_gram(gram_y, unbiased=debiased)
    if kx.shape != ky.shape:
        raise ValueError(f"gram_x and gram_y must have the same shape; got {tuple(kx.shape)} and {tuple(ky.shape)}")
    scaled_hsic = torch.sum(kx * ky)
    return float(scaled_hsic / (torch.linalg.norm(kx) * torch.linalg.norm(ky)))


def _debiased_dot_product_similarity(xty_sq, sum_sq_x, sum_sq_y, sq_norms_dot, n) -> torch.Tensor:
    """n(n−3)·HSIC₁ in feature space (Google ``_debiased_dot_product_similarity_helper``)."""
    return xty_sq - n / (n - 2.0) * sq_norms_dot + sum_sq_x * sum_sq_y / ((n - 1) * (n - 2))


def feature_space_linear_cka(features_x, features_y, debiased: bool = False) -> float:
    """Linear CKA from features: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred X, Y.

    Equal to ``cka(gram_linear(X), gram_linear(Y), debiased)`` but cheaper when n exceeds the feature
    dimensions (it forms p₁×p₂ products instead of n×n Grams).

    Parameters
    ----------
    features_x : array-like of shape (n_examples, p1)
    features_y : array-like of shape (n_examples, p2)
    debiased : bool, default=False

    Returns
    -------
    cka : float

    Example
    -------
    >>> x = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(feature_space_linear_cka(x, x), 6)
    1.0
    """
    x, y = _flatten_examples(features_x), _flatten_examples(features_y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"features_x and features_y must hold the same examples; got n={x.shape[0]} and n={y.shape[0]}")
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    xty = torch.linalg.norm(x.T @ y) ** 2
    xtx = torch.linalg.norm(x.T @ x)
    yty = torch.linalg.norm(y.T @ y)
    if debiased:
        n = x.shape[0]
        check_range("number of examples n", n, low=MIN_BATCH_EXAMPLES)
        sq_x = (x * x).sum(1)
        sq_y = (y * y).sum(1)
        sum_sq_x, sum_sq_y = sq_x.sum(), sq_y.sum()
        xty = _debiased_dot_product_similarity(xty, sum_sq_x, sum_sq_y, sq_x @ sq_y, n)
        xtx = torch.sqrt(_debiased_dot_product_similarity(xtx**2, sum_sq_x, sum_sq_x, sq_x @ sq_x, n))
        yty = torch.sqrt(_debiased_dot_product_similarity(yty**2, sum_sq_y, sum_sq_y, sq_y @ sq_y, n))
    return float(xty / (xtx * yty))


# ---------------------------------------------------------------------------------------------------------------
# Minibatch CKA in Gram space (Nguyen et al. 2021)
# ---------------------------------------------------------------------------------------------------------------


def stack_grams(features: Sequence, kernel: str = "linear", threshold: float = 1.0) -> torch.Tensor:
    """Gram matrices of several layers on the same batch, stacked.

    Parameters
    ----------
    features : sequence of L arrays, each of shape (n_examples, ...)
        One entry per layer; trailing dimensions are flattened (float64 products, so large conv maps
        do not lose precision).
    kernel : {"linear", "rbf"}, default="linear"
    threshold : float, default=1.0
        RBF bandwidth as a fraction of the median distance (ignored for ``"linear"``).

    Returns
    -------
    grams : torch.Tensor of shape (L, n_examples, n_examples), float64

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> tuple(stack_grams([rng.normal(size=(6, 3)), rng.normal(size=(6, 2, 2))]).shape)
    (2, 6, 6)
    """
    check_choice("kernel", kernel, KERNELS)
    if len(features) == 0:
        raise ValueError("features must hold at least one layer; got an empty sequence")
    build = gram_linear if kernel == "linear" else (lambda f: gram_rbf(f, threshold))
    grams = [build(f) for f in features]
    sizes = {g.shape[0] for g in grams}
    if len(sizes) != 1:
        raise ValueError(f"every layer must hold the same examples; got batch sizes {sorted(sizes)}")
    return torch.stack(grams)


class MinibatchCKA:
    """Accumulate layer × layer minibatch CKA over batches, all pairs in one matrix product.

    For every batch i the L_a stacked Grams of model A and the L_b of model B are centred (U-statistic
    centring for the default unbiased estimator), flattened to L×n² matrices G_a, G_b, and
    HSIC(K^l_i, L^m_i) = (G_a G_bᵀ)_lm / (n(n−3)) is added to a float64 running sum, together with the
    self terms HSIC(K^l_i, K^l_i) and HSIC(L^m_i, L^m_i). Then (Nguyen et al. 2021)

        CKA(l, m) = mean_i HSIC₁(K^l_i, L^m_i) / √(mean_i HSIC₁(K^l_i, K^l_i) · mean_i HSIC₁(L^m_i, L^m_i)).

    The per-batch 1/(n(n−3)) factor is kept (Google's code drops it), so batches of unequal size are still
    exact HSIC₁ estimates; as in the authors' code every batch has equal weight in the means.

    Parameters
    ----------
    estimator : {"unbiased", "biased"}, default="unbiased"
        ``"unbiased"``: HSIC₁ (the paper's estimator). ``"biased"``: HSIC₀ = tr(KHLH)/(n−1)² per batch, for
        diagnostics; it is strongly inflated for high-dimensional features at small n.

    Attributes
    ----------
    n_batches : int
        Number of batches seen so far.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(32, 5))
    >>> m = MinibatchCKA()
    >>> m.update(stack_grams([x, x @ rng.normal(size=(5, 5))]))
    >>> m.compute().shape
    (2, 2)
    """

    def __init__(self, estimator: str = "unbiased"):
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated batches."""
        self._cross = None
        self._self_a = None
        self._self_b = None
        self.n_batches = 0

    def _centre_flat(self, grams, overwrite: bool = False) -> torch.Tensor:
        grams = _as_float64(grams)
        if grams.ndim == 2:
            grams = grams[None]
        _check_square("grams", grams)
        n = grams.shape[-1]
        if n < MIN_BATCH_EXAMPLES:
            raise ValueError(
                f"minibatch CKA needs at least {MIN_BATCH_EXAMPLES} examples per batch (HSIC₁ divides by "
                f"n(n-3)); got a batch of n={n}; use a larger batch_size or drop the short last batch"
            )
        centred = _center_gram_stacked(grams, unbiased=self.estimator == "unbiased", overwrite=overwrite)
        return centred.reshape(centred.shape[0], n * n)

    def update(self, grams_a, grams_b=None, overwrite_grams: bool = False) -> None:
        """Add one batch.

        Parameters
        ----------
        grams_a : array-like of shape (L_a, n, n)
            Uncentred Gram matrices of model A's layers on this batch (see ``stack_grams``).
        grams_b : array-like of shape (L_b, n, n), optional
            Model B's Grams on the *same* examples in the same order. ``None`` compares model A with itself
            (a within-model heatmap) and reuses the centred stack instead of building it twice.
        overwrite_grams : bool, default=False
            Allow float64 Grams to be centred in place (saves a copy; the caller's Grams are then
            overwritten), like SciPy's ``overwrite_a``.
        """
        flat_a = self._centre_flat(grams_a, overwrite_grams)
        flat_b = flat_a if grams_b is None else self._centre_flat(grams_b, overwrite_grams)
        n_a = int(round(flat_a.shape[1] ** 0.5))
        n_b = int(round(flat_b.shape[1] ** 0.5))
        if n_a != n_b:
            raise ValueError(f"grams_a and grams_b must cover the same batch; got n={n_a} and n={n_b}")
        scale = 1.0 / (n_a * (n_a - 3)) if self.estimator == "unbiased" else 1.0 / (n_a - 1) ** 2
        cross = (flat_a @ flat_b.T) * scale
        self_a = torch.einsum("ij,ij->i", flat_a, flat_a) * scale
        self_b = self_a if grams_b is None else torch.einsum("ij,ij->i", flat_b, flat_b) * scale
        if self._cross is None:
            self._cross, self._self_a, self._self_b = cross, self_a, self_b
        else:
            if cross.shape != self._cross.shape:
                raise ValueError(
                    f"layer counts changed between batches: {tuple(self._cross.shape)} then {tuple(cross.shape)}"
                )
            self._cross = self._cross + cross
            self._self_a = self._self_a + self_a
            self._self_b = self._self_b + self_b
        self.n_batches += 1

    def hsic(self) -> dict:
        """Mean HSIC over batches: ``{"cross": (L_a, L_b), "self_a": (L_a,), "self_b": (L_b,)}`` (NumPy)."""
        if self.n_batches == 0:
            raise ValueError("no batches accumulated; call update() at least once before compute()")
        k = self.n_batches
        return {
            "cross": (self._cross / k).cpu().numpy(),
            "self_a": (self._self_a / k).cpu().numpy(),
            "self_b": (self._self_b / k).cpu().numpy(),
        }

    def compute(self) -> np.ndarray:
        """Return the CKA matrix of shape (L_a, L_b): rows are model A's layers, columns model B's."""
        h = self.hsic()
        return h["cross"] / np.sqrt(np.outer(h["self_a"], h["self_b"]))


def minibatch_cka(batches_a, batches_b=None, estimator: str = "unbiased") -> np.ndarray:
    """Minibatch CKA from an iterable of per-batch layer features.

    Parameters
    ----------
    batches_a : iterable of sequences
        For every batch, the L_a layer features of model A (each of shape (n_batch, ...)).
    batches_b : iterable of sequences, optional
        Model B's features on the same batches; ``None`` for a within-model matrix.
    estimator : {"unbiased", "biased"}, default="unbiased"

    Returns
    -------
    cka : ndarray of shape (L_a, L_b)

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 8))
    >>> batches = [[x[i:i + 16], np.tanh(x[i:i + 16])] for i in range(0, 64, 16)]
    >>> float(minibatch_cka(batches)[0, 0].round(6))
    1.0
    """
    acc = MinibatchCKA(estimator)
    if batches_b is None:
        for feats_a in batches_a:
            acc.update(stack_grams(feats_a))
    else:
        for feats_a, feats_b in zip(batches_a, batches_b, strict=True):
            acc.update(stack_grams(feats_a), stack_grams(feats_b))
    return acc.compute()


# ---------------------------------------------------------------------------------------------------------------
# Networks: identical shuffled batches through both models
# ---------------------------------------------------------------------------------------------------------------


def _module_name(layer: str) -> str:
    """``"relu#1"`` (the second call of a reused module, ``reprobust.features`` convention) → ``"relu"``."""
    return layer.split("#", 1)[0]


def _capture_grams(model, x_batch, layers, pool_features: bool, memory_budget=None) -> torch.Tensor:
    """Forward one batch and return the stacked centred linear Grams of ``layers``, shape (L, n, n).

    Each Gram is formed *inside* the forward hook (``reprobust.features``' ``transform``): centring makes a
    new tensor, so a later in-place op cannot reach it, and the layer's features are never stored.

    With a ``memory_budget`` smaller than a forward pass of the whole batch, the batch goes through the
    model in sub-batches that fit; every layer's features are gathered in host memory and its Gram is
    then formed on the device one layer at a time, as in one pass (per-image forward results do not
    depend on the sub-batch).
    """
    from ..features import capture_activations  # lazy: keeps the pure metric importable on its own
    from ..memory import forward_bytes_per_item, items_per_chunk, parse_budget

    def pooled(a):
        if pool_features and a.ndim == 4:
            a = a.mean(dim=(2, 3))  # global average pooling, the authors' --pool_features
        return a

    def gram(a):
        return centred_linear_gram(pooled(a))

    modules = list(dict.fromkeys(_module_name(name) for name in layers))
    sub = len(x_batch)
    if parse_budget(memory_budget) is not None:
        sub = items_per_chunk(forward_bytes_per_item(model, x_batch[:1]), memory_budget, total=len(x_batch))
    if sub < len(x_batch):
        feats = capture_activations(model, x_batch, modules, batch_size=sub, device=x_batch.device,
                                    transform=lambda a: pooled(a).clone())
        grams = {name: centred_linear_gram(f.to(x_batch.device)) for name, f in feats.items()}
    else:
        grams = capture_activations(model, x_batch, modules, batch_size=len(x_batch), device=x_batch.device,
                                    transform=gram)
    missing = [name for name in layers if name not in grams]
    if missing:
        raise ValueError(f"layer {missing[0]!r} produced no activation; recorded: {', '.join(grams)}")
    return torch.stack([grams[name] for name in layers]).to(x_batch.device)


@functools.cache
def _scipy_blas():
    """SciPy's BLAS wrappers and a handle on the BLAS thread pools loaded with them (looked up once)."""
    from scipy.linalg import blas
    from threadpoolctl import ThreadpoolController

    return blas, ThreadpoolController().select(user_api="blas")


def _self_product(f: torch.Tensor) -> torch.Tensor:
    """``f @ f.T`` of a 2-D tensor. On CPU, BLAS ``?syrk`` forms only one triangle: half the flops.

    Measured on the benchmark's layers (250 examples, 256–4,096 features, one thread): 1.4–2× faster
    than the general product, equal to it up to summation order. BLAS gets torch's CPU thread count, so
    the result does not depend on the number of cores.
    """
    if f.device.type != "cpu" or f.dtype not in (torch.float32, torch.float64) or f.requires_grad:
        return f @ f.T
    blas, pools = _scipy_blas()
    a = np.ascontiguousarray(f.numpy())  # (n, d); a.T is a Fortran-ordered (d, n) view, no copy
    syrk = blas.ssyrk if a.dtype == np.float32 else blas.dsyrk
    with pools.limit(limits=torch.get_num_threads()):
        # (a.T)ᵀ a.T = a aᵀ; syrk writes the upper triangle of a zero-initialised result
        upper = torch.from_numpy(syrk(1.0, a.T, trans=1))
    return upper + upper.triu(1).T


def centred_linear_gram(features) -> torch.Tensor:
    """Linear Gram of batch-centred features, formed in the features' own precision.

    Subtracting each feature's batch mean first is exact for CKA: a constant shift ``x_i + c`` adds
    ``a·1ᵀ + 1·aᵀ + const`` to ``K``, which both the biased (``HKH``) and the unbiased (U-) centring
    remove. It also keeps float32 products accurate (a large shared mean would otherwise swamp the
    variation), so float32 activations get float32 matrix products — about twice as fast on a CPU as
    float64 — and only the n×n Gram is promoted to float64 for centring and accumulation.

    Parameters
    ----------
    features : tensor or array of shape (n_examples, ...)

    Returns
    -------
    gram : torch.Tensor of shape (n_examples, n_examples), float64

    Example
    -------
    >>> centred_linear_gram(torch.ones(3, 2)).abs().max().item()  # constant features: nothing left
    0.0
    """
    f = torch.as_tensor(features)
    f = f.reshape(f.shape[0], -1)
    if not f.is_floating_point():
        f = f.to(torch.float64)
    return _self_product(f - f.mean(dim=0, keepdim=True)).to(torch.float64)


def centred_linear_grams(features: Sequence) -> torch.Tensor:
    """``centred_linear_gram`` of each of L layers' features on the same n examples, stacked: (L, n, n)."""
    return torch.stack([centred_linear_gram(f) for f in features])


HOOKED_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Linear)


def execution_order_layers(model, x, module_types=HOOKED_TYPES) -> list[str]:
    """Names of the modules a forward pass runs, in execution order (the authors' "all" layer set).

    Every module of ``module_types`` (default: Conv2d, BatchNorm2d, ReLU, AvgPool2d, AdaptiveAvgPool2d and
    Linear, as in Cianfarani et al.'s ``--model0_layers all``) and every leaf module named in
    ``model.layer_names`` (e.g. a global-pooling module) is listed in the order it is *called*, not defined (definition order mislabels heatmap rows when the two
    differ). A module called k > 1 times appears as ``name``, ``name#1``, …, matching ``reprobust.features``.
    Containers are never listed.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor of shape (n_examples, ...)
        A few example inputs (only the first two are used).
    module_types : tuple of type, default=HOOKED_TYPES

    Returns
    -------
    layers : list of str

    Example
    -------
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> execution_order_layers(net, torch.zeros(2, 4))
    ['1', '2', '3']
    """
    named = set(getattr(model, "layer_names", ()))
    order: list[str] = []
    calls: dict[str, int] = {}

    def record(name):
        def hook(module, inputs, output):
            k = calls.get(name, 0)
            calls[name] = k + 1
            order.append(name if k == 0 else f"{name}#{k}")

        return hook

    handles = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        # A container listed in ``layer_names`` (a residual block) is left out: its output repeats the
        # output of its last leaf, which is listed already.
        if name and (isinstance(module, module_types) or (name in named and not any(module.children())))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.as_tensor(x)[:2].to(next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return order


def batch_partition(n_examples: int, batch_size: int, passes: int, seed: int) -> list[np.ndarray]:
    """Shuffled near-equal batches over ``passes`` passes, the same for both models.

    Each pass draws a fresh permutation (like the authors' reshuffled loader) and splits it into
    ⌈n / batch_size⌉ batches whose sizes differ by at most one, so no short last batch gets the same weight
    as a full one in the unweighted means.

    Parameters
    ----------
    n_examples, batch_size, passes, seed : int

    Returns
    -------
    batches : list of int ndarrays
        ``passes * ceil(n_examples / batch_size)`` index arrays.

    Example
    -------
    >>> [len(b) for b in batch_partition(14, 5, 2, 0)]  # 2 passes of 3 batches, no short last batch
    [5, 5, 4, 5, 5, 4]
    """
    check_range("n_examples", n_examples, low=MIN_BATCH_EXAMPLES)
    check_range("batch_size", batch_size, low=MIN_BATCH_EXAMPLES)
    check_range("passes", passes, low=1)
    n_batches = -(-n_examples // batch_size)
    if n_examples // n_batches < MIN_BATCH_EXAMPLES:
        raise ValueError(
            f"n_examples={n_examples} with batch_size={batch_size} gives batches of fewer than "
            f"{MIN_BATCH_EXAMPLES} examples; use batch_size >= n_examples or more examples"
        )
    rng = np.random.default_rng(seed)
    return [b for _ in range(passes) for b in np.array_split(rng.permutation(n_examples), n_batches)]


def layer_cka(
    model_a,
    model_b=None,
    x=None,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    batch_size: int = 256,
    passes: int = 3,
    seed: int = 0,
    device="cpu",
    x_b=None,
    pool_features: bool = False,
    estimator: str = "unbiased",
    progress: bool = False,
    memory_budget=None,
) -> np.ndarray:
    """Layer × layer minibatch CKA between two networks (or one network with itself).

    Both models see identical shuffled batches in the same order (``passes`` reshuffles). After each
    forward pass the layers' activations are captured with cloning hooks (``reprobust.features``), turned
    into n×n Grams and dropped; ``MinibatchCKA`` gets all pairs from one matrix product.

    Parameters
    ----------
    model_a : torch.nn.Module
    model_b : torch.nn.Module, optional
        ``None`` (or ``model_a`` itself, with ``x_b=None`` and equal layer lists) gives a within-model matrix
        computed from a single forward pass per batch.
    x : tensor of shape (n_examples, ...)
        Inputs for model A, in [0, 1] pixel space.
    layers_a, layers_b : sequence of str, optional
        Layer names in the models' capture convention; default ``model.layer_names``.
    batch_size : int, default=256
        At least 4 (HSIC₁ is undefined below). Batches are near-equal in size.
    passes : int, default=3
        Number of reshuffled passes over the data (the authors' ``--dataset_passes``).
    seed : int, default=0
        Seeds the batch shuffling.
    device : str or torch.device, default="cpu"
    x_b : tensor of shape (n_examples, ...), optional
        Inputs for model B, example-aligned with ``x`` (e.g. adversarial versions of ``x``); default ``x``.
    pool_features : bool, default=False
        Global-average-pool 4-D conv maps to C-dimensional vectors before the Gram (changes the values;
        never mix pooled and flattened results).
    estimator : {"unbiased", "biased"}, default="unbiased"
    progress : bool, default=False
        Show a tqdm bar over batches.
    memory_budget : int or str, optional
        Bytes one forward pass may use (e.g. ``"8GB"``; default ``$REPROBUST_MEMORY_BUDGET`` or no limit):
        a CKA batch larger than that is forwarded in sub-batches (the Grams are still those of the whole
        batch, so the result does not change; see ``_capture_grams``).

    Returns
    -------
    cka : ndarray of shape (len(layers_a), len(layers_b))
        Rows are model A's layers, columns model B's.

    Example
    -------
    >>> m = layer_cka(model, x=x_test, batch_size=256, passes=3, seed=0)  # doctest: +SKIP
    >>> np.allclose(np.diag(m), 1)  # doctest: +SKIP
    True
    """
    from ..device import resolve_device

    if x is None:
        raise ValueError("x is required: the inputs (n_examples, ...) fed to both models")
    check_choice("estimator", estimator, ESTIMATORS)
    dev = resolve_device(device)
    x = torch.as_tensor(x)
    layers_a = list(layers_a if layers_a is not None else model_a.layer_names)
    if model_b is None:
        model_b = model_a
    layers_b = list(layers_b if layers_b is not None else model_b.layer_names)
    if x_b is not None:
        x_b = torch.as_tensor(x_b)
        if x_b.shape[0] != x.shape[0]:
            raise ValueError(f"x_b must be example-aligned with x; got {x_b.shape[0]} and {x.shape[0]} examples")
    within = model_b is model_a and x_b is None and layers_b == layers_a
    batches = batch_partition(len(x), batch_size, passes, seed)

    acc = MinibatchCKA(estimator)
    iterator = batches
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, desc="CKA batches", mininterval=5, leave=False)
    with torch.no_grad():
        for idx in iterator:
            index = torch.as_tensor(idx)
            grams_a = _capture_grams(model_a, x[index].to(dev), layers_a, pool_features, memory_budget)
            if within:
                acc.update(grams_a, overwrite_grams=True)
            else:
                xb = (x if x_b is None else x_b)[index].to(dev)
                acc.update(grams_a, _capture_grams(model_b, xb, layers_b, pool_features, memory_budget),
                           overwrite_grams=True)
    out = acc.compute()
    warn_nan_layers(out, layers_a, layers_b)
    return out


def warn_nan_layers(cka_matrix, layers_a: Sequence[str], layers_b: Sequence[str] | None = None) -> list[str]:
    """Warn (``RuntimeWarning``) naming every layer whose CKA row or column is all NaN, and return them.

    A layer whose features are constant over the examples (a dead ReLU layer, say) has HSIC(K, K) = 0, so its
    CKA with anything is 0/0; silently plotted, it looks like missing data.

    Example
    -------
    >>> warn_nan_layers(np.array([[1.0, np.nan], [np.nan, np.nan]]), ["a", "b"])  # doctest: +SKIP
    ['B:b']
    """
    import warnings

    m = np.asarray(cka_matrix, dtype=float)
    layers_b = list(layers_a if layers_b is None else layers_b)
    bad = [f"A:{layers_a[i]}" for i in np.flatnonzero(np.isnan(m).all(axis=1))]
    bad += [f"B:{layers_b[j]}" for j in np.flatnonzero(np.isnan(m).all(axis=0))]
    if bad:
        warnings.warn(f"CKA is NaN for layer(s) {', '.join(bad)}: their features are constant over the examples "
                      "(HSIC(K, K) = 0), e.g. a dead ReLU layer", RuntimeWarning, stacklevel=2)
    return bad


# ---------------------------------------------------------------------------------------------------------------
# Block-structure summaries
# ---------------------------------------------------------------------------------------------------------------


def mean_off_diagonal(cka_matrix) -> float:
    """Mean CKA over all pairs of *different* layers of a square within-model matrix.

    Parameters
    ----------
    cka_matrix : array-like of shape (L, L), L >= 2

    Returns
    -------
    mean : float

    Example
    -------
    >>> mean_off_diagonal(np.array([[1.0, 0.5], [0.5, 1.0]]))
    0.5
    """
    m = np.asarray(cka_matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"cka_matrix must be square with at least 2 layers; got shape {m.shape}")
    return float(m[~np.eye(len(m), dtype=bool)].mean())


def long_range_cka(cka_matrix, fraction: float = 1 / 3) -> float:
    """Mean CKA between the first and the last ``fraction`` of the layers (long-range similarity).

    Parameters
    ----------
    cka_matrix : array-like of shape (L, L), L >= 2
    fraction : float in (0, 0.5], default=1/3
        The first k = max(1, round(fraction·L)) layers are compared with the last k.

    Returns
    -------
    mean : float

    Example
    -------
    >>> long_range_cka(np.eye(3) * 0.5 + 0.5)
    0.5
    """
    check_range("fraction", fraction, low=0, high=0.5, low_inclusive=False)
    m = np.asarray(cka_matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"cka_matrix must be square with at least 2 layers; got shape {m.shape}")
    k = max(1, int(round(fraction * len(m))))
    return float(m[:k, -k:].mean())


def first_pc_explained_variance(grams) -> np.ndarray:
    """Fraction of variance explained by the first principal component, per layer, from Gram matrices.

    The eigenvalues of the centred Gram H K H are the squared singular values of the centred features, so
    λ₁ / Σλ is the first-PC explained variance without forming a d×d covariance. Nguyen et al. (2021)
    tie the block structure to a dominant first PC that is propagated across layers.

    Parameters
    ----------
    grams : array-like of shape (L, n, n) or (n, n)
        Linear Grams (``stack_grams``) of L layers on the same n examples.

    Returns
    -------
    explained : ndarray of shape (L,)
        In [0, 1].

    Example
    -------
    >>> x = np.outer(np.arange(5.0), [1.0, 2.0])        # rank one: one direction holds all variance
    >>> first_pc_explained_variance(gram_linear(x)).round(6)
    array([1.])
    """
    g = _as_float64(grams)
    if g.ndim == 2:
        g = g[None]
    _check_square("grams", g)
    eig = torch.linalg.eigvalsh(_center_gram_stacked(g, unbiased=False)).clamp_min(0)
    return (eig[..., -1] / eig.sum(-1)).cpu().numpy()


def _sampled_grams(model, x, layers, max_examples, seed, device, pool_features):
    """Grams of ``layers`` on a seeded sample of at most ``max_examples`` of ``x`` (in data order)."""
    from ..device import resolve_device

    check_range("max_examples", max_examples, low=2)
    x = torch.as_tensor(x)
    layers = list(layers if layers is not None else model.layer_names)
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:max_examples])
    with torch.no_grad():
        return _capture_grams(model, x[torch.as_tensor(idx)].to(resolve_device(device)), layers, pool_features)


def layer_first_pc_explained_variance(
    model, x, layers: Sequence[str] | None = None, max_examples: int = 512, seed: int = 0, device="cpu",
    pool_features: bool = False,
) -> np.ndarray:
    """First-PC explained variance of each layer of ``model`` on (a seeded subset of) ``x``.

    Parameters
    ----------
    model : torch.nn.Module
    x : tensor of shape (n_examples, ...)
    layers : sequence of str, optional
        Default ``model.layer_names``.
    max_examples : int, default=512
        Size of the seeded random subset (the n×n eigen-decomposition costs O(n³)).
    seed : int, default=0
    device : str or torch.device, default="cpu"
    pool_features : bool, default=False

    Returns
    -------
    explained : ndarray of shape (len(layers),)

    Example
    -------
    >>> layer_first_pc_explained_variance(model, x_test)  # doctest: +SKIP
    """
    return first_pc_explained_variance(_sampled_grams(model, x, layers, max_examples, seed, device, pool_features))


def block_structure_summary(cka_matrix, first_pc=None) -> dict:
    """Block-structure statistics of a within-model CKA matrix.

    Parameters
    ----------
    cka_matrix : array-like of shape (L, L)
    first_pc : array-like of shape (L,), optional
        Per-layer first-PC explained variance (``layer_first_pc_explained_variance``).

    Returns
    -------
    summary : dict
        ``mean_off_diagonal``, ``long_range`` (first vs last third) and, when ``first_pc`` is given,
        ``mean_first_pc`` and ``max_first_pc``.

    Example
    -------
    >>> block_structure_summary(np.ones((3, 3)))["long_range"]
    1.0
    """
    out = {"mean_off_diagonal": mean_off_diagonal(cka_matrix), "long_range": long_range_cka(cka_matrix)}
    if first_pc is not None:
        pc = np.asarray(first_pc, dtype=float)
        out["mean_first_pc"] = float(pc.mean())
        out["max_first_pc"] = float(pc.max())
    return out


# ---------------------------------------------------------------------------------------------------------------
# Block structure as a statistic (Nguyen, Raghu & Kornblith 2021)
# ---------------------------------------------------------------------------------------------------------------


def _square(cka_matrix) -> np.ndarray:
    m = np.asarray(cka_matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"cka_matrix must be square with at least 2 layers; got shape {m.shape}")
    return m


def block_contrast(cka_matrix, labels) -> float:
    """Mean CKA between different layers of the same block minus mean CKA between layers of different blocks.

    A direct measure of block structure: 0 when similarity does not depend on block membership, large when
    layers inside a block are much more alike than layers across blocks. Unlike the mean off-diagonal CKA it
    does not grow with overall similarity.

    Parameters
    ----------
    cka_matrix : array-like of shape (L, L)
    labels : array-like of shape (L,)
        Block label of each layer (e.g. the resolution stage, or :func:`contiguous_blocks`).

    Returns
    -------
    contrast : float
        0.0 when there is a single block or every layer is its own block (nothing to contrast).

    Example
    -------
    >>> m = np.array([[1, .9, .1], [.9, 1, .1], [.1, .1, 1]])
    >>> round(block_contrast(m, [0, 0, 1]), 6)
    0.8
    """
    m = _square(cka_matrix)
    lab = np.asarray(labels)
    if lab.shape != (len(m),):
        raise ValueError(f"labels must have one entry per layer ({len(m)}); got shape {lab.shape}")
    same = lab[:, None] == lab[None, :]
    off = ~np.eye(len(m), dtype=bool)
    within, between = m[same & off], m[~same]
    if within.size == 0 or between.size == 0:
        return 0.0
    return float(np.nanmean(within) - np.nanmean(between))


def contiguous_blocks(cka_matrix, threshold: float | None = None) -> np.ndarray:
    """Blocks found from a within-model CKA matrix: the segmentation of the layers into runs of consecutive
    layers that maximises Σ_blocks Σ_{i≠j in block} (CKA_ij − threshold), by dynamic programming (exact).

    A run becomes one block when its layers are on average more similar to each other than ``threshold``;
    the number of blocks is not fixed in advance. Default threshold: the mean off-diagonal CKA of the
    matrix, so blocks are "more similar than this network's average pair".

    Parameters
    ----------
    cka_matrix : array-like of shape (L, L), symmetric
    threshold : float, optional

    Returns
    -------
    labels : ndarray of int, shape (L,)
        0, 0, 1, 1, 1, 2, ...: the block of each layer.

    Example
    -------
    >>> m = np.array([[1, .9, .1], [.9, 1, .1], [.1, .1, 1]])
    >>> contiguous_blocks(m)
    array([0, 0, 1])
    """
    m = _square(cka_matrix)
    m = np.nan_to_num((m + m.T) / 2, nan=0.0)
    L = len(m)
    tau = mean_off_diagonal(m) if threshold is None else float(threshold)
    gain = m - tau
    np.fill_diagonal(gain, 0.0)
    # score[i, j] = sum of gain over the square block i..j (inclusive), from 2-D prefix sums
    pre = np.zeros((L + 1, L + 1))
    pre[1:, 1:] = gain.cumsum(0).cumsum(1)
    best = np.full(L + 1, -np.inf)
    best[0] = 0.0
    cut = np.zeros(L + 1, dtype=int)
    for j in range(1, L + 1):
        i = np.arange(j)
        score = best[i] + pre[j, j] - pre[i, j] - pre[j, i] + pre[i, i]
        k = int(np.argmax(score))  # ties: the earliest start, i.e. the longest last block
        best[j], cut[j] = score[k], k
    labels = np.empty(L, dtype=int)
    j, b, bounds = L, 0, []
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    for b, (i, j) in enumerate(reversed(bounds)):
        labels[i:j] = b
    return labels


def first_pc_components(grams) -> tuple[np.ndarray, np.ndarray]:
    """First-PC explained variance and first-PC scores (unit vector over the examples) per layer.

    The top eigenvector of the centred Gram H K H is the first principal component's projection of the
    examples (up to scale and sign), so two layers "share a dominant first PC" when these vectors align.

    Parameters
    ----------
    grams : array-like of shape (L, n, n)

    Returns
    -------
    explained : ndarray (L,)
    scores : ndarray (L, n), unit-norm rows (sign arbitrary)

    Example
    -------
    >>> x = np.outer(np.arange(5.0), [1.0, 2.0])
    >>> ev, sc = first_pc_components(gram_linear(x)[None])
    >>> float(ev[0].round(6)), sc.shape
    (1.0, (1, 5))
    """
    g = _as_float64(grams)
    if g.ndim == 2:
        g = g[None]
    _check_square("grams", g)
    eig, vec = torch.linalg.eigh(_center_gram_stacked(g, unbiased=False))
    eig = eig.clamp_min(0)
    return (eig[..., -1] / eig.sum(-1)).cpu().numpy(), vec[..., -1].cpu().numpy()


def dominant_pc_blocks(explained, scores, min_explained: float = 0.5, min_shared: float = 0.9) -> np.ndarray:
    """Nguyen, Raghu & Kornblith's (2021) block criterion: a block is a run of ≥ 2 consecutive layers whose
    representations share a dominant first principal component.

    Layer l is *dominated* when its first PC explains at least ``min_explained`` of the variance; consecutive
    dominated layers l, l+1 *share* it when |cos(scores_l, scores_{l+1})| ≥ ``min_shared`` (the same
    direction over the examples). Nguyen et al. show the block structure is carried by such a propagated
    dominant PC (their Sec. 4: removing it removes the block).

    Parameters
    ----------
    explained : array-like (L,), first-PC explained variance (:func:`first_pc_components`)
    scores : array-like (L, n), first-PC scores
    min_explained, min_shared : float in (0, 1]

    Returns
    -------
    labels : ndarray of int (L,)
        Block index (0, 1, ...) of each layer inside a dominant-PC block, −1 elsewhere.

    Example
    -------
    >>> s = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]])
    >>> dominant_pc_blocks([0.9, 0.8, 0.9], s)
    array([ 0,  0, -1])
    """
    check_range("min_explained", min_explained, low=0, high=1, low_inclusive=False)
    check_range("min_shared", min_shared, low=0, high=1, low_inclusive=False)
    ev = np.asarray(explained, dtype=float)
    sc = np.asarray(scores, dtype=float)
    if sc.ndim != 2 or len(sc) != len(ev):
        raise ValueError(f"scores must have shape (L={len(ev)}, n); got {sc.shape}")
    unit = sc / np.maximum(np.linalg.norm(sc, axis=1, keepdims=True), 1e-300)
    link = (ev[:-1] >= min_explained) & (ev[1:] >= min_explained) & \
        (np.abs((unit[:-1] * unit[1:]).sum(1)) >= min_shared)
    labels = np.full(len(ev), -1, dtype=int)
    b = -1
    for i, linked in enumerate(link):
        if linked:
            if labels[i] < 0:
                b += 1
                labels[i] = b
            labels[i + 1] = labels[i]
    return labels


def layer_first_pc_components(model, x, layers: Sequence[str] | None = None, max_examples: int = 512, seed: int = 0,
                              device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """:func:`first_pc_components` of each layer of ``model`` on a seeded subset of ``x`` (at most
    ``max_examples``; the eigen-decomposition is O(n³)). Returns (explained (L,), scores (L, n)).

    Example
    -------
    >>> ev, scores = layer_first_pc_components(model, x_test)  # doctest: +SKIP
    """
    return first_pc_components(_sampled_grams(model, x, layers, max_examples, seed, device, False))
