"""Raw Zero-Shot metrics (reprobust.metrics.representation) against hand-computed cases."""

import numpy as np
import pytest
import torch
from sklearn.metrics import davies_bouldin_score

from reprobust.data import insert_excluded_column, leave_one_out
from reprobust.metrics import representation as rep

N = 4


def _random_full_probs(seed, n_per_class=6):
    rng = np.random.default_rng(seed)
    return [rng.dirichlet(np.ones(N) * 0.7, size=n_per_class) for _ in range(N)]


def test_perfect_representation_has_zero_amalgam_in_every_variant():
    full = _random_full_probs(0)
    soft = [rep.approximate_ground_truth(f, k) for k, f in enumerate(full)]
    for mode in rep.AMALGAM_MODES:
        for norm in rep.AMALGAM_NORMS:
            assert rep.amalgam_metric(soft, full, mode=mode, norm=norm) == pytest.approx(0.0, abs=1e-12)


def test_amalgam_hand_computed_l1_mean_and_per_sample():
    # One excluded class k=0 of a 3-class problem is enough to check the formula; class 1 and 2 perfect.
    full = [np.array([[0.5, 0.4, 0.1], [0.0, 0.5, 0.5]]),      # g = [0.8, 0.2], [0.5, 0.5]
            np.array([[0.5, 0.5, 0.0]]), np.array([[0.2, 0.2, 0.6]])]
    soft = [np.array([[0.2, 0.8], [0.5, 0.5]]), np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])]
    # mean: A = [0.35, 0.65], G = [0.65, 0.35] -> L1 0.6; averaged over 3 classes -> 0.2
    assert rep.amalgam_metric(soft, full) == pytest.approx(0.6 / 3)
    # per sample: |[0.2,0.8]-[0.8,0.2]|_1 = 1.2 and 0 -> mean 0.6 -> /3
    assert rep.amalgam_metric(soft, full, mode="per_sample") == pytest.approx(0.6 / 3)
    # L2 per sample: sqrt(0.36*2) / 2 / 3
    assert rep.amalgam_metric(soft, full, mode="per_sample", norm=2) == pytest.approx(np.sqrt(0.72) / 2 / 3)
    am, per_class = rep.amalgam_metric(soft, full, halve=True, per_class=True)
    np.testing.assert_allclose(per_class, [0.3, 0.0, 0.0])
    assert am == pytest.approx(0.1)


def test_ground_truth_removes_and_renormalises():
    f = np.array([[0.1, 0.6, 0.3], [0.0, 0.0, 1.0]])
    g = rep.approximate_ground_truth(f, 1)
    np.testing.assert_allclose(g, [[0.25, 0.75], [0.0, 1.0]])
    # all mass on the excluded class: no information, uniform
    np.testing.assert_allclose(rep.approximate_ground_truth(np.array([[0.0, 1.0, 0.0]]), 1), [[0.5, 0.5]])


def test_dbi_equals_sklearn_on_known_set():
    rng = np.random.default_rng(1)
    soft = [rng.dirichlet(np.ones(N - 1), size=5 + k) for k in range(N)]
    points = np.concatenate([np.insert(s, k, 0.0, axis=1) for k, s in enumerate(soft)])
    labels = np.concatenate([np.full(len(s), k) for k, s in enumerate(soft)])
    assert rep.dbi_metric(soft) == pytest.approx(davies_bouldin_score(points, labels))
    proj = rep.polygon_projection(points)
    assert rep.dbi_metric(soft, space="polygon2d") == pytest.approx(davies_bouldin_score(proj, labels))


def test_dbi_by_hand_two_clusters():
    # Cluster 0 at (0,0)±1 on x, cluster 1 at (4,0)±1: S = 1 each, M = 4 -> DBI = 0.5
    pts = np.array([[-1.0, 0], [1, 0], [3, 0], [5, 0]])
    assert rep.davies_bouldin(pts, [0, 0, 1, 1]) == pytest.approx(0.5)


def test_dbi_lower_for_consistent_amalgams():
    rng = np.random.default_rng(2)
    centres = [rng.dirichlet(np.ones(N - 1)) for _ in range(N)]
    tight = [np.clip(c + 0.01 * rng.standard_normal((8, N - 1)), 0, None) for c in centres]
    loose = [rng.dirichlet(np.ones(N - 1), size=8) for _ in range(N)]
    assert rep.dbi_metric(tight) < rep.dbi_metric(loose)


def test_dbi_argmax_groups_variant():
    soft = [np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.2, 0.8, 0.0]])] * N
    value = rep.dbi_metric(soft, variant="argmax_groups")
    expected = np.mean([davies_bouldin_score(np.insert(s, k, 0, axis=1), s.argmax(1)) for k, s in enumerate(soft)])
    assert value == pytest.approx(expected)
    one_group = [np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]])] * N
    assert np.isnan(rep.dbi_metric(one_group, variant="argmax_groups"))


def test_leave_one_out_relabelling_round_trip():
    y = torch.tensor([0, 1, 2, 3, 1, 3, 2, 0])
    x = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1)
    for k in range(N):
        xk, yk = leave_one_out(x, y, k)
        assert int(yk.max()) <= N - 2 and len(yk) == int((y != k).sum())
        one_hot = torch.nn.functional.one_hot(yk, N - 1).double()
        back = rep.reinsert_excluded(one_hot, k)
        np.testing.assert_array_equal(back.argmax(1), y[y != k].numpy())
        assert (back[:, k] == 0).all()
        # the core's torch helper agrees with the numpy one
        np.testing.assert_allclose(insert_excluded_column(one_hot, k).numpy(), back)


def test_matrices_have_nan_diagonal_and_rows_summing_to_one():
    full = _random_full_probs(3)
    soft = [rep.approximate_ground_truth(f, k) for k, f in enumerate(full)]
    a, g = rep.amalgam_matrix(soft), rep.ground_truth_matrix(full)
    assert np.isnan(np.diag(a)).all() and np.isnan(np.diag(g)).all()
    np.testing.assert_allclose(np.nansum(a, axis=1), 1.0)
    np.testing.assert_allclose(a, g)  # perfect soft labels -> identical matrices


def test_polygon_vertices_and_centre():
    p = np.eye(N)
    z = rep.polygon_projection(np.vstack([p, np.full((1, N), 1 / N)]))
    np.testing.assert_allclose(np.linalg.norm(z[:N], axis=1), 1.0)
    np.testing.assert_allclose(z[N], [0.0, 0.0], atol=1e-12)


def test_bad_inputs_raise_one_line_errors():
    full = _random_full_probs(4)
    soft = [rep.approximate_ground_truth(f, k) for k, f in enumerate(full)]
    with pytest.raises(ValueError, match="amalgam mode"):
        rep.amalgam_metric(soft, full, mode="median")
    with pytest.raises(ValueError, match="amalgam norm"):
        rep.amalgam_metric(soft, full, norm=3)
    with pytest.raises(ValueError, match="DBI variant"):
        rep.dbi_metric(soft, variant="nope")
    with pytest.raises(ValueError, match="expected"):
        rep.dbi_metric([s[:, :2] for s in soft])
    with pytest.raises(ValueError, match="full_probs"):
        rep.amalgam_metric(soft, full[:-1])
    out = rep.raw_zero_shot_metrics(soft, full)
    assert set(out) == {"dbi", "amalgam"} and out["amalgam"] == pytest.approx(0.0, abs=1e-12)
