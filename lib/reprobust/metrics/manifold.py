"""Proximity of points to class manifolds across layers (Pócoš, Bečková & Farkaš, ICANN 2022).

Three families of measures, all vectorised over many queries at once:

* **kNN class composition** (the paper's method 1): for a query of true class ``a`` predicted as
  ``b``, count how many of its ``k`` nearest training activations carry label ``a`` and ``b``.
  One brute-force index per layer (``torch.cdist`` + ``topk`` in chunks), all queries at once; the
  per-query candidate pool ({a, b} or all classes) is applied as a distance mask.
* **Convex projection** (method 2): the activation of a query is reconstructed as a convex
  combination of its ``k`` nearest training activations (simplex-constrained least squares, solved
  exactly by a batched primal active-set method, i.e. Lawson–Hanson NNLS with the sum-to-one row
  kept as an equality constraint); the weights applied to the neighbours' *input images* give a
  preimage, whose distance to the convex hull of the ``k`` nearest input-space training images of a
  class measures proximity to that class's local manifold — in one space for every layer.
* **Soft nearest neighbour loss** (Frosst, Papernot & Hinton 2019, eq. 1), minimised over a
  temperature grid and reported relative to its label-independent baseline.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..validation import check_choice, check_range

__all__ = [
    "knn_indices",
    "knn_class_composition",
    "simplex_least_squares",
    "convex_hull_distance",
    "convex_projection_distances",
    "soft_nearest_neighbour_loss",
    "snnl_baseline",
    "snnl_temperature_min",
    "snnl_group_entanglement",
]

POOLS = ("pair", "all")


def _as_tensor(x, dtype=torch.float32, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(dtype=dtype, device=device)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


# --------------------------------------------------------------------------------------------------
# k nearest neighbours
# --------------------------------------------------------------------------------------------------
def knn_indices(reference, queries, k: int, *, allowed=None, chunk_size: int = 1024, device=None):
    """Indices of the ``k`` Euclidean nearest reference points of every query (brute force, batched).

    Parameters
    ----------
    reference : array-like of shape (n_reference, ...)
        Points to search (flattened per row).
    queries : array-like of shape (n_queries, ...)
        Query points (flattened per row, same dimension as ``reference``).
    k : int
        Number of neighbours, ``1 <= k <= n_reference``.
    allowed : callable or None
        ``allowed(start, stop) -> bool tensor (stop - start, n_reference)``: which reference points
        each query in the chunk may use (others are masked to +inf distance). ``None`` allows all.
    chunk_size : int
        Queries per distance block; bounds memory at ``chunk_size * n_reference`` floats.
    device : torch.device or None
        Where to compute (CPU by default, or the device of a tensor input).

    Returns
    -------
    indices : torch.LongTensor of shape (n_queries, k)
        Neighbour indices, nearest first.
    distances : torch.Tensor of shape (n_queries, k)
        Their Euclidean distances (``inf`` where fewer than ``k`` points were allowed).

    Example
    -------
    >>> ref = torch.tensor([[0.0], [1.0], [5.0]])
    >>> knn_indices(ref, torch.tensor([[0.9]]), k=2)[0].tolist()
    [[1, 0]]
    """
    ref = _flatten(_as_tensor(reference, device=device))
    qry = _flatten(_as_tensor(queries, device=ref.device))
    check_range("k", k, low=1, high=ref.shape[0])
    if ref.shape[1] != qry.shape[1]:
        raise ValueError(f"query dimension {qry.shape[1]} does not match reference dimension {ref.shape[1]}")
    out_idx, out_dist = [], []
    for start in range(0, qry.shape[0], chunk_size):
        stop = min(start + chunk_size, qry.shape[0])
        # Squared distances via the Gram trick are faster than cdist's default path and exact enough
        # for ranking; clamp at 0 against round-off.
        q = qry[start:stop]
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * q @ ref.T + (ref * ref).sum(1)[None, :]
        d2.clamp_(min=0.0)
        if allowed is not None:
            d2.masked_fill_(~allowed(start, stop), float("inf"))
        dist, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        out_idx.append(idx)
        out_dist.append(dist.sqrt())
    return torch.cat(out_idx), torch.cat(out_dist)


def _pair_mask(train_labels: torch.Tensor, class_a: torch.Tensor, class_b: torch.Tensor):
    """``allowed`` callback restricting every query's pool to training points of its classes a, b."""

    def allowed(start, stop):
        lab = train_labels[None, :]
        return (lab == class_a[start:stop, None]) | (lab == class_b[start:stop, None])

    return allowed


def knn_class_composition(train_activations, train_labels, query_activations, true_labels, pred_labels,
                          k: int, *, pool: str = "pair", chunk_size: int = 1024, device=None):
    """Method 1: neighbour counts of the true class ``a`` and predicted class ``b`` for every query.

    For each layer the ``k`` Euclidean nearest training activations of every query are found (one
    index per layer, all queries at once) and their labels counted.

    Parameters
    ----------
    train_activations : dict[str, array-like of shape (n_train, ...)]
        Training activations per layer (flattened per row).
    train_labels : array-like of shape (n_train,)
    query_activations : dict[str, array-like of shape (n_queries, ...)]
        Activations of the queries (e.g. adversarial examples), same layer names.
    true_labels, pred_labels : array-like of shape (n_queries,)
        Class ``a`` (original) and ``b`` (predicted) of every query.
    k : int
        Neighbours per query.
    pool : {"pair", "all"}
        ``"pair"`` searches only training points of classes a and b (the [F] default); ``"all"``
        searches every class and also counts "other".
    chunk_size : int
        Queries per distance block.
    device : torch.device or None

    Returns
    -------
    counts : dict[str, dict[str, np.ndarray of shape (n_queries,)]]
        Per layer: ``{"true": n_a, "pred": n_b, "other": n_other}`` (integer counts summing to k).

    Example
    -------
    >>> train = {"x": np.array([[0.0], [0.1], [1.0], [1.1]])}
    >>> c = knn_class_composition(train, [0, 0, 1, 1], {"x": np.array([[0.05]])}, [0], [1], k=2)
    >>> int(c["x"]["true"][0]), int(c["x"]["pred"][0])
    (2, 0)
    """
    check_choice("pool", pool, POOLS)
    labels = _as_tensor(train_labels, torch.long, device)
    a = _as_tensor(true_labels, torch.long, labels.device)
    b = _as_tensor(pred_labels, torch.long, labels.device)
    if pool == "pair":
        pool_sizes = [(labels == c).sum().item() for c in torch.unique(torch.cat([a, b])).tolist()]
        # Per pair, a+b points are available; require k <= the smallest class count so each side can fill.
        if pool_sizes and k > 2 * min(pool_sizes):
            raise ValueError(f"k={k} is out of range; valid range: [1, {2 * min(pool_sizes)}] for pool='pair'")
    allowed = _pair_mask(labels, a, b) if pool == "pair" else None
    counts = {}
    for layer, train_x in train_activations.items():
        if layer not in query_activations:
            raise ValueError(f"unknown layer {layer!r} in query_activations; "
                             f"valid choices: {', '.join(query_activations)}")
        idx, _ = knn_indices(train_x, query_activations[layer], k, allowed=allowed, chunk_size=chunk_size,
                             device=labels.device)
        neigh = labels[idx]
        n_a = (neigh == a[:, None]).sum(1)
        n_b = (neigh == b[:, None]).sum(1)
        counts[layer] = {"true": n_a.cpu().numpy(), "pred": n_b.cpu().numpy(),
                         "other": (k - n_a - n_b).cpu().numpy()}
    return counts


# --------------------------------------------------------------------------------------------------
# Simplex-constrained least squares (projection onto a convex hull)
# --------------------------------------------------------------------------------------------------
def _solve_on_support(gram: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Minimise ``wᵀ G w`` s.t. ``sum(w) = 1`` and ``w_j = 0`` off ``support``, batched (KKT system).

    The bordered system ``[[G_P, 1], [1ᵀ, 0]] [w; nu] = [0; 1]`` is written in full size with identity
    rows for coordinates outside the support, so every problem in the batch has the same shape.
    """
    n, k, _ = gram.shape
    s = support.to(gram.dtype)
    system = gram.new_zeros(n, k + 1, k + 1)
    system[:, :k, :k] = gram * s[:, :, None] * s[:, None, :] + torch.diag_embed(1.0 - s)
    system[:, :k, k] = s
    system[:, k, :k] = s
    rhs = gram.new_zeros(n, k + 1)
    rhs[:, k] = 1.0
    return torch.linalg.solve(system, rhs)[:, :k]


SOLVERS = ("auto", "active_set", "nnls")


def simplex_least_squares(points, targets, *, solver: str = "auto", tol: float = 1e-10,
                          max_iter: int | None = None, ridge: float = 1e-12, return_info: bool = False):
    """Convex weights ``w`` minimising ``||targets - w @ points||²`` with ``w >= 0``, ``sum(w) = 1``.

    The problem is centred on the target, so only the ``k x k`` Gram matrix ``G`` of
    ``points - target`` matters (objective ``wᵀ G w``); its cost no longer depends on the dimension.
    Two exact solvers (computation in float64):

    * ``"active_set"``: a batched primal active-set method (Lawson–Hanson style, the sum-to-one row
      kept as an equality constraint). Every iteration is one batched ``(k+1) x (k+1)`` solve over all
      problems, so it runs on the GPU; on a CPU the per-matrix LAPACK overhead makes it slower than
      the compiled per-problem loop below.
    * ``"nnls"``: :func:`scipy.optimize.nnls` per problem on the compact augmented system
      ``[Lᵀ; ρ·1ᵀ] w ≈ [0; ρ]`` (``L`` the Cholesky factor of ``G``, i.e. ``min(k, dim)`` rows instead of
      ``dim``), followed by one batched exact re-solve on the found support that restores
      ``sum(w) = 1`` to machine precision.
    * ``"auto"``: ``"active_set"`` on CUDA tensors, ``"nnls"`` otherwise.

    Parameters
    ----------
    points : array-like of shape (n_problems, k, dim)
        The ``k`` vertices of each problem.
    targets : array-like of shape (n_problems, dim)
        The point to project onto the convex hull of each problem's vertices.
    solver : {"auto", "active_set", "nnls"}
    tol : float
        Optimality tolerance on the Lagrange multipliers, relative to the largest squared vertex
        distance of the problem.
    max_iter : int or None
        Outer iterations of the active-set method (one variable added per iteration); default
        ``3 * k + 10``.
    ridge : float
        Relative Tikhonov term on the Gram matrix, so that affinely dependent vertices (k > dim, or
        duplicates) keep every subproblem solvable.
    return_info : bool
        Also return the number of outer iterations and a per-problem convergence flag.

    Returns
    -------
    weights : torch.Tensor of shape (n_problems, k), float64
        Non-negative, rows summing to one.
    distances : torch.Tensor of shape (n_problems,), float64
        ``||targets - weights @ points||``, the distance to the convex hull.
    info : dict, only if ``return_info``
        ``{"iterations": int, "converged": bool tensor (n_problems,)}`` (``iterations`` is 0 for ``"nnls"``,
        which does not report it).

    Example
    -------
    >>> pts = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]])
    >>> w, d = simplex_least_squares(pts, torch.tensor([[0.5, 0.5]]))
    >>> round(float(d[0]), 6), round(float(w.sum()), 6)
    (0.0, 1.0)
    """
    pts = _as_tensor(points, torch.float64)
    tgt = _as_tensor(targets, torch.float64, pts.device)
    if pts.ndim != 3 or tgt.ndim != 2 or pts.shape[0] != tgt.shape[0] or pts.shape[2] != tgt.shape[1]:
        raise ValueError(f"points must be (n, k, dim) and targets (n, dim); "
                         f"got {tuple(pts.shape)} and {tuple(tgt.shape)}")
    check_choice("solver", solver, SOLVERS)
    if solver == "auto":
        solver = "active_set" if pts.is_cuda else "nnls"
    n, k, _ = pts.shape
    max_iter = 3 * k + 10 if max_iter is None else max_iter
    centred = pts - tgt[:, None, :]
    gram = centred @ centred.transpose(1, 2)
    scale = gram.diagonal(dim1=1, dim2=2).amax(1).clamp(min=1e-300)
    gram = gram + ridge * scale[:, None, None] * torch.eye(k, dtype=gram.dtype, device=gram.device)
    if solver == "nnls":
        alpha, iterations, converged = _simplex_nnls(centred, gram, scale, max_iter)
    else:
        alpha, iterations, converged = _simplex_active_set(gram, scale, tol, max_iter)
    alpha = alpha.clamp(min=0.0)
    alpha = alpha / alpha.sum(1, keepdim=True)
    residual = tgt - (alpha[:, :, None] * pts).sum(1)
    distances = residual.norm(dim=1)
    if return_info:
        return alpha, distances, {"iterations": iterations, "converged": converged}
    return alpha, distances


def _simplex_nnls(centred: torch.Tensor, gram: torch.Tensor, scale: torch.Tensor, max_iter: int):
    """Per-problem compiled NNLS on the compact penalised system, then an exact batched polish."""
    from scipy.optimize import nnls

    n, k, dim = centred.shape
    if dim > k:
        # ||Cᵀw||² = wᵀGw = ||Lᵀw||²: k rows instead of dim. Rows whose Gram is numerically singular
        # (duplicate vertices) keep the full centred matrix.
        chol, info = torch.linalg.cholesky_ex(gram)
        compact = chol.transpose(1, 2).cpu().numpy()
        failed = (info != 0).cpu().numpy()
    else:
        compact, failed = None, np.ones(n, dtype=bool)
    full = centred.transpose(1, 2).cpu().numpy()
    # Penalty weight of the sum-to-one row: large against the squared distance scale, small enough
    # to keep the system well conditioned; the exact polish below removes the residual violation.
    rho = 1e3 * np.sqrt(scale.cpu().numpy())
    alpha = np.zeros((n, k))
    iterations = 0
    for i in range(n):
        a = full[i] if failed[i] else compact[i]
        system = np.vstack([a, np.full((1, k), rho[i])])
        rhs = np.zeros(system.shape[0])
        rhs[-1] = rho[i]
        w, _ = nnls(system, rhs, maxiter=max(max_iter, 3 * k))
        alpha[i] = w
    alpha = torch.as_tensor(alpha, dtype=gram.dtype, device=gram.device)
    alpha = alpha / alpha.sum(1, keepdim=True).clamp(min=1e-300)
    support = alpha > 0
    exact = _solve_on_support(gram, support)
    feasible = ((exact > 0) | ~support).all(1)
    alpha = torch.where(feasible[:, None], exact * support, alpha)
    grad = (gram @ alpha[:, :, None])[:, :, 0]
    multipliers = (grad - (alpha * grad).sum(1, keepdim=True)).masked_fill(support, 0.0)
    converged = multipliers.min(1).values >= -1e-6 * scale
    return alpha, iterations, converged


def _simplex_active_set(gram: torch.Tensor, scale: torch.Tensor, tol: float, max_iter: int):
    """Batched primal active-set method for ``min wᵀGw`` over the simplex (see simplex_least_squares)."""
    n, k, _ = gram.shape
    zero = 1e-14
    # Feasible start: the nearest vertex (best single-vertex solution).
    alpha = torch.zeros(n, k, dtype=torch.float64, device=gram.device)
    alpha[torch.arange(n, device=gram.device), gram.diagonal(dim1=1, dim2=2).argmin(1)] = 1.0
    support = alpha > 0
    converged = torch.zeros(n, dtype=torch.bool, device=gram.device)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        grad = (gram @ alpha[:, :, None])[:, :, 0]
        # KKT: on the support grad_j equals wᵀGw (the equality multiplier); off it, grad_j must not be
        # smaller, otherwise moving mass onto j decreases the objective.
        multipliers = grad - (alpha * grad).sum(1, keepdim=True)
        multipliers = multipliers.masked_fill(support, float("inf"))
        worst, enter = multipliers.min(1)
        active = worst < -tol * scale
        converged = ~active
        if not active.any():
            break
        rows = active.nonzero()[:, 0]
        support[rows, enter[rows]] = True
        # Inner loop: solve on the support, step back to feasibility and drop variables that hit zero.
        todo = rows
        for _ in range(k + 1):
            z = _solve_on_support(gram[todo], support[todo])
            s_todo = support[todo]
            negative = s_todo & (z <= zero)
            bad = negative.any(1)
            good_rows = todo[~bad]
            alpha[good_rows] = z[~bad] * support[good_rows]
            if not bad.any():
                break
            todo, z, negative = todo[bad], z[bad], negative[bad]
            a_old = alpha[todo]
            ratio = torch.where(negative, a_old / (a_old - z).clamp(min=1e-300), torch.full_like(z, float("inf")))
            step, leaving = ratio.min(1)
            a_new = a_old + step[:, None] * (z - a_old)
            a_new[torch.arange(len(todo), device=gram.device), leaving] = 0.0
            keep = support[todo] & (a_new > zero)
            a_new = a_new * keep
            alpha[todo] = a_new / a_new.sum(1, keepdim=True)
            support[todo] = keep
    return alpha, iterations, converged


def _check_hull_dimension(k: int, dim: int, on_degenerate: str, where: str):
    check_choice("on_degenerate", on_degenerate, ("raise", "allow"))
    if k >= dim and on_degenerate == "raise":
        raise ValueError(
            f"k={k} is out of range for {where} of dimension {dim}; valid range: [1, {dim - 1}] "
            "(with k >= dim the hull is (nearly) full-dimensional and distances collapse to 0)")


def convex_hull_distance(vertices, queries, *, on_degenerate: str = "raise"):
    """Distance of each query to the convex hull of its own ``k`` vertices.

    Parameters
    ----------
    vertices : array-like of shape (n_queries, k, dim)
    queries : array-like of shape (n_queries, dim)
    on_degenerate : {"raise", "allow"}
        With ``k >= dim`` the hull is (nearly) full-dimensional and contains most queries, so the
        distance is trivially 0; ``"raise"`` refuses this case.

    Returns
    -------
    distances : np.ndarray of shape (n_queries,)
    weights : np.ndarray of shape (n_queries, k)
        Convex weights of the nearest hull point (non-negative, summing to one).

    Example
    -------
    >>> v = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    >>> d, w = convex_hull_distance(v, np.array([[0.5, 1.0, 0.0]]))
    >>> round(float(d[0]), 6)
    1.0
    """
    v = _as_tensor(vertices, torch.float64)
    _check_hull_dimension(v.shape[1], v.shape[2], on_degenerate, "the convex hull")
    w, d = simplex_least_squares(v, queries)
    return d.cpu().numpy(), w.cpu().numpy()


def convex_projection_distances(layer_train, layer_queries, train_inputs, train_labels, true_labels,
                                pred_labels, *, k_layer: int, k_input: int, chunk_size: int = 1024,
                                on_degenerate: str = "raise", device=None, memory_budget=None):
    """Method 2: preimages from convex projections per layer, and their input-space class distances.

    For every layer ``l`` and query ``x̃`` (true class ``a``, predicted ``b``):

    1. ``N`` = the ``k_layer`` nearest training activations of ``h_l(x̃)`` (all classes);
    2. ``w`` = argmin ``||h_l(x̃) - Σ_j w_j h_l(x_j)||`` over the simplex (projection onto conv(N));
    3. preimage ``p_l = Σ_j w_j x_j`` in input space;
    4. ``d_c = dist(p_l, conv(N^c_{k_input}(p_l)))`` for ``c in {a, b}``, where ``N^c`` are the
       ``k_input`` nearest input-space training images of class ``c``.

    Parameters
    ----------
    layer_train : dict[str, array-like of shape (n_train, ...)]
        Training activations per layer.
    layer_queries : dict[str, array-like of shape (n_queries, ...)]
        Query activations per layer.
    train_inputs : array-like of shape (n_train, ...)
        The training images (input space, the space of all distances).
    train_labels : array-like of shape (n_train,)
    true_labels, pred_labels : array-like of shape (n_queries,)
    k_layer : int or dict[str, int]
        Neighbours defining the layer-space hull, one value for every layer or one per layer (e.g. chosen
        from each layer's width). ``k_layer >= layer dimension`` is allowed here (the weights are then not
        unique; the solver returns a sparse optimum) and flagged in the output.
    k_input : int
        Neighbours defining each class's local input-space manifold; must be below the input
        dimension unless ``on_degenerate="allow"``.
    chunk_size : int
        Queries per block, in the neighbour search and in the solvers (bounds the peak memory to
        about ``chunk_size · max(k_layer, k_input) · max(width, input dim)`` float64 values).
    on_degenerate : {"raise", "allow"}
        Guard for ``k_input >= input dimension``.
    device : torch.device or None
    memory_budget : int or str, optional
        Bytes the projections may use at once (e.g. ``"4GB"``; default ``$REPROBUST_MEMORY_BUDGET`` or no
        limit). The float64 neighbour stacks are ``queries × k × dim`` (≈14 GB at paper scale), so the
        queries are processed in chunks that fit, and the k-NN distance blocks are shrunk to fit too.
        Every query is an independent problem: the results do not depend on the budget.

    Returns
    -------
    result : dict[str, dict[str, np.ndarray]]
        Per layer: ``"d_true"``, ``"d_pred"`` (n_queries,), ``"layer_residual"`` (distance of the
        activation to its layer hull, n_queries), ``"preimage"`` (n_queries, *input_shape),
        ``"weights"`` (n_queries, k_layer), ``"degenerate"`` (bool scalar array: k_layer >= dim) and
        ``"k_layer"`` (the layer's k, int scalar array).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((40, 6)); y = np.repeat([0, 1], 20)
    >>> r = convex_projection_distances({"in": x}, {"in": x[:3]}, x, y, [0, 0, 0], [1, 1, 1],
    ...                                 k_layer=4, k_input=4)
    >>> r["in"]["d_true"].shape
    (3,)
    """
    inputs = _as_tensor(train_inputs, torch.float32, device)
    input_shape = tuple(inputs.shape[1:])
    inputs = _flatten(inputs)
    labels = _as_tensor(train_labels, torch.long, inputs.device)
    a = _as_tensor(true_labels, torch.long, inputs.device)
    b = _as_tensor(pred_labels, torch.long, inputs.device)
    _check_hull_dimension(k_input, inputs.shape[1], on_degenerate, "the input space")
    min_class = min((labels == c).sum().item() for c in torch.unique(torch.cat([a, b])).tolist())
    check_range("k_input", k_input, low=1, high=min_class)
    from ..memory import items_per_chunk

    k_per_layer = k_layer if isinstance(k_layer, dict) else dict.fromkeys(layer_train, k_layer)
    missing = sorted(set(layer_train) - set(k_per_layer))
    if missing:
        raise ValueError(f"k_layer has no value for layer(s) {missing}; valid: an int or a dict over {list(layer_train)}")
    result = {}
    for layer, train_x in layer_train.items():
        k_layer = k_per_layer[layer]
        check_range(f"k_layer of {layer}", k_layer, low=1, high=len(train_x))
        train_x = _flatten(_as_tensor(train_x, torch.float32, inputs.device))
        query_all = _flatten(_as_tensor(layer_queries[layer], torch.float32, inputs.device))
        # Per query: float64 neighbour stacks (points, centred copy) and their float32 gather, for the
        # layer hull and the input-space hull; per k-NN row: a distance row and its mask.
        per_query = 20 * max(k_layer * train_x.shape[1], k_input * inputs.shape[1])
        step = items_per_chunk(per_query, memory_budget, total=len(query_all))
        knn_rows = min(chunk_size, items_per_chunk(16 * max(len(train_x), len(inputs)), memory_budget,
                                                   total=chunk_size))
        parts = []
        for start in range(0, len(query_all), step):
            sl = slice(start, start + step)
            query_x = query_all[sl]
            idx, _ = knn_indices(train_x, query_x, k_layer, chunk_size=knn_rows, device=inputs.device)
            weights, residual = simplex_least_squares(train_x[idx], query_x)
            preimage = (weights[:, :, None] * inputs[idx].double()).sum(1).float()
            part = {"layer_residual": residual.cpu().numpy(), "weights": weights.cpu().numpy(),
                    "preimage": preimage.reshape(-1, *input_shape).cpu().numpy()}
            for key, cls in (("d_true", a[sl]), ("d_pred", b[sl])):
                allowed = (lambda c: lambda s, e: labels[None, :] == c[s:e, None])(cls)
                idx_c, _ = knn_indices(inputs, preimage, k_input, allowed=allowed, chunk_size=knn_rows,
                                       device=inputs.device)
                _, dist = simplex_least_squares(inputs[idx_c], preimage)
                part[key] = dist.cpu().numpy()
            parts.append(part)
        entry = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        entry["degenerate"] = np.array(k_layer >= train_x.shape[1])
        entry["k_layer"] = np.array(k_layer)
        result[layer] = entry
    return result


# --------------------------------------------------------------------------------------------------
# Soft nearest neighbour loss
# --------------------------------------------------------------------------------------------------
def _squared_distances(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
    return d2.clamp_(min=0.0)


def soft_nearest_neighbour_loss(x, labels, temperature, *, return_terms: bool = False):
    """Soft nearest neighbour loss (Frosst, Papernot & Hinton 2019, eq. 1) at one or many temperatures.

    ``l_sn = -(1/b) Σ_i log( Σ_{j≠i, y_j=y_i} exp(-||x_i-x_j||²/T) / Σ_{k≠i} exp(-||x_i-x_k||²/T) )``,
    computed with log-sum-exp (no underflow at small ``T``). Points without a same-label partner are
    excluded from the mean (their term is undefined).

    Parameters
    ----------
    x : array-like of shape (n_points, ...)
    labels : array-like of shape (n_points,)
    temperature : float or array-like of shape (n_temperatures,)
        Positive temperatures.
    return_terms : bool
        Return the per-point terms ``-log(...)`` instead of their mean (for bootstrap intervals).

    Returns
    -------
    loss : float or np.ndarray of shape (n_temperatures,)
        With ``return_terms``: np.ndarray of shape (n_valid_points,) or (n_temperatures, n_valid_points).

    Example
    -------
    >>> x = np.array([[0.0], [0.1], [10.0], [10.1]])
    >>> float(soft_nearest_neighbour_loss(x, [0, 0, 1, 1], 1.0)) < 1e-6
    True
    """
    xs = _flatten(_as_tensor(x, torch.float64, "cpu"))
    temps = np.atleast_1d(np.asarray(temperature, dtype=np.float64))
    if np.any(temps <= 0) or not np.all(np.isfinite(temps)):
        raise ValueError(f"temperature={temperature!r} is out of range; valid range: (0, inf)")
    prepared = _snnl_prepare(xs, labels)
    out = _snnl_from_prepared(prepared, temps, return_terms)
    if np.ndim(temperature) == 0:
        return out[0] if return_terms else float(out[0])
    return out


def _snnl_prepare(xs: torch.Tensor, labels):
    """Squared distances and masks shared by every temperature."""
    y = _as_tensor(labels, torch.long, "cpu")
    d2 = _squared_distances(xs)
    n = xs.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    same = (y[:, None] == y[None, :]) & ~eye
    valid = same.any(1)
    if not valid.any():
        raise ValueError("labels must contain at least one class with two points")
    return d2, eye, same, valid


def _snnl_from_prepared(prepared, temps: np.ndarray, return_terms: bool, chunk_elements: int = 2 ** 23):
    """SNNL (or its per-point terms) at many temperatures, vectorised over chunks of temperatures."""
    d2, eye, same, valid = prepared
    n = d2.shape[0]
    per_chunk = max(1, chunk_elements // (n * n))
    # Distances are exact in float64; the exponentials only need float32 (log-sum-exp keeps them in range),
    # which halves the cost of the dominant (temperatures x n x n) pass.
    neg_d2 = (-d2).masked_fill(eye, float("-inf")).float()
    other = ~same
    results = []
    for start in range(0, len(temps), per_chunk):
        t = torch.as_tensor(temps[start:start + per_chunk], dtype=torch.float32)[:, None, None]
        logits = neg_d2[None] / t
        den = torch.logsumexp(logits, dim=2)
        num = torch.logsumexp(logits.masked_fill_(other[None], float("-inf")), dim=2)
        terms = -(num - den)[:, valid]
        results.extend(terms.double().numpy() if return_terms else terms.double().mean(1).tolist())
    return np.asarray(results)


def snnl_baseline(labels) -> float:
    """Label-independent SNNL baseline, the ``T -> inf`` limit: ``-(1/b) Σ_i log((n_{y_i}-1)/(b-1))``.

    Parameters
    ----------
    labels : array-like of shape (n_points,)

    Returns
    -------
    baseline : float
        ``log 2 ≈ 0.693`` for two large equal groups.

    Example
    -------
    >>> round(snnl_baseline([0, 0, 1, 1]), 4)
    1.0986
    """
    y = np.asarray(labels)
    b = y.size
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_same = counts[inverse] - 1
    valid = n_same > 0
    return float(-np.mean(np.log(n_same[valid] / (b - 1))))


def snnl_temperature_min(x, labels, *, temperatures=None, n_grid: int = 61, decades: float = 3.0,
                         refine: bool = True):
    """SNNL minimised over temperature, and its ratio to the label-independent baseline.

    The default grid is ``median(||x_i - x_j||²) · 10^[-decades, decades]`` (log-spaced, ``n_grid``
    points), refined with a bounded scalar search on ``log T`` around the best grid point.

    Parameters
    ----------
    x : array-like of shape (n_points, ...)
    labels : array-like of shape (n_points,)
    temperatures : array-like or None
        Explicit grid; overrides ``n_grid``/``decades``.
    n_grid : int
    decades : float
    refine : bool

    Returns
    -------
    result : dict
        ``{"snnl": min loss, "temperature": argmin, "baseline": float, "ratio": snnl / baseline,
        "grid": temperatures, "curve": loss per grid temperature, "terms": per-point terms at the
        argmin (their mean is ``snnl``)}``.

    Example
    -------
    >>> x = np.r_[np.zeros((5, 2)), np.ones((5, 2))] + np.random.default_rng(0).normal(0, .01, (10, 2))
    >>> snnl_temperature_min(x, [0] * 5 + [1] * 5)["ratio"] < 0.01
    True
    """
    xs = _flatten(_as_tensor(x, torch.float64, "cpu"))
    prepared = _snnl_prepare(xs, labels)
    if temperatures is None:
        check_range("n_grid", n_grid, low=2)
        d2 = prepared[0]
        positive = d2[d2 > 0]
        median = float(positive.median()) if positive.numel() else 1.0
        temperatures = median * np.logspace(-decades, decades, n_grid)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    if np.any(temperatures <= 0) or not np.all(np.isfinite(temperatures)):
        raise ValueError("temperatures are out of range; valid range: (0, inf)")
    curve = _snnl_from_prepared(prepared, temperatures, False)
    best = int(np.argmin(curve))
    best_t, best_v = float(temperatures[best]), float(curve[best])
    if refine and len(temperatures) > 2:
        from scipy.optimize import minimize_scalar

        lo = np.log(temperatures[max(best - 1, 0)])
        hi = np.log(temperatures[min(best + 1, len(temperatures) - 1)])
        res = minimize_scalar(lambda lt: float(_snnl_from_prepared(prepared, np.array([np.exp(lt)]), False)[0]),
                              bounds=(lo, hi), method="bounded", options={"xatol": 1e-2})
        if res.fun < best_v:
            best_t, best_v = float(np.exp(res.x)), float(res.fun)
    base = snnl_baseline(labels)
    terms = _snnl_from_prepared(prepared, np.array([best_t]), True)[0]
    return {"snnl": best_v, "temperature": best_t, "baseline": base, "ratio": best_v / base,
            "grid": temperatures, "curve": curve, "terms": terms}


def snnl_group_entanglement(reference, other, *, n_per_group: int | None = None, seed: int = 0,
                            shuffled_control: bool = True, **kwargs):
    """Entanglement of two groups of points ({test vs adversarial}, {test vs rubbish}) by SNNL.

    Both groups are subsampled (seeded) to equal size, labelled 0/1, and
    :func:`snnl_temperature_min` is evaluated; a ratio near 1 means entangled (the labels do not
    matter), near 0 means separated. The shuffled-label control (same points, permuted labels) shows
    the ratio expected without any group structure.

    Parameters
    ----------
    reference : array-like of shape (n_reference, ...)
    other : array-like of shape (n_other, ...)
    n_per_group : int or None
        Points per group; default ``min(n_reference, n_other)``.
    seed : int
        Seeds the subsampling and the label shuffle.
    shuffled_control : bool
    **kwargs
        Passed to :func:`snnl_temperature_min`.

    Returns
    -------
    result : dict
        ``{"ratio", "snnl", "baseline", "temperature", "n_per_group", "shuffled_ratio",
        "ratio_terms"}``: ``ratio_terms`` (2 * n_per_group,) are the per-point terms divided by the
        baseline (mean = ``ratio``; resample them for a confidence interval at the chosen ``T``);
        ``shuffled_ratio`` is NaN without the control.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> r = snnl_group_entanglement(rng.normal(size=(50, 3)), rng.normal(size=(50, 3)))
    >>> r["ratio"] > 0.8
    True
    """
    ref = _flatten(_as_tensor(reference, torch.float64, "cpu"))
    oth = _flatten(_as_tensor(other, torch.float64, "cpu"))
    n_max = min(ref.shape[0], oth.shape[0])
    n = n_max if n_per_group is None else n_per_group
    check_range("n_per_group", n, low=2, high=n_max)
    rng = np.random.default_rng(seed)
    pick_r = np.sort(rng.choice(ref.shape[0], n, replace=False))
    pick_o = np.sort(rng.choice(oth.shape[0], n, replace=False))
    x = torch.cat([ref[pick_r], oth[pick_o]])
    y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    res = snnl_temperature_min(x, y, **kwargs)
    shuffled = math.nan
    if shuffled_control:
        shuffled = snnl_temperature_min(x, rng.permutation(y), **kwargs)["ratio"]
    return {"ratio": res["ratio"], "snnl": res["snnl"], "baseline": res["baseline"],
            "temperature": res["temperature"], "n_per_group": n, "shuffled_ratio": shuffled,
            "ratio_terms": res["terms"] / res["baseline"]}
