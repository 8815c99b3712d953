"""Tests for reprobust.metrics.cka: reference values, invariances, estimators, Gram-space stacking, hooks."""

import numpy as np
import pytest
import torch
from torch import nn

from reprobust.metrics import cka as C


@pytest.fixture
def demo_xy():
    # The Kornblith et al. demo colab's test vectors (legacy NumPy RNG, seed 1337).
    rs = np.random.RandomState(1337)
    x = rs.randn(100, 10)
    y = rs.randn(100, 10) + x
    return x, y


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- reference values and basic properties


def test_google_demo_values(demo_xy):
    x, y = demo_xy
    assert C.cka(C.gram_linear(x), C.gram_linear(y)) == pytest.approx(0.55761, abs=5e-6)
    assert C.cka(C.gram_rbf(x, 0.5), C.gram_rbf(y, 0.5)) == pytest.approx(0.65483, abs=5e-6)
    assert C.cka(C.gram_linear(x), C.gram_linear(y), debiased=True) == pytest.approx(0.51346, abs=5e-6)


@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one_and_symmetric(demo_xy, debiased):
    x, y = demo_xy
    kx, ky = C.gram_linear(x), C.gram_linear(y)
    assert C.cka(kx, kx, debiased) == pytest.approx(1.0, abs=1e-12)
    assert C.cka(kx, ky, debiased) == pytest.approx(C.cka(ky, kx, debiased), abs=1e-12)
    assert C.feature_space_linear_cka(x, y, debiased) == pytest.approx(C.feature_space_linear_cka(y, x, debiased))


@pytest.mark.parametrize("debiased", [False, True])
def test_invariances(demo_xy, debiased):
    x, y = demo_xy
    rng = _rng(1)
    base = C.feature_space_linear_cka(x, y, debiased)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert C.feature_space_linear_cka(x @ q, y, debiased) == pytest.approx(base, abs=1e-10)
    assert C.feature_space_linear_cka(3.7 * x, y, debiased) == pytest.approx(base, abs=1e-10)
    assert C.feature_space_linear_cka(x + rng.normal(size=(1, 10)), y, debiased) == pytest.approx(base, abs=1e-10)
    assert C.feature_space_linear_cka(x[:, rng.permutation(10)], y, debiased) == pytest.approx(base, abs=1e-10)
    # Not invariant to a general invertible linear map, nor to permuting the examples of one input only.
    m = rng.normal(size=(10, 10))
    assert abs(C.feature_space_linear_cka(x @ m, y, debiased) - base) > 1e-3
    assert abs(C.feature_space_linear_cka(x[rng.permutation(100)], y, debiased) - base) > 1e-2


def test_biased_cka_in_unit_interval_rbf():
    rng = _rng(2)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 6))
    value = C.cka(C.gram_rbf(x, 0.5), C.gram_rbf(y, 0.5))
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("debiased", [False, True])
def test_gram_form_equals_feature_form(demo_xy, debiased):
    x, y = demo_xy
    y = np.concatenate([y, np.tanh(y)], axis=1)  # different widths on purpose
    assert C.cka(C.gram_linear(x), C.gram_linear(y), debiased) == pytest.approx(
        C.feature_space_linear_cka(x, y, debiased), abs=1e-12
    )


def test_hsic_unbiased_equals_u_centred_inner_product_and_biased_equals_hkh(demo_xy):
    x, y = demo_xy
    kx, ky = C.gram_linear(x), C.gram_linear(np.sin(y))
    n = kx.shape[0]
    u = float((C.center_gram(kx, unbiased=True) * C.center_gram(ky, unbiased=True)).sum()) / (n * (n - 3))
    assert C.hsic_unbiased(kx, ky) == pytest.approx(u, rel=1e-10)
    b = float((C.center_gram(kx) * C.center_gram(ky)).sum()) / (n - 1) ** 2
    assert C.hsic_biased(kx, ky) == pytest.approx(b, rel=1e-10)


def test_unbiased_hsic_ignores_constant_shift():
    rng = _rng(3)
    x, y = rng.normal(size=(40, 7)), rng.normal(size=(40, 5))
    shifted = x + 5.0
    assert C.hsic_unbiased(C.gram_linear(shifted), C.gram_linear(y)) == pytest.approx(
        C.hsic_unbiased(C.gram_linear(x), C.gram_linear(y)), rel=1e-8
    )


def test_center_gram_refuses_non_symmetric_and_tiny():
    with pytest.raises(ValueError, match="symmetric"):
        C.center_gram(np.arange(16.0).reshape(4, 4))
    with pytest.raises(ValueError, match="n >= 4"):
        C.center_gram(np.eye(3), unbiased=True)


# ---------------------------------------------------------------- minibatch estimator


def test_single_batch_minibatch_equals_full_data_cka(demo_xy):
    x, y = demo_xy
    grams = C.stack_grams([x, y])
    unbiased = C.MinibatchCKA("unbiased")
    unbiased.update(grams)
    assert unbiased.compute()[0, 1] == pytest.approx(C.cka(C.gram_linear(x), C.gram_linear(y), True), abs=1e-12)
    biased = C.MinibatchCKA("biased")
    biased.update(grams)
    assert biased.compute()[0, 1] == pytest.approx(C.cka(C.gram_linear(x), C.gram_linear(y)), abs=1e-12)


def test_unbiased_near_zero_on_independent_features_while_biased_is_not():
    rng = _rng(4)
    n, d = 64, 512
    biased, unbiased = [], []
    for _ in range(5):
        x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
        kx, ky = C.gram_linear(x), C.gram_linear(y)
        biased.append(C.cka(kx, ky))
        unbiased.append(C.cka(kx, ky, debiased=True))
    # biased CKA of independent Gaussians is about d/(n+d) = 0.89 here; the debiased one is about 0.
    assert np.mean(biased) > 0.8
    assert abs(np.mean(unbiased)) < 0.03


def test_stacked_computation_equals_pairwise_loop():
    rng = _rng(5)
    dims_a, dims_b = (3, 9, (2, 2, 2)), (5, 4)
    acc = C.MinibatchCKA()
    sizes = (16, 12, 13)  # unequal batches: each still an exact HSIC₁ estimate
    hsic_ab = np.zeros((3, 2))
    hsic_aa, hsic_bb = np.zeros(3), np.zeros(2)
    for n in sizes:
        base = rng.normal(size=(n, 6))
        fa = [np.tanh(base @ rng.normal(size=(6, int(np.prod(d))))).reshape(n, *np.atleast_1d(d)) for d in dims_a]
        fb = [np.maximum(base @ rng.normal(size=(6, d)), 0) for d in dims_b]
        acc.update(C.stack_grams(fa), C.stack_grams(fb))
        for i, a in enumerate(fa):
            ka = C.gram_linear(a)
            hsic_aa[i] += C.hsic_unbiased(ka, ka) / len(sizes)
            for j, b in enumerate(fb):
                hsic_ab[i, j] += C.hsic_unbiased(ka, C.gram_linear(b)) / len(sizes)
        for j, b in enumerate(fb):
            kb = C.gram_linear(b)
            hsic_bb[j] += C.hsic_unbiased(kb, kb) / len(sizes)
    loop = hsic_ab / np.sqrt(np.outer(hsic_aa, hsic_bb))
    np.testing.assert_allclose(acc.compute(), loop, rtol=1e-10, atol=1e-12)
    assert acc.n_batches == 3


def test_within_model_update_equals_explicit_pair():
    rng = _rng(6)
    feats = [rng.normal(size=(20, 5)), rng.normal(size=(20, 3))]
    g = C.stack_grams(feats)
    one, two = C.MinibatchCKA(), C.MinibatchCKA()
    one.update(g)
    two.update(g, g)
    np.testing.assert_allclose(one.compute(), two.compute(), rtol=1e-12)
    np.testing.assert_allclose(np.diag(one.compute()), 1.0, rtol=1e-12)


def test_minibatch_errors():
    acc = C.MinibatchCKA()
    with pytest.raises(ValueError, match="at least 4 examples"):
        acc.update(C.stack_grams([np.ones((3, 2))]))
    with pytest.raises(ValueError, match="call update"):
        acc.compute()
    with pytest.raises(ValueError, match="unknown estimator"):
        C.MinibatchCKA("median")
    with pytest.raises(ValueError, match="same batch"):
        acc.update(C.stack_grams([np.ones((5, 2))]), C.stack_grams([np.ones((6, 2))]))
    with pytest.raises(ValueError, match="unknown kernel"):
        C.stack_grams([np.ones((5, 2))], kernel="poly")
    with pytest.raises(ValueError, match="batch_size"):
        C.batch_partition(100, 3, 1, 0)
    with pytest.raises(ValueError, match="fewer than 4"):
        C.batch_partition(5, 4, 1, 0)


def test_batch_partition_covers_every_example_each_pass_and_is_seeded():
    batches = C.batch_partition(103, 25, 3, seed=7)
    assert len(batches) == 15
    for p in range(3):
        assert sorted(np.concatenate(batches[5 * p:5 * p + 5]).tolist()) == list(range(103))
    assert max(map(len, batches)) - min(map(len, batches)) <= 1
    again = C.batch_partition(103, 25, 3, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(batches[0], C.batch_partition(103, 25, 3, seed=8)[0])


# ---------------------------------------------------------------- block-structure summaries


def test_block_summaries():
    m = np.array([[1.0, 0.8, 0.2], [0.8, 1.0, 0.4], [0.2, 0.4, 1.0]])
    assert C.mean_off_diagonal(m) == pytest.approx((0.8 + 0.2 + 0.4) / 3)
    assert C.long_range_cka(m) == pytest.approx(0.2)
    assert C.long_range_cka(np.ones((6, 6)) - np.eye(6)) == pytest.approx(1.0)
    summary = C.block_structure_summary(m, first_pc=[0.5, 0.9, 0.1])
    assert summary["max_first_pc"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="square"):
        C.mean_off_diagonal(np.ones((2, 3)))
    with pytest.raises(ValueError, match="fraction"):
        C.long_range_cka(m, fraction=0.7)


def test_first_pc_explained_variance_matches_pca():
    from sklearn.decomposition import PCA

    rng = _rng(7)
    feats = [rng.normal(size=(50, 8)) * np.array([5, 1, 1, 1, 1, 1, 1, 1.0]), rng.normal(size=(50, 3))]
    got = C.first_pc_explained_variance(C.stack_grams(feats))
    want = [PCA(1).fit(f).explained_variance_ratio_[0] for f in feats]
    np.testing.assert_allclose(got, want, rtol=1e-8)


# ---------------------------------------------------------------- networks: hooks, identical batches


class _InplaceNet(nn.Module):
    """conv → BN → in-place ReLU, and one ReLU module reused twice: the two classic hook traps."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(4 * 16, 12)
        self.shared = nn.ReLU()
        self.fc2 = nn.Linear(12, 12)
        self.classifier = nn.Linear(12, 3)
        self.layer_names = ["bn", "act", "fc1", "shared", "shared#1"]
        with torch.no_grad():  # non-trivial running statistics so that BN outputs are not centred
            self.bn.running_mean.fill_(-0.3)

    def forward(self, x):
        h = self.act(self.bn(self.conv(x))).flatten(1)
        h = self.shared(self.fc1(h))
        h = self.shared(self.fc2(h))
        return self.classifier(h)

    def manual_features(self, x):
        """The same activations computed without hooks (the ground truth)."""
        bn = self.bn(self.conv(x))
        act = torch.relu(bn)
        fc1 = self.fc1(act.flatten(1))
        s0 = torch.relu(fc1)
        s1 = torch.relu(self.fc2(s0))
        return [bn, act, fc1, s0, s1]


def _inputs(n=40, seed=0):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_layer_cka_equals_manual_features_despite_inplace_and_reused_modules():
    # float64 end to end, so the comparison can be tight (float32 activations get float32 Grams)
    net = _InplaceNet().double().eval()
    x = _inputs().double()
    got = C.layer_cka(net, x=x, batch_size=10, passes=2, seed=3)
    with torch.no_grad():
        batches = [[f.detach() for f in net.manual_features(x[torch.as_tensor(i)])]
                   for i in C.batch_partition(len(x), 10, 2, 3)]
    want = C.minibatch_cka(batches)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # Regressions: uncloned hooks would make BN identical to the in-place ReLU after it (CKA 1), and a
    # reused ReLU keyed by module only would make both of its calls the same tensor.
    names = net.layer_names
    assert got[names.index("bn"), names.index("act")] < 0.999
    assert got[names.index("shared"), names.index("shared#1")] < 0.999


def test_layer_cka_identical_copies_and_cross_model_orientation():
    net = _InplaceNet().eval()
    twin = _InplaceNet().eval()
    x = _inputs(32)
    within = C.layer_cka(net, x=x, batch_size=16, passes=1, seed=0)
    cross = C.layer_cka(net, twin, x=x, batch_size=16, passes=1, seed=0)
    np.testing.assert_allclose(cross, within, rtol=1e-10)
    np.testing.assert_allclose(np.diag(within), 1.0, rtol=1e-10)
    # Rows are model A's layers: a 2-layer list for A and a 5-layer list for B gives a 2×5 matrix.
    sub = C.layer_cka(net, twin, x=x, layers_a=["fc1", "act"], batch_size=16, passes=1, seed=0)
    assert sub.shape == (2, 5)
    np.testing.assert_allclose(sub[0], within[2], rtol=1e-10)


def test_layer_cka_adversarial_inputs_and_determinism():
    net = _InplaceNet().eval()
    x = _inputs(32)
    x_b = (x + 0.2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(9))).clamp(0, 1)
    a = C.layer_cka(net, net, x=x, x_b=x_b, batch_size=8, passes=2, seed=1)
    b = C.layer_cka(net, net, x=x, x_b=x_b, batch_size=8, passes=2, seed=1)
    np.testing.assert_array_equal(a, b)
    assert np.all(np.diag(a) < 1.0)
    with pytest.raises(ValueError, match="example-aligned"):
        C.layer_cka(net, net, x=x, x_b=x_b[:5], batch_size=8)
    with pytest.raises(ValueError, match="fewer than 4"):
        C.layer_cka(net, x=x[:6], batch_size=4)


def test_execution_order_layers_lists_calls_not_definitions():
    net = _InplaceNet().eval()
    order = C.execution_order_layers(net, _inputs(2))
    # fc2 is defined before the second call of `shared` and classifier after it; reuse gets a suffix.
    assert order == ["conv", "bn", "act", "fc1", "shared", "fc2", "shared#1", "classifier"]


def test_layer_first_pc_explained_variance_runs_on_a_network():
    net = _InplaceNet().eval()
    ev = C.layer_first_pc_explained_variance(net, _inputs(30), max_examples=20)
    assert ev.shape == (5,)
    assert np.all((ev > 0) & (ev <= 1))


def test_float32_grams_of_centred_features_match_float64_even_with_a_large_shared_mean():
    torch.manual_seed(0)
    feats = [1e3 + torch.randn(50, 400), 5.0 + torch.rand(50, 3, 4, 4)]  # a large shared mean per feature
    fast = C.centred_linear_grams(feats)                  # float32 products
    exact = C.stack_grams([f.double() for f in feats])    # float64 products, uncentred
    for unbiased in (True, False):
        a = C.MinibatchCKA("unbiased" if unbiased else "biased")
        a.update(fast)
        b = C.MinibatchCKA("unbiased" if unbiased else "biased")
        b.update(exact)
        np.testing.assert_allclose(a.compute(), b.compute(), rtol=1e-5)
    # without the centring, float32 products lose the variation under the mean
    naive = torch.stack([(f.reshape(50, -1) @ f.reshape(50, -1).T).double() for f in feats])
    c = C.MinibatchCKA("unbiased")
    c.update(naive)
    b = C.MinibatchCKA("unbiased")
    b.update(exact)
    assert np.abs(c.compute() - b.compute()).max() > 1e-3



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(30, 200), (30, 5), (1, 3)])
def test_self_product_equals_the_general_product(dtype, shape):
    # the CPU path forms one triangle with BLAS syrk and mirrors it; the result must be the full symmetric f fᵀ
    f = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    for g in (f, f.T.contiguous().T):  # C-ordered and Fortran-ordered input
        out = C._self_product(g)
        assert out.dtype == dtype and out.shape == (shape[0], shape[0])
        torch.testing.assert_close(out, g @ g.T, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-4)
        assert torch.equal(out, out.T)


def test_overwrite_grams_gives_the_same_cka_and_only_then_changes_the_input():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 6))
    grams = C.stack_grams([x, np.tanh(x), x @ rng.normal(size=(6, 3))])
    kept = grams.clone()
    plain, overwritten = C.MinibatchCKA(), C.MinibatchCKA()
    plain.update(grams)
    assert torch.equal(grams, kept)  # default: the caller's Grams are left alone
    overwritten.update(grams, overwrite_grams=True)
    np.testing.assert_array_equal(plain.compute(), overwritten.compute())
    assert not torch.equal(grams, kept)  # centred in place


# ---------------------------------------------------------------- block-structure statistics


def _brute_contrast(m, labels):
    within, between = [], []
    for i in range(len(m)):
        for j in range(len(m)):
            if i != j:
                (within if labels[i] == labels[j] else between).append(m[i, j])
    return np.mean(within) - np.mean(between)


def test_block_contrast_matches_loop():
    rng = _rng(3)
    a = rng.uniform(size=(7, 7))
    m = (a + a.T) / 2
    labels = [0, 0, 1, 1, 1, 2, 2]
    assert C.block_contrast(m, labels) == pytest.approx(_brute_contrast(m, labels), abs=1e-12)
    assert C.block_contrast(m, [0] * 7) == 0.0
    with pytest.raises(ValueError, match="one entry per layer"):
        C.block_contrast(m, [0, 1])


def _segmentations(L):
    import itertools
    for cuts in itertools.product([0, 1], repeat=L - 1):
        labels, b = [0], 0
        for c in cuts:
            b += c
            labels.append(b)
        yield np.array(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contiguous_blocks_is_the_exhaustive_optimum(seed):
    rng = _rng(seed)
    a = rng.uniform(size=(8, 8))
    m = (a + a.T) / 2
    tau = m[~np.eye(8, dtype=bool)].mean()

    def objective(labels):
        same = labels[:, None] == labels[None, :]
        off = ~np.eye(8, dtype=bool)
        return (m - tau)[same & off].sum()

    best = max(objective(lab) for lab in _segmentations(8))
    got = C.contiguous_blocks(m)
    assert objective(got) == pytest.approx(best, abs=1e-12)
    assert (np.diff(got) >= 0).all() and got[0] == 0 and set(np.diff(got)) <= {0, 1}


def test_contiguous_blocks_recovers_planted_blocks():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    m = np.where(labels[:, None] == labels[None, :], 0.9, 0.2) + _rng(0).normal(0, 0.02, (9, 9))
    np.testing.assert_array_equal(C.contiguous_blocks((m + m.T) / 2), labels)


def test_first_pc_components_match_svd_of_centred_features():
    rng = _rng(5)
    f = rng.normal(size=(30, 6)) * np.array([5, 2, 1, 1, 0.5, 0.1])
    ev, scores = C.first_pc_components(C.gram_linear(f)[None])
    fc = f - f.mean(0)
    u, s, _ = np.linalg.svd(fc, full_matrices=False)
    assert ev[0] == pytest.approx(s[0] ** 2 / (s ** 2).sum(), rel=1e-10)
    assert abs(float(scores[0] @ u[:, 0])) == pytest.approx(1.0, abs=1e-10)


def test_dominant_pc_blocks_shared_direction():
    rng = _rng(7)
    n = 40
    shared = rng.normal(size=n)
    feats = []
    for layer in range(6):
        noise = rng.normal(size=(n, 8))
        if layer in (1, 2, 3):      # a dominant, shared first PC
            f = np.outer(shared, rng.normal(size=8)) * 10 + noise
        elif layer == 5:            # dominant but a different direction
            f = np.outer(rng.normal(size=n), rng.normal(size=8)) * 10 + noise
        else:
            f = noise
        feats.append(f)
    ev, sc = C.first_pc_components(torch.stack([C.gram_linear(f) for f in feats]))
    np.testing.assert_array_equal(C.dominant_pc_blocks(ev, sc), [-1, 0, 0, 0, -1, -1])
    with pytest.raises(ValueError, match="min_shared"):
        C.dominant_pc_blocks(ev, sc, min_shared=1.5)


def test_layer_cka_warns_on_a_dead_layer():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Linear(8, 4))
    with torch.no_grad():
        net[2].weight.zero_()
        net[2].bias.fill_(1.0)      # constant output: HSIC(K, K) = 0
    x = torch.rand(40, 1, 4, 4)
    with pytest.warns(RuntimeWarning, match="A:2, B:2"):
        m = C.layer_cka(net, x=x, layers_a=["1", "2"], layers_b=["1", "2"], batch_size=20, passes=1)
    assert np.isnan(m[1]).all() and not np.isnan(m[0, 0])
