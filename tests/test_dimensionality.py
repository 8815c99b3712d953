"""Tests for reprobust.metrics.dimensionality (PCA components for a variance fraction, participation ratio)."""

import numpy as np
import pytest
import torch

from reprobust.metrics import dimensionality as D


def _low_rank(n, d, rank, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) + 5.0  # offset: centring matters


@pytest.mark.parametrize("n,d", [(300, 20), (15, 60)])  # eigh path (n ≥ d) and SVD path (n < d)
@pytest.mark.parametrize("rank", [1, 4, 9])
def test_known_rank_needs_rank_components(n, d, rank):
    x = _low_rank(n, d, rank)
    assert D.n_components_for_variance(x, threshold=1 - 1e-9) == rank
    assert D.n_components_for_variance(x, threshold=0.95) <= rank
    assert 1.0 <= D.participation_ratio(x) <= rank + 1e-9


def test_spectrum_matches_sklearn_pca():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(1).normal(size=(50, 8)) * np.arange(1, 9)
    pca = PCA().fit(x)
    np.testing.assert_allclose(D.covariance_spectrum(x).numpy(), pca.explained_variance_, rtol=1e-10)
    cum = np.cumsum(pca.explained_variance_ratio_)
    assert D.n_components_for_variance(x, 0.9) == int(np.searchsorted(cum, 0.9) + 1)


def test_both_paths_agree_and_batches_equal_loops():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 12, 12))  # n == d: compare eigh with the SVD of the same data
    eig = D.covariance_spectrum(x)
    svd = torch.linalg.svdvals(torch.as_tensor(x - x.mean(1, keepdims=True))) ** 2 / 11
    np.testing.assert_allclose(eig.numpy(), svd.numpy(), atol=1e-10)
    batched_k = D.n_components_for_variance(x, 0.8)
    batched_pr = D.participation_ratio(x)
    assert batched_k.shape == (3,) and batched_pr.shape == (3,)
    for i in range(3):
        assert batched_k[i] == D.n_components_for_variance(x[i], 0.8)
        assert batched_pr[i] == pytest.approx(D.participation_ratio(x[i]))


def test_isotropic_data_has_full_participation_and_constant_data_zero():
    x = np.random.default_rng(3).normal(size=(20000, 5))
    assert D.participation_ratio(x) == pytest.approx(5.0, rel=0.02)
    const = np.ones((10, 4))
    assert D.n_components_for_variance(const) == 0 and D.participation_ratio(const) == 0.0


def test_layer_dimensionality_reductions_and_bad_input():
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(40, 3, 4, 4))
    rows = D.layer_dimensionality({"conv": maps}, reduce="flatten")
    assert rows[0]["n_features"] == 48
    rows_c = D.layer_dimensionality({"conv": maps}, reduce="channel_mean")
    assert rows_c[0]["n_features"] == 3 and rows_c[0]["n_components"] <= 3
    with pytest.raises(ValueError, match="unknown reduce"):
        D.layer_dimensionality({"conv": maps}, reduce="max")
    with pytest.raises(ValueError, match="threshold"):
        D.n_components_for_variance(maps[:, 0, 0], threshold=0.0)
    with pytest.raises(ValueError, match="samples"):
        D.covariance_spectrum(np.ones((1, 3)))
