"""Tests for reprobust.corruptions: range, shape, determinism, severity ordering, caching, CIFAR-10-C files."""

import numpy as np
import pytest
import torch

from reprobust import corruptions as C
from reprobust.cache import Cache

#: Corruptions whose CIFAR-10-C parameter tables are not monotone in pixel distance: glass blur
#: (σ drops from severity 3 to 4), elastic (the affine jitter shrinks while the elastic part grows),
#: saturate (severities 1–2 desaturate, 3–5 saturate), pixelate (BOX resampling through 30, 28, 27, 24
#: and 20 px aliases differently at each size; only the last severity is clearly stronger), spatter
#: (severities 1–3 add translucent water to ~3–22 % of the pixels, 4–5 switch to opaque mud on ~4–7 %:
#: the distance drops from severity 3 to 4 on any input), frost (severity 4 keeps severity 3's frost weight
#: 0.4 but lowers the image weight from 0.9 to 0.85, which moves bright pixels back towards the original).
NON_MONOTONE = {"glass_blur", "elastic_transform", "saturate", "pixelate", "spatter", "frost"}
#: Corruptions that draw random numbers (the others are deterministic functions of the image).
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur",
          "fog", "frost", "elastic_transform", "snow", "spatter"}


@pytest.fixture(scope="module")
def images():
    # smooth, digit-like 32×32 greyscale images plus a colour version
    from reprobust.data import load_dataset

    ds = load_dataset("digits", n_train=30, n_test=20, image_size=32)
    grey = ds.x_test.numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    colour = np.clip(np.repeat(grey, 3, axis=1) * rng.uniform(0.3, 1.0, size=(len(grey), 3, 1, 1))
                     + rng.uniform(0, 0.3, size=(len(grey), 3, 1, 1)), 0, 1)
    return {1: grey, 3: colour}


def _input(images, name):
    return images[3] if name in C.COLOUR_ONLY else images[1]


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_range_shape_dtype_and_determinism(images, name):
    x = _input(images, name)
    for severity in C.SEVERITIES:
        out = C.corrupt(x, name, severity, seed=3)
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        np.testing.assert_array_equal(out * 255, np.round(out * 255))  # 8-bit levels like CIFAR-10-C
    np.testing.assert_array_equal(C.corrupt(x, name, 4, seed=3), C.corrupt(x, name, 4, seed=3))
    differs = not np.array_equal(C.corrupt(x, name, 4, seed=3), C.corrupt(x, name, 4, seed=4))
    assert differs == (name in RANDOM)
    assert not np.allclose(C.corrupt(x, name, 5, seed=3), np.round(x * 255) / 255)  # it does something


@pytest.mark.parametrize("name", C.CORRUPTIONS)
def test_severity_increases_distortion(images, name):
    x = _input(images, name)
    dist = [np.sqrt(np.mean((C.corrupt(x, name, s, seed=0) - x) ** 2)) for s in C.SEVERITIES]
    if name in NON_MONOTONE:
        assert max(dist) > min(dist)  # severities differ
        return
    # non-decreasing up to a small tolerance (motion blur radii 6 and 8 at σ=2 differ very little)
    assert all(b >= a - 1e-3 for a, b in zip(dist, dist[1:])), dist
    assert dist[-1] > dist[0]


def test_torch_in_torch_out(images):
    x = torch.from_numpy(images[1]).float()
    out = C.corrupt(x, "contrast", 2)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape


def test_known_values():
    x = np.full((2, 1, 32, 32), 0.5)
    x[1] = 0.2
    # contrast keeps a constant image; brightness adds to the HSV value of grey pixels
    np.testing.assert_allclose(C.corrupt(x, "contrast", 5), np.round(x * 255) / 255, atol=1e-7)
    np.testing.assert_allclose(C.corrupt(x, "brightness", 5), np.round((x + 0.3) * 255) / 255, atol=1e-7)
    colour = np.random.default_rng(0).uniform(size=(2, 3, 32, 32))
    grey_rgb = np.repeat(colour.mean(1, keepdims=True), 3, axis=1)
    # brightness on colour and on 1-channel grey agree for grey RGB images
    np.testing.assert_allclose(C.corrupt(grey_rgb, "brightness", 3)[:, :1],
                               C.corrupt(grey_rgb[:, :1], "brightness", 3), atol=1.5 / 255)
    # gaussian noise has (before clipping) the CIFAR-10-C σ
    mid = np.full((4, 1, 32, 32), 0.5)
    assert np.std(C.corrupt(mid, "gaussian_noise", 5, seed=1) - 0.5) == pytest.approx(0.10, rel=0.05)


def _lag1_correlation(a, axis):
    a = a - a.mean()
    head = np.take(a, np.arange(a.shape[axis] - 1), axis=axis)
    tail = np.take(a, np.arange(1, a.shape[axis]), axis=axis)
    return np.mean(head * tail) / np.mean(a * a)


def test_snow_brightens_with_mirrored_near_vertical_streaks(images):
    x = images[1]
    for severity in C.SEVERITIES:
        assert C.corrupt(x, "snow", severity, seed=2).mean() > x.mean() + 0.02
    # on a flat image the result is x' + snow + snow rotated by 180°: symmetric, and at least the whitened
    # level (1 - c[6]) · 0.5 everywhere
    flat = np.zeros((20, 1, 32, 32))
    out = C.corrupt(flat, "snow", 3, seed=2)
    np.testing.assert_allclose(out, out[..., ::-1, ::-1], atol=1.01 / 255)
    assert out.min() >= np.floor((1 - C.SEVERITY_PARAMS["snow"][2][6]) * 0.5 * 255) / 255
    # streak angles lie within 45° of vertical, so neighbours along a column correlate more than along a row
    assert _lag1_correlation(out, axis=2) > _lag1_correlation(out, axis=3) + 0.1
    # the whitening uses OpenCV's luminance: on flat red, green away from the flakes is 0.05 · (0.299 · 1.5 + 0.5)
    red = np.zeros((4, 3, 32, 32))
    red[:, 0] = 1
    green = C.corrupt_uint8(red, "snow", 1, seed=2)[:, 1]
    np.testing.assert_array_equal(green.min(axis=(1, 2)), np.round(0.05 * (0.299 * 1.5 + 0.5) * 255))
    # and a grey RGB image gives the greyscale result in every channel
    grey_rgb = np.repeat(x, 3, axis=1)
    for severity in (1, 5):
        np.testing.assert_allclose(C.corrupt(grey_rgb, "snow", severity, seed=2),
                                   np.repeat(C.corrupt(x, "snow", severity, seed=2), 3, axis=1), atol=1.01 / 255)


def test_spatter_changes_clustered_fraction_towards_its_colours(images):
    x = images[1] * 0.4 + 0.1  # water adds at most 0.5 · 238/255: no clipping, water and mud act linearly
    xq = np.round(x * 255) / 255
    mud = C._LUMA @ (np.array([63, 42, 20]) / 255)
    for severity in C.SEVERITIES:
        out = C.corrupt(x, "spatter", severity, seed=2)
        changed = np.abs(out - xq) > 1.01 / 255
        assert 0.01 < changed.mean() < 0.4
        # drops, not salt: a changed pixel's right neighbour is changed far more often than chance (which
        # is the changed fraction; measured 2.7–12 times as often)
        right_given_changed = (changed[..., :-1] & changed[..., 1:]).sum() / changed[..., :-1].sum()
        assert right_given_changed > 2 * changed.mean()
        if C.SEVERITY_PARAMS["spatter"][severity - 1][5] == 0:  # water adds a pale colour
            assert (out >= xq - 1.01 / 255).all()
        else:  # mud moves pixels towards the mud brown (its luminance for greyscale)
            lo, hi = np.minimum(xq, mud) - 1.01 / 255, np.maximum(xq, mud) + 1.01 / 255
            assert ((out >= lo) & (out <= hi)).all()
            assert np.abs(out[changed] - mud).mean() < np.abs(xq[changed] - mud).mean()
    # greyscale spatter is the luminance of the colour one on a grey RGB image
    grey_rgb = np.repeat(x, 3, axis=1)
    for severity in (3, 5):
        colour = C.corrupt(grey_rgb, "spatter", severity, seed=2)
        np.testing.assert_allclose(np.einsum("c,nchw->nhw", C._LUMA, colour)[:, None],
                                   C.corrupt(x, "spatter", severity, seed=2), atol=1.51 / 255)


def test_bad_input_is_refused(images):
    with pytest.raises(ValueError, match="unknown corruption 'snowy'"):
        C.corrupt(images[1], "snowy", 1)
    with pytest.raises(ValueError, match="severity"):
        C.corrupt(images[1], "fog", 6)
    with pytest.raises(ValueError, match="needs colour images"):
        C.corrupt(images[1], "saturate", 1)
    with pytest.raises(ValueError, match="out of range"):
        C.corrupt(images[1] * 2, "fog", 1)
    assert "saturate" not in C.available_corruptions(1)
    assert C.available_corruptions(3, family="noise") == C.FAMILIES["noise"]


def test_corrupted_set_is_cached_and_identical(images, tmp_path):
    cache = Cache(tmp_path)
    labels = np.arange(len(images[1])) % 10
    names = ["gaussian_noise", "pixelate"]
    first = C.cached_corrupted_set(cache, images[1], labels, names, (1, 3), seed=5)
    assert first.images.shape == (2, 2) + images[1].shape and first.images.dtype == np.uint8
    assert len(list((tmp_path / "corrupted_set").glob("*.pt"))) == 1
    second = C.cached_corrupted_set(cache, images[1], labels, names, (1, 3), seed=5)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.get("pixelate", 3).numpy(), C.corrupt(images[1], "pixelate", 3, seed=5))
    # the generation order does not matter: one corruption alone gives the same images
    alone = C.make_corrupted_set(images[1], labels, ["pixelate"], (3,), seed=5)
    np.testing.assert_array_equal(alone.images[0, 0], first.images[1, 1])
    assert [(c, s) for c, s, _ in first.items()] == [("gaussian_noise", 1), ("gaussian_noise", 3),
                                                      ("pixelate", 1), ("pixelate", 3)]


def test_frost_blends_one_texture_with_the_cifar_weights(images):
    # out_s = a_s·x + b_s·frost with the same frost layer at every severity (common random numbers):
    # recover the layer from two severities and check it agrees (up to 8-bit rounding), lies in [0, 1]
    # and is a texture (mean 0.1–0.6, clearly varying), not a constant shift
    x = images[1][:8]
    layers = []
    for s in (1, 2):
        a, b = C.SEVERITY_PARAMS["frost"][s - 1]
        out = C.corrupt(x, "frost", s, seed=1).astype(np.float64)
        unclipped = out < 1.0  # clipping at 1 hides the layer there
        layers.append(np.where(unclipped, (out - a * x) / b, np.nan))
    both = np.isfinite(layers[0]) & np.isfinite(layers[1])
    assert both.mean() > 0.5
    np.testing.assert_allclose(layers[0][both], layers[1][both], atol=1.5 / 255 / 0.2)
    frost = layers[1][both]
    assert frost.min() >= -2 / 255 / 0.3 and frost.max() <= 1 + 2 / 255 / 0.3
    assert 0.1 < frost.mean() < 0.6 and frost.std() > 0.05


def test_load_cifar10c_reads_the_release_layout(tmp_path):
    root = tmp_path / "CIFAR-10-C"
    root.mkdir()
    per_sev = 4
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(5 * per_sev, 32, 32, 3), dtype=np.uint8)
    np.save(root / "fog.npy", data)
    np.save(root / "labels.npy", np.tile(np.arange(per_sev), 5).astype(np.uint8))
    cs = C.load_cifar10c(tmp_path, ["fog"], severities=(2, 5), n_per_severity=3)
    assert cs.images.shape == (1, 2, 3, 3, 32, 32)
    np.testing.assert_array_equal(cs.images[0, 1, 2], np.moveaxis(data[4 * per_sev + 2], -1, 0))
    np.testing.assert_array_equal(cs.labels, [0, 1, 2])
    with pytest.raises(FileNotFoundError, match="missing: contrast.npy"):
        C.load_cifar10c(tmp_path, ["fog", "contrast"])


def test_glass_blur_shuffle_has_the_originals_view_swap_semantics(images):
    """make_cifar_c.py's ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an (H, W, C) NumPy array copies the
    neighbour into (h, w) and leaves (h', w') as it is (the second write reads the already-overwritten view).
    Replayed here on one image with the same random draws, around the same two blurs."""
    x = images[3][:1].copy()
    sigma, delta, iterations = C.SEVERITY_PARAMS["glass_blur"][3]
    ours = C._glass_blur(x.copy(), (sigma, delta, iterations), np.random.default_rng(5))
    rng = np.random.default_rng(5)
    hwc = np.floor(np.clip(C._blur_images(x, sigma), 0, 1) * 255)[0].transpose(1, 2, 0) / 255
    h, w = hwc.shape[:2]
    for _ in range(iterations):
        for row in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=(1, 2))[0]
                r2, c2 = row + dy, col + dx
                hwc[row, col], hwc[r2, c2] = hwc[r2, c2], hwc[row, col]   # the original's line, verbatim semantics
    reference = C._blur_images(hwc.transpose(2, 0, 1)[None], sigma)
    np.testing.assert_allclose(ours, reference, atol=1e-12)
