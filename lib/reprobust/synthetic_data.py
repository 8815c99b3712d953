"""Tiny synthetic data sets written in each real on-disk format, for tests and end-to-end runs.

Each writer produces the exact files and folder layout of the real release — MNIST / Fashion-MNIST idx
files (torchvision's ``<Name>/raw/`` layout), CIFAR-10's pickled batches, CIFAR-10-C's ``.npy`` files,
Tiny ImageNet's JPEG folders with ``val_annotations.txt`` and Tiny ImageNet-C's
``<corruption>/<severity>/<wnid>/`` folders — so that :mod:`reprobust.data` and
:mod:`reprobust.corruptions` read them through their real code paths. Images are learnable: each class
has its own random prototype plus pixel noise, so a model trained on a synthetic set beats chance.

A data directory written here holds :data:`reprobust.data.SYNTHETIC_MARKER`, which tells the loaders
that published checksums cannot match (and are not checked).

Example
-------
>>> from reprobust.synthetic_data import write_all
>>> from reprobust.data import load_dataset
>>> root = write_all("/tmp/synthetic-data", n_train=20, n_test=10)    # doctest: +SKIP
>>> load_dataset("cifar10", data_dir=root).x_train.shape              # doctest: +SKIP
torch.Size([20, 3, 32, 32])
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np

from .validation import check_choice, check_range

def fake_wnids(n_classes: int) -> list:
    """``n_classes`` WordNet-style ids (``n00000000``, ``n00000001``, ...), sorted."""
    return [f"n{i:08d}" for i in range(n_classes)]


def _images(n: int, shape: tuple, n_classes: int, seed: int, split: int = 0):
    """``n`` uint8 images of ``shape`` (H, W[, C]) with labels ``0..n_classes-1`` cycling, each a class
    prototype plus noise.

    The prototypes depend on ``seed`` only, so that every split of one data set (train, test, a corrupted
    copy of the test set) shows the same classes and a model trained on one split is tested on another;
    the labels' order and the noise are drawn per ``split``.
    """
    protos = np.random.default_rng(seed).uniform(0, 255, size=(n_classes, *shape))
    rng = np.random.default_rng([seed, split])
    labels = np.arange(n) % n_classes
    rng.shuffle(labels)
    noise = rng.normal(0, 40, size=(n, *shape))
    return np.clip(protos[labels] + noise, 0, 255).astype(np.uint8), labels.astype(np.int64)


def _mark(root: Path, name: str) -> None:
    from .data import SYNTHETIC_MARKER

    path = root / SYNTHETIC_MARKER
    info = json.loads(path.read_text()) if path.exists() else {"synthetic": True, "datasets": []}
    if name not in info["datasets"]:
        info["datasets"].append(name)
    path.write_text(json.dumps(info, indent=1, sort_keys=True))


def _write_idx(path: Path, array: np.ndarray) -> None:
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(root, *, variant: str = "mnist", n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """MNIST or Fashion-MNIST idx files in torchvision's ``<root>/MNIST/raw/`` (``FashionMNIST``) layout.

    Returns
    -------
    Path, ``root``
    """
    check_choice("variant", variant, ("mnist", "fashion_mnist"))
    root = Path(root)
    raw = root / ("MNIST" if variant == "mnist" else "FashionMNIST") / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for k, (prefix, n) in enumerate((("train", n_train), ("t10k", n_test))):
        x, y = _images(check_range("n", n, low=1), (28, 28), 10, seed, split=k)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    _mark(root, variant)
    return root


def write_cifar10(root, *, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's python release: ``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
    ``batches.meta`` (pickled dicts; rows are 3072 channel-major bytes). ``n_train`` is split over the
    five batches."""
    root = Path(root)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    x, y = _images(check_range("n_train", n_train, low=5), (3, 32, 32), 10, seed)
    for b, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        with open(base / f"data_batch_{b}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {b} of 5", "data": x[part].reshape(len(part), -1),
                         "labels": y[part].tolist()}, f)
    xt, yt = _images(check_range("n_test", n_test, low=1), (3, 32, 32), 10, seed, split=1)
    with open(base / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "data": xt.reshape(n_test, -1), "labels": yt.tolist()}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_cases_per_batch": n_train // 5, "num_vis": 3072}, f)
    _mark(root, "cifar10")
    return root


def write_cifar10c(root, *, n_per_severity: int = 10, corruptions=None, seed: int = 0) -> Path:
    """CIFAR-10-C's release: ``CIFAR-10-C/<corruption>.npy`` of shape (5·n, 32, 32, 3) uint8 (severities
    1..5 stacked) for all 19 corruptions by default, plus ``labels.npy`` (5·n,)."""
    from .corruptions import CIFAR10C_FILES

    root = Path(root)
    base = root / "CIFAR-10-C"
    base.mkdir(parents=True, exist_ok=True)
    names = CIFAR10C_FILES if corruptions is None else tuple(check_choice("corruption", c, CIFAR10C_FILES)
                                                            for c in corruptions)
    # the test split's classes (write_cifar10's prototypes, channel-major there), stored height × width × channel
    x, y = _images(check_range("n_per_severity", n_per_severity, low=1), (3, 32, 32), 10, seed, split=1)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    rng = np.random.default_rng(seed + 7)
    for name in names:
        stack = [np.clip(x.astype(np.int16) + rng.integers(-8 * s, 8 * s + 1, x.shape), 0, 255).astype(np.uint8)
                 for s in range(1, 6)]
        np.save(base / f"{name}.npy", np.concatenate(stack))
    np.save(base / "labels.npy", np.tile(y, 5).astype(np.uint8))
    _mark(root, "cifar10c")
    return root


def _save_jpegs(folder: Path, names, images) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, img in zip(names, images):
        Image.fromarray(img).save(folder / name, format="JPEG", quality=95)


def write_tiny_imagenet(root, *, n_classes: int = 4, n_train_per_class: int = 5, n_val_per_class: int = 3,
                        seed: int = 0) -> Path:
    """Tiny ImageNet's release layout: ``tiny-imagenet-200/wnids.txt``, ``words.txt``,
    ``train/<wnid>/images/<wnid>_<k>.JPEG`` (+ ``<wnid>_boxes.txt``), ``val/images/val_<k>.JPEG`` with
    ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1``) and ``test/images``.
    64×64 RGB JPEGs."""
    root = Path(root)
    base = root / "tiny-imagenet-200"
    wnids = fake_wnids(check_range("n_classes", n_classes, low=2))
    base.mkdir(parents=True, exist_ok=True)
    # The release lists wnids unsorted; the loader sorts them.
    (base / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tsynthetic class {i}\n" for i, w in enumerate(wnids)))
    x, y = _images(n_classes * n_train_per_class, (64, 64, 3), n_classes, seed)
    for c, w in enumerate(wnids):
        idx = np.nonzero(y == c)[0]
        names = [f"{w}_{k}.JPEG" for k in range(len(idx))]
        _save_jpegs(base / "train" / w / "images", names, x[idx])
        (base / "train" / w / f"{w}_boxes.txt").write_text("".join(f"{n}\t0\t0\t63\t63\n" for n in names))
    xv, yv = _images(n_classes * n_val_per_class, (64, 64, 3), n_classes, seed, split=1)
    names = [f"val_{k}.JPEG" for k in range(len(yv))]
    _save_jpegs(base / "val" / "images", names, xv)
    (base / "val" / "val_annotations.txt").write_text(
        "".join(f"{n}\t{wnids[c]}\t0\t0\t63\t63\n" for n, c in zip(names, yv)))
    _save_jpegs(base / "test" / "images", ["test_0.JPEG"], xv[:1])
    _mark(root, "tiny_imagenet")
    return root


def write_tiny_imagenet_c(root, *, n_classes: int = 4, n_per_class: int = 3, corruptions=None,
                          severities=(1, 2, 3, 4, 5), seed: int = 0) -> Path:
    """Tiny ImageNet-C's release layout: ``Tiny-ImageNet-C/<corruption>/<severity>/<wnid>/val_<k>.JPEG``
    (the same validation images in every folder), for the 15 corruptions by default."""
    from .corruptions import TINY_IMAGENET_C_CORRUPTIONS

    root = Path(root)
    base = root / "Tiny-ImageNet-C"
    wnids = fake_wnids(check_range("n_classes", n_classes, low=2))
    names = TINY_IMAGENET_C_CORRUPTIONS if corruptions is None else tuple(
        check_choice("corruption", c, TINY_IMAGENET_C_CORRUPTIONS) for c in corruptions)
    x, y = _images(n_classes * n_per_class, (64, 64, 3), n_classes, seed, split=1)  # the validation images
    rng = np.random.default_rng(seed + 11)
    for name in names:
        for s in severities:
            xs = np.clip(x.astype(np.int16) + rng.integers(-8 * s, 8 * s + 1, x.shape), 0, 255).astype(np.uint8)
            for c, w in enumerate(wnids):
                idx = np.nonzero(y == c)[0]
                _save_jpegs(base / name / str(s) / w, [f"val_{k}.JPEG" for k in idx], xs[idx])
    _mark(root, "tiny_imagenet_c")
    return root


def write_all(root, *, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """Every data set the ``full`` profile reads, tiny, under ``root``: MNIST, Fashion-MNIST, CIFAR-10,
    CIFAR-10-C (19 corruptions), Tiny ImageNet (4 classes) and Tiny ImageNet-C (15 corruptions).

    Returns
    -------
    Path, ``root`` (pass it as ``--data-dir``)
    """
    root = Path(root)
    write_mnist(root, variant="mnist", n_train=n_train, n_test=n_test, seed=seed)
    write_mnist(root, variant="fashion_mnist", n_train=n_train, n_test=n_test, seed=seed + 2)
    write_cifar10(root, n_train=n_train, n_test=n_test, seed=seed + 4)
    write_cifar10c(root, n_per_severity=max(1, n_test // 2), seed=seed + 6)
    write_tiny_imagenet(root, seed=seed + 8)
    write_tiny_imagenet_c(root, n_per_class=2, seed=seed + 8)
    return root
