"""Raw Zero-Shot representation metrics: Davies–Bouldin (DBI) and Amalgam (AM).

Kotyan, Vargas & Matsuki, "Representation Quality Of Neural Networks Links To Adversarial Attacks and
Defences" (arXiv 1906.06627; PLOS ONE 2022). The idea: a classifier with rich features should describe a
class it has never seen as a *consistent amalgam* of the classes it knows.

Protocol (Raw Zero-Shot). For every class ``k`` of an ``N``-class data set a model ``f_{-k}`` is trained on
the other ``N-1`` classes (labels re-indexed ``y -> y - [y > k]``, see :func:`reprobust.data.leave_one_out`),
plus one full model ``f`` on all ``N`` classes. The *soft labels* of unknown class ``k`` are
``f_{-k}(x)`` for the images ``x`` of class ``k`` (softmax outputs, ``N-1`` entries).

Everything in this module takes those soft labels as a list indexed by the excluded class::

    soft_labels[k]  : array (n_k, N-1)  leave-one-out model f_{-k} on the images of class k
    full_probs[k]   : array (n_k, N)    full model f on the *same* images, same order

and works in NumPy (torch tensors are accepted and converted). Lower is better for both metrics.

The paper's metric script was never released; the choices below follow the reconstruction in
``shared/papers/paperA_rawzeroshot.md`` §1.2–1.3 and are all parameters:

* DBI, ``variant="unknown_classes"`` (default, reading A): one cluster per unknown class in the common
  ``N``-dim label space (excluded index re-inserted as 0), or in the 2-D polygon projection
  (``space="polygon2d"``). ``variant="argmax_groups"`` (reading B, ablation): within each leave-one-out
  model group the unknown-class samples by their arg-max known class, DBI over those groups, averaged over
  ``k``.
* AM: approximated ground truth ``g(x) = f(x)_{-k} / (1 - f(x)_k)`` (the full model's softmax with the
  excluded entry removed and renormalised); ``mode="mean"`` (default) compares class means,
  ``mode="per_sample"`` averages per-image distances; ``norm`` 1 (default) or 2.
"""

from __future__ import annotations

import numpy as np

from ..validation import check_choice, check_range

DBI_VARIANTS = ("unknown_classes", "argmax_groups")
DBI_SPACES = ("full", "polygon2d")
AMALGAM_MODES = ("mean", "per_sample")
AMALGAM_NORMS = (1, 2)


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor without importing torch here
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _check_lists(soft_labels, full_probs=None):
    soft = [_as_numpy(s) for s in soft_labels]
    n_classes = len(soft)
    if n_classes < 2:
        raise ValueError(f"need soft labels for at least 2 excluded classes, got {n_classes}")
    for k, s in enumerate(soft):
        if s.ndim != 2 or s.shape[1] != n_classes - 1:
            raise ValueError(f"soft_labels[{k}] has shape {s.shape}; expected (n_{k}, {n_classes - 1})")
    if full_probs is None:
        return soft, None
    full = [_as_numpy(f) for f in full_probs]
    if len(full) != n_classes:
        raise ValueError(f"full_probs has {len(full)} entries; expected {n_classes} (one per excluded class)")
    for k, (s, f) in enumerate(zip(soft, full)):
        if f.shape != (s.shape[0], n_classes):
            raise ValueError(f"full_probs[{k}] has shape {f.shape}; expected {(s.shape[0], n_classes)}")
    return soft, full


def reinsert_excluded(soft_labels, excluded: int) -> np.ndarray:
    """Put leave-one-out soft labels back into the ``N``-class space with a 0 at ``excluded``.

    Undoes the re-indexing of :func:`reprobust.data.leave_one_out` (classes above ``excluded`` were
    shifted down by one).

    Parameters
    ----------
    soft_labels : array of shape (n, N-1)
    excluded : int in [0, N-1]

    Returns
    -------
    ndarray of shape (n, N), column ``excluded`` all zeros.

    Example
    -------
    >>> reinsert_excluded([[0.25, 0.75]], 1)
    array([[0.25, 0.  , 0.75]])
    """
    s = _as_numpy(soft_labels)
    check_range("excluded", excluded, low=0, high=s.shape[1])
    return np.insert(s, excluded, 0.0, axis=1)


def approximate_ground_truth(full_probs, excluded: int) -> np.ndarray:
    """The approximated ground truth of paper §1.3: full-model softmax, entry ``excluded`` removed, renormalised.

    ``g(x) = f(x)_{-k} / (1 - f(x)_k)``: which *other* classes a model that knows class ``k`` thinks a
    ``k``-image resembles.

    Parameters
    ----------
    full_probs : array of shape (n, N), rows sum to 1
    excluded : int

    Returns
    -------
    ndarray of shape (n, N-1), rows sum to 1 (uniform where the full model put all mass on ``excluded``).

    Example
    -------
    >>> approximate_ground_truth([[0.2, 0.6, 0.2]], 1)
    array([[0.5, 0.5]])
    """
    f = _as_numpy(full_probs)
    check_range("excluded", excluded, low=0, high=f.shape[1] - 1)
    rest = np.delete(f, excluded, axis=1)
    total = rest.sum(axis=1, keepdims=True)
    # A full model 100 % sure of class k says nothing about resemblance: fall back to uniform.
    uniform = np.full_like(rest, 1.0 / rest.shape[1])
    return np.where(total > 1e-12, rest / np.maximum(total, 1e-12), uniform)


def polygon_projection(probs) -> np.ndarray:
    """Project probability vectors onto a regular ``N``-gon in 2-D (one vertex per class).

    ``z = Σ_c p_c · (cos 2πc/N, sin 2πc/N)``: a pure class sits on its vertex, a uniform amalgam at the
    centre. This is the "2D visualisation of the n-1 soft labels" of the authors' README as
    reconstructed in the spec (§1.2).

    Parameters
    ----------
    probs : array of shape (n, N)

    Returns
    -------
    ndarray of shape (n, 2)

    Example
    -------
    >>> polygon_projection([[1.0, 0.0, 0.0, 0.0]]).round(6)
    array([[1., 0.]])
    """
    p = _as_numpy(probs)
    angles = 2 * np.pi * np.arange(p.shape[1]) / p.shape[1]
    vertices = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return p @ vertices


def davies_bouldin(points, labels) -> float:
    """Davies–Bouldin index (Davies & Bouldin 1979), Euclidean, as in scikit-learn.

    ``DBI = (1/n) Σ_i max_{j≠i} (S_i + S_j) / M_ij`` with ``S_i`` the mean distance of cluster ``i``'s
    points to its centroid and ``M_ij`` the centroid distance (spec §1.2). Thin wrapper over
    :func:`sklearn.metrics.davies_bouldin_score` with input checks.

    Parameters
    ----------
    points : array of shape (n, d)
    labels : array of shape (n,), at least 2 distinct values

    Returns
    -------
    float, >= 0, lower = more compact and better separated clusters.
    """
    from sklearn.metrics import davies_bouldin_score

    x = _as_numpy(points)
    lab = np.asarray(labels)
    n_clusters = len(np.unique(lab))
    if n_clusters < 2 or n_clusters >= len(lab):
        raise ValueError(f"DBI needs 2 <= clusters < samples; got {n_clusters} clusters for {len(lab)} samples")
    return float(davies_bouldin_score(x, lab))


def dbi_metric(soft_labels, *, variant: str = "unknown_classes", space: str = "full") -> float:
    """The Raw Zero-Shot DBI metric (paper §1.2; lower = better representation).

    Parameters
    ----------
    soft_labels : list of N arrays, entry k of shape (n_k, N-1)
        Soft labels of leave-one-out model ``f_{-k}`` on the images of class ``k``.
    variant : {'unknown_classes', 'argmax_groups'}, default 'unknown_classes'
        ``unknown_classes``: re-insert the excluded index and cluster by unknown class (N clusters).
        ``argmax_groups``: per ``k``, cluster class-``k`` soft labels by their arg-max known class, DBI
        per ``k`` (skipped when fewer than 2 groups or a group structure DBI cannot score), averaged.
    space : {'full', 'polygon2d'}, default 'full'
        Compute DBI on the ``N``-dim soft labels or on their 2-D polygon projection.

    Returns
    -------
    float (NaN for ``argmax_groups`` when no excluded class has two or more arg-max groups)

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> soft = [rng.dirichlet(np.ones(2), size=5) for _ in range(3)]
    >>> dbi_metric(soft) > 0
    True
    """
    check_choice("DBI variant", variant, DBI_VARIANTS)
    check_choice("DBI space", space, DBI_SPACES)
    soft, _ = _check_lists(soft_labels)
    embed = polygon_projection if space == "polygon2d" else (lambda p: p)
    if variant == "unknown_classes":
        points = np.concatenate([embed(reinsert_excluded(s, k)) for k, s in enumerate(soft)])
        labels = np.concatenate([np.full(len(s), k) for k, s in enumerate(soft)])
        return davies_bouldin(points, labels)
    scores = []
    for k, s in enumerate(soft):
        groups = s.argmax(axis=1)
        if 2 <= len(np.unique(groups)) < len(groups):
            scores.append(davies_bouldin(embed(reinsert_excluded(s, k)), groups))
    return float(np.mean(scores)) if scores else float("nan")


def amalgam_metric(soft_labels, full_probs, *, mode: str = "mean", norm: int = 1,
                   halve: bool = False, per_class: bool = False):
    """The Amalgam metric: distance of Raw Zero-Shot soft labels to the approximated ground truth (§1.3).

    ``mode='mean'``:        ``AM = (1/N) Σ_k || mean_x a(x) − mean_x g(x) ||_p``
    ``mode='per_sample'``:  ``AM = (1/N) Σ_k mean_x || a(x) − g(x) ||_p``

    with ``a(x) = f_{-k}(x)`` and ``g`` from :func:`approximate_ground_truth`. A leave-one-out model whose
    soft labels equal the ground truth scores 0.

    Parameters
    ----------
    soft_labels : list of N arrays, entry k of shape (n_k, N-1)
    full_probs : list of N arrays, entry k of shape (n_k, N), same images in the same order
    mode : {'mean', 'per_sample'}, default 'mean'
    norm : {1, 2}, default 1
    halve : bool, default False
        Divide by 2 (the largest L1 distance between two distributions) so that L1 AM lies in [0, 1].
    per_class : bool, default False
        Also return the per-excluded-class distances.

    Returns
    -------
    am : float
    per_class_am : ndarray of shape (N,), only if ``per_class``

    Example
    -------
    >>> full = [np.array([[0.5, 0.25, 0.25]]), np.array([[0.5, 0.5, 0.0]]), np.array([[0.2, 0.2, 0.6]])]
    >>> soft = [np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])]
    >>> amalgam_metric(soft, full)
    0.0
    """
    check_choice("amalgam mode", mode, AMALGAM_MODES)
    check_choice("amalgam norm", norm, AMALGAM_NORMS)
    soft, full = _check_lists(soft_labels, full_probs)
    dists = np.empty(len(soft))
    for k, (a, f) in enumerate(zip(soft, full)):
        g = approximate_ground_truth(f, k)
        if mode == "mean":
            dists[k] = np.linalg.norm(a.mean(axis=0) - g.mean(axis=0), ord=norm)
        else:
            dists[k] = np.linalg.norm(a - g, ord=norm, axis=1).mean()
    if halve:
        dists = dists / 2.0
    am = float(dists.mean())
    return (am, dists) if per_class else am


def amalgam_matrix(soft_labels) -> np.ndarray:
    """Mean Raw Zero-Shot soft label per unknown class, in the ``N``-class space (diagonal NaN).

    Row ``k`` = mean of ``f_{-k}`` on class-``k`` images with the excluded index re-inserted; the
    diagonal is NaN because a leave-one-out model cannot predict its excluded class.

    Parameters
    ----------
    soft_labels : list of N arrays, entry k of shape (n_k, N-1)

    Returns
    -------
    ndarray of shape (N, N)
    """
    soft, _ = _check_lists(soft_labels)
    m = np.stack([reinsert_excluded(s, k).mean(axis=0) for k, s in enumerate(soft)])
    np.fill_diagonal(m, np.nan)
    return m


def ground_truth_matrix(full_probs) -> np.ndarray:
    """Mean approximated ground truth per class in the ``N``-class space (diagonal NaN).

    Row ``k`` = mean of :func:`approximate_ground_truth` on class-``k`` images, re-inserted; directly
    comparable with :func:`amalgam_matrix`.

    Parameters
    ----------
    full_probs : list of N arrays, entry k of shape (n_k, N)

    Returns
    -------
    ndarray of shape (N, N)
    """
    full = [_as_numpy(f) for f in full_probs]
    m = np.stack([reinsert_excluded(approximate_ground_truth(f, k), k).mean(axis=0) for k, f in enumerate(full)])
    np.fill_diagonal(m, np.nan)
    return m


def raw_zero_shot_metrics(soft_labels, full_probs, *, dbi_variant: str = "unknown_classes",
                          dbi_space: str = "full", am_mode: str = "mean", am_norm: int = 1,
                          am_halve: bool = False) -> dict:
    """Both metrics for one architecture × defence, with the chosen variants.

    Parameters
    ----------
    soft_labels, full_probs : see :func:`amalgam_metric`
    dbi_variant, dbi_space : see :func:`dbi_metric`
    am_mode, am_norm, am_halve : see :func:`amalgam_metric`

    Returns
    -------
    dict with keys ``'dbi'`` and ``'amalgam'`` (floats)
    """
    return {"dbi": dbi_metric(soft_labels, variant=dbi_variant, space=dbi_space),
            "amalgam": amalgam_metric(soft_labels, full_probs, mode=am_mode, norm=am_norm, halve=am_halve)}


def collect_soft_labels(full_model, loo_models, x, y, *, batch_size: int = 1024):
    """Raw Zero-Shot soft labels of every leave-one-out model and the full model on the same images.

    Parameters
    ----------
    full_model : nn.Module, trained on all N classes (outputs N logits)
    loo_models : sequence of N nn.Module; entry k trained without class k (outputs N-1 logits)
    x : Tensor (M, C, H, W) in [0, 1]; y : LongTensor (M,)
        Images of all classes (for example the test split); class k's images are picked for model k.
    batch_size : int

    Returns
    -------
    soft_labels : list of N arrays, entry k of shape (n_k, N-1): softmax of ``loo_models[k]`` on class k
    full_probs : list of N arrays, entry k of shape (n_k, N): softmax of ``full_model`` on the same images
    """
    import torch

    def probs(model, images):
        was = model.training
        model.eval()
        dev = next((p.device for p in model.parameters()), images.device)
        with torch.no_grad():
            out = torch.cat([torch.softmax(model(b.to(dev)).float(), dim=1).cpu()
                             for b in torch.split(images, batch_size)])
        model.train(was)
        return out.double().numpy()

    soft, full = [], []
    for k, model in enumerate(loo_models):
        images = x[y.cpu() == k]
        if len(images) == 0:
            raise ValueError(f"no images of excluded class {k} in x; pass images of every class 0..{len(loo_models) - 1}")
        soft.append(probs(model, images))
        full.append(probs(full_model, images))
    return soft, full
