"""Tests for reprobust.metrics.manifold: kNN composition, convex projection, SNNL."""

import math

import numpy as np
import pytest
from scipy.optimize import nnls

from reprobust.metrics.manifold import (
    convex_hull_distance,
    convex_projection_distances,
    knn_class_composition,
    knn_indices,
    simplex_least_squares,
    snnl_baseline,
    snnl_group_entanglement,
    snnl_temperature_min,
    soft_nearest_neighbour_loss,
)


def _reference_hull_distance(vertices, query):
    """Projection onto conv(vertices) with scipy's NNLS and a heavily weighted sum-to-one row."""
    rho = 1e4 * np.sqrt(((vertices - query) ** 2).sum(1).max())
    a = np.vstack([vertices.T, np.full((1, len(vertices)), rho)])
    w, _ = nnls(a, np.r_[query, rho], maxiter=1000)
    w /= w.sum()
    return np.linalg.norm(query - w @ vertices)


# ---------------------------------------------------------------------------------------- kNN
def test_knn_indices_match_full_sort_and_chunking():
    rng = np.random.default_rng(0)
    ref, qry = rng.normal(size=(50, 5)), rng.normal(size=(13, 5))
    idx, dist = knn_indices(ref, qry, 4, chunk_size=3)
    full = np.linalg.norm(qry[:, None] - ref[None], axis=2)
    np.testing.assert_array_equal(idx.numpy(), np.argsort(full, axis=1)[:, :4])
    np.testing.assert_allclose(dist.numpy(), np.sort(full, axis=1)[:, :4], rtol=1e-4, atol=1e-4)


def test_knn_composition_on_constructed_layout():
    # Class 0 around 0, class 1 around 10, class 2 around 5 (between them); 10 points each.
    line = np.r_[np.linspace(-0.5, 0.5, 10), 10 + np.linspace(-0.5, 0.5, 10), 5 + np.linspace(-0.5, 0.5, 10)]
    labels = np.repeat([0, 1, 2], 10)
    train = {"layer": line[:, None], "other": line[:, None] * 2}
    # Query 0: true 0 predicted 1 sitting at 0.2 -> all neighbours class 0.
    # Query 1: true 0 predicted 1 sitting at 9.8 -> all neighbours class 1.
    # Query 2: at 4.0 (next to the class-2 cluster): pair pool ignores class 2, 'all' pool counts it as other.
    queries = {"layer": np.array([[0.2], [9.8], [4.0]]), "other": np.array([[0.4], [19.6], [8.0]])}
    true, pred = [0, 0, 0], [1, 1, 1]
    pair = knn_class_composition(train, labels, queries, true, pred, k=6, pool="pair")
    np.testing.assert_array_equal(pair["layer"]["true"], [6, 0, 6])
    np.testing.assert_array_equal(pair["layer"]["pred"], [0, 6, 0])
    np.testing.assert_array_equal(pair["layer"]["other"], [0, 0, 0])
    assert set(pair) == {"layer", "other"}
    everything = knn_class_composition(train, labels, queries, true, pred, k=6, pool="all")
    np.testing.assert_array_equal(everything["layer"]["other"], [0, 0, 6])
    for key in ("true", "pred", "other"):
        np.testing.assert_array_equal(pair["layer"][key], pair["other"][key])


def test_knn_composition_bad_input():
    train = {"l": np.zeros((4, 2))}
    with pytest.raises(ValueError, match="pool"):
        knn_class_composition(train, [0, 0, 1, 1], {"l": np.zeros((1, 2))}, [0], [1], k=2, pool="some")
    with pytest.raises(ValueError, match="k="):
        knn_class_composition(train, [0, 0, 1, 1], {"l": np.zeros((1, 2))}, [0], [1], k=5)


# --------------------------------------------------------------------------- convex projection
@pytest.mark.parametrize("solver", ["nnls", "active_set"])
def test_point_inside_hull_has_zero_distance_and_weights_sum_to_one(solver):
    rng = np.random.default_rng(1)
    vertices = rng.normal(size=(20, 6, 3))
    mix = rng.dirichlet(np.ones(6), size=20)
    inside = np.einsum("nk,nkd->nd", mix, vertices)
    w, d = simplex_least_squares(vertices, inside, solver=solver)
    assert d.max().item() < 1e-6
    np.testing.assert_allclose(w.sum(1).numpy(), 1.0, atol=1e-12)
    assert w.min().item() >= 0.0
    rebuilt = np.einsum("nk,nkd->nd", w.numpy(), vertices)
    np.testing.assert_allclose(rebuilt, inside, atol=1e-6)


@pytest.mark.parametrize("solver", ["nnls", "active_set"])
@pytest.mark.parametrize("k,dim", [(5, 20), (12, 4), (30, 64)])
def test_projection_matches_reference_nnls(solver, k, dim):
    rng = np.random.default_rng(k + dim)
    vertices = rng.normal(size=(25, k, dim))
    queries = 2.0 * rng.normal(size=(25, dim))
    vertices[:, 1] = vertices[:, 0]  # duplicate vertices must not break the solver
    w, d, info = simplex_least_squares(vertices, queries, solver=solver, return_info=True)
    ref = np.array([_reference_hull_distance(v, q) for v, q in zip(vertices, queries)])
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert bool(info["converged"].all())
    np.testing.assert_allclose(w.sum(1).numpy(), 1.0, atol=1e-12)
    # The returned distance is the distance to the reconstructed point.
    rebuilt = np.einsum("nk,nkd->nd", w.numpy(), vertices)
    np.testing.assert_allclose(np.linalg.norm(queries - rebuilt, axis=1), d.numpy(), rtol=1e-9)


def test_projection_onto_segment_is_analytic():
    vertices = np.array([[[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]] * 3)
    queries = np.array([[1.0, 2.0, 0.0], [-3.0, 4.0, 0.0], [5.0, -1.0, 0.0]])
    d, w = convex_hull_distance(vertices, queries)
    np.testing.assert_allclose(d, [2.0, 5.0, math.sqrt(2.0)], atol=1e-9)
    np.testing.assert_allclose(w[0], [0.75, 0.25], atol=1e-9)


def test_hull_distance_guards_degenerate_k():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="k=4"):
        convex_hull_distance(rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 3)))
    d, _ = convex_hull_distance(rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 3)), on_degenerate="allow")
    assert d.shape == (2,)
    with pytest.raises(ValueError, match="solver"):
        simplex_least_squares(np.zeros((1, 2, 3)), np.zeros((1, 3)), solver="slsqp")


def test_convex_projection_distances_recovers_training_points():
    rng = np.random.default_rng(0)
    images = rng.random((60, 1, 4, 4))
    labels = np.repeat([0, 1, 2], 20)
    # Layer = a fixed random linear map of the image: a query equal to a training point projects onto
    # itself, so its preimage is its own image and the distance to its own class manifold is 0.
    proj = rng.normal(size=(16, 8))
    layer = images.reshape(60, -1) @ proj
    pick = np.array([3, 25, 47])
    true, pred = labels[pick], (labels[pick] + 1) % 3
    out = convex_projection_distances({"in": images.reshape(60, -1), "h": layer},
                                      {"in": images[pick].reshape(3, -1), "h": layer[pick]},
                                      images, labels, true, pred, k_layer=5, k_input=5)
    for name in ("in", "h"):
        np.testing.assert_allclose(out[name]["preimage"], images[pick], atol=1e-5)
        np.testing.assert_allclose(out[name]["d_true"], 0.0, atol=1e-5)
        assert (out[name]["d_pred"] > 0.1).all()
        np.testing.assert_allclose(out[name]["weights"].sum(1), 1.0, atol=1e-9)
        assert out[name]["preimage"].shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="k="):
        convex_projection_distances({"in": images.reshape(60, -1)}, {"in": images[pick].reshape(3, -1)},
                                    images, labels, true, pred, k_layer=5, k_input=16)


# -------------------------------------------------------------------------------------- SNNL
def test_snnl_separated_groups_near_zero():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 0.1, (30, 4)), rng.normal(10, 0.1, (30, 4))]
    y = np.repeat([0, 1], 30)
    res = snnl_temperature_min(x, y)
    assert res["snnl"] < 1e-3
    assert res["ratio"] < 1e-3


def test_snnl_identical_distributions_near_baseline():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = np.repeat([0, 1], 150)
    base = snnl_baseline(y)
    assert abs(base - math.log(2)) < 0.01
    res = snnl_temperature_min(x, y)
    assert 0.9 < res["ratio"] <= 1.0 + 1e-6
    # Very large temperature -> the label-independent baseline.
    assert abs(soft_nearest_neighbour_loss(x, y, 1e9) - base) < 1e-6


def test_snnl_matches_direct_formula_and_grid_minimum():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 2)), np.array([0, 1, 2] * 4)
    t = 0.7
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    e = np.exp(-d2 / t)
    np.fill_diagonal(e, 0.0)
    same = (y[:, None] == y[None]) & ~np.eye(12, dtype=bool)
    direct = -np.mean(np.log((e * same).sum(1) / e.sum(1)))
    assert soft_nearest_neighbour_loss(x, y, t) == pytest.approx(direct, rel=1e-5)
    grid = np.logspace(-2, 2, 9)
    curve = soft_nearest_neighbour_loss(x, y, grid)
    res = snnl_temperature_min(x, y, temperatures=grid, refine=False)
    assert res["snnl"] == pytest.approx(curve.min())
    assert res["temperature"] == pytest.approx(grid[np.argmin(curve)])
    refined = snnl_temperature_min(x, y, temperatures=grid, refine=True)
    assert refined["snnl"] <= res["snnl"] + 1e-12
    with pytest.raises(ValueError, match="temperature"):
        soft_nearest_neighbour_loss(x, y, -1.0)


def test_snnl_group_entanglement_and_shuffled_control():
    rng = np.random.default_rng(0)
    test = rng.normal(size=(80, 5))
    apart = rng.normal(size=(50, 5)) + 8.0
    mixed = rng.normal(size=(50, 5))
    sep = snnl_group_entanglement(test, apart, seed=1)
    ent = snnl_group_entanglement(test, mixed, seed=1)
    assert sep["n_per_group"] == 50
    assert sep["ratio"] < 0.05 < 0.8 < ent["ratio"]
    assert sep["shuffled_ratio"] > 0.8
    again = snnl_group_entanglement(test, apart, seed=1)  # seeded
    assert again["ratio"] == sep["ratio"] and again["shuffled_ratio"] == sep["shuffled_ratio"]
    assert sep["ratio_terms"].shape == (100,)
    assert sep["ratio_terms"].mean() == pytest.approx(sep["ratio"], rel=1e-9)
    with pytest.raises(ValueError, match="n_per_group"):
        snnl_group_entanglement(test, apart, n_per_group=60)


def test_convex_projection_chunks_give_the_unchunked_result():
    """Chunking the queries (the memory bound) changes nothing: each query's projection is its own."""
    import numpy as np

    from reprobust.metrics.manifold import convex_projection_distances

    rng = np.random.default_rng(3)
    x = rng.random((120, 12))
    y = np.repeat(np.arange(3), 40)
    layer = {"h": np.tanh(x @ rng.normal(size=(12, 6)))}
    q_in = rng.random((23, 12))
    q = {"h": np.tanh(q_in @ rng.normal(size=(12, 6)))}
    a, b = rng.integers(0, 3, 23), (rng.integers(0, 3, 23))
    whole = convex_projection_distances(layer, q, x, y, a, b, k_layer=8, k_input=6, chunk_size=1024)
    parts = convex_projection_distances(layer, q, x, y, a, b, k_layer=8, k_input=6, chunk_size=5)
    for key in ("d_true", "d_pred", "layer_residual", "preimage"):
        np.testing.assert_allclose(parts["h"][key], whole["h"][key], atol=1e-6)


def test_convex_projection_k_per_layer():
    """A k per layer (the notebook's min(k, width // 2)) equals separate runs with each k; a layer without
    a k is refused in one line naming it."""
    rng = np.random.default_rng(4)
    x = rng.random((90, 10))
    y = np.repeat(np.arange(3), 30)
    layers = {"wide": x @ rng.normal(size=(10, 12)), "narrow": x @ rng.normal(size=(10, 4))}
    q_in = rng.random((7, 10))
    q = {"wide": q_in @ rng.normal(size=(10, 12)), "narrow": q_in @ rng.normal(size=(10, 4))}
    a, b = rng.integers(0, 3, 7), rng.integers(0, 3, 7)
    both = convex_projection_distances(layers, q, x, y, a, b, k_layer={"wide": 6, "narrow": 2}, k_input=5)
    for name, k in (("wide", 6), ("narrow", 2)):
        one = convex_projection_distances({name: layers[name]}, {name: q[name]}, x, y, a, b, k_layer=k, k_input=5)
        assert int(both[name]["k_layer"]) == k and both[name]["weights"].shape == (7, k)
        np.testing.assert_allclose(both[name]["d_true"], one[name]["d_true"], atol=1e-9)
    assert not both["narrow"]["degenerate"]
    with pytest.raises(ValueError, match=r"k_layer has no value for layer\(s\) \['narrow'\]"):
        convex_projection_distances(layers, q, x, y, a, b, k_layer={"wide": 6}, k_input=5)
