"""Data sets as in-memory tensors in [0, 1] with fixed, seeded train/test splits.

``digits`` (scikit-learn's bundled 8×8 handwritten digits, 1,797 images) works offline and is the
default for the ``smoke`` and ``quick`` profiles. ``mnist``, ``fashion_mnist`` and ``cifar10`` go
through torchvision's own loaders reading the standard on-disk formats (idx files, pickled batches)
from a data directory; ``tiny_imagenet`` reads the release's folders (``train/<wnid>/images/*.JPEG``,
``val/images`` + ``val_annotations.txt``). They download only when asked (torchvision's downloaders).

Checksums: where MD5s are published for the files on disk (CIFAR-10's batches, the MNIST /
Fashion-MNIST ``.gz`` archives torchvision keeps in ``raw/``) they are verified once per process; a
missing or damaged file is a one-line error naming the file, where it was expected and how to obtain
it. A data directory written by :mod:`reprobust.synthetic_data` (tests) carries a marker file and is
not checksummed. The corrupted test sets (CIFAR-10-C, Tiny ImageNet-C) are read by
:mod:`reprobust.corruptions`.

Images are float32 tensors of shape ``(N, C, H, W)`` in ``[0, 1]``; labels are int64 of shape
``(N,)``. Normalisation is *not* applied here: it lives inside each model, so that every attack
works in pixel space.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .paths import default_data_dir
from .validation import check_choice, check_range

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "tiny_imagenet")

#: Files torchvision reads for each data set, relative to ``data_dir``.
REQUIRED_FILES = {
    "mnist": [f"MNIST/raw/{f}" for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
    "fashion_mnist": [f"FashionMNIST/raw/{f}" for f in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
    "cifar10": [f"cifar-10-batches-py/{f}" for f in (
        "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
        "test_batch", "batches.meta")],
    "tiny_imagenet": [f"tiny-imagenet-200/{f}" for f in (
        "wnids.txt", "train", "val/images", "val/val_annotations.txt")],
}

#: Where each data set comes from (what a missing-file error tells the user to do).
SOURCES = {
    "mnist": "torchvision.datasets.MNIST (https://ossci-datasets.s3.amazonaws.com/mnist/)",
    "fashion_mnist": "torchvision.datasets.FashionMNIST (http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/)",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract into --data-dir)",
    "tiny_imagenet": "http://cs231n.stanford.edu/tiny-imagenet-200.zip (extract into --data-dir)",
}

#: Published archives fetched with torchvision's ``download_and_extract_archive`` (url, file name, MD5)
#: for the data sets torchvision has no class for.
ARCHIVES = {
    "tiny_imagenet": ("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip",
                      "90528d7ca1a48142e341f4ef8d21d0de"),
}

#: Marker file :mod:`reprobust.synthetic_data` writes into a synthetic data directory.
SYNTHETIC_MARKER = "REPROBUST_SYNTHETIC_DATA.json"


def published_md5s(name: str) -> dict:
    """``{relative path: MD5}`` of the files on disk whose checksums are published (torchvision's lists).

    CIFAR-10: the six batches and ``batches.meta``. MNIST / Fashion-MNIST: the ``.gz`` archives (the
    extracted idx files have no published checksum; they are checked only when their archive is present).
    Tiny ImageNet: none (only its zip archive has one, checked on download).
    """
    import torchvision.datasets as tvd

    if name == "cifar10":
        files = tvd.CIFAR10.train_list + tvd.CIFAR10.test_list + [[tvd.CIFAR10.meta["filename"], tvd.CIFAR10.meta["md5"]]]
        return {f"cifar-10-batches-py/{f}": md5 for f, md5 in files}
    if name in ("mnist", "fashion_mnist"):
        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        folder = "MNIST" if name == "mnist" else "FashionMNIST"
        return {f"{folder}/raw/{f}": md5 for f, md5 in cls.resources}
    return {}


def is_synthetic(root) -> bool:
    """Whether ``root`` was written by :mod:`reprobust.synthetic_data` (so checksums cannot match)."""
    return (Path(root) / SYNTHETIC_MARKER).is_file()


def file_md5(path, chunk: int = 1 << 22) -> str:
    """Hex MD5 of a file, read in chunks."""
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(name: str, root) -> None:
    """Check the published MD5 of every file of ``name`` present under ``root``.

    Raises
    ------
    ValueError
        One line naming the damaged file, its expected location and how to obtain it again.
    """
    root = Path(root)
    if is_synthetic(root):
        return
    for rel, md5 in published_md5s(name).items():
        path = root / rel
        if rel.endswith(".gz") and not path.exists():
            continue  # MNIST's archives are optional once extracted
        if path.exists() and file_md5(path) != md5:
            raise ValueError(f"{name} file {path} is damaged (MD5 {file_md5(path)}, published {md5}); "
                             f"delete it and obtain it again from {SOURCES[name]} "
                             f"(or rerun with --allow-download)")


@dataclass(frozen=True)
class Dataset:
    """A train/test split held in memory.

    Attributes
    ----------
    name : str
    x_train, x_test : Tensor of shape (N, C, H, W), float32 in [0, 1]
    y_train, y_test : Tensor of shape (N,), int64
    num_classes : int
    mean, std : tuple of float, one per channel (training-set statistics of the full data set,
        used by the models' input normalisation)
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple
    std: tuple

    @property
    def input_shape(self) -> tuple:
        """``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])

    def model_kwargs(self) -> dict:
        """Keyword arguments every :func:`reprobust.models.build_model` call needs."""
        return dict(input_shape=self.input_shape, num_classes=self.num_classes,
                    mean=self.mean, std=self.std)


def _missing_files_error(name: str, root: Path) -> FileNotFoundError:
    missing = [f for f in REQUIRED_FILES[name] if not (root / f).exists()]
    return FileNotFoundError(
        f"{name} files not found under {root} (missing: {', '.join(missing)}); "
        f"obtain them from {SOURCES[name]}, or download them with: "
        f"python -m reprobust.data {name} --data-dir {root} --download (or run with --allow-download)")


def _check_idx(name: str, path: Path) -> None:
    """An idx file's size must match its header (magic ``0x08`` unsigned bytes, then one size per dim)."""
    import struct

    raw = path.read_bytes()[:4 + 4 * 4]
    ok = len(raw) >= 4 and raw[:2] == b"\x00\x00" and raw[2] == 0x08 and 1 <= raw[3] <= 4
    if ok:
        ndim = raw[3]
        ok = len(raw) >= 4 + 4 * ndim
    if ok:
        dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        expected = 4 + 4 * ndim + int(np.prod(dims))
        ok = path.stat().st_size == expected
    if not ok:
        raise ValueError(f"{name} file {path} is damaged (its size does not match its idx header); delete it "
                         f"and obtain it again from {SOURCES[name]} (or rerun with --allow-download)")


def _damaged_file_error(name: str, path: Path, err: Exception) -> ValueError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ValueError(f"{name} file {path} cannot be read ({reason}); delete it and obtain it again from "
                      f"{SOURCES[name]} (or rerun with --allow-download)")


def _decode_images(paths, size: int, source: str | None = None) -> np.ndarray:
    """Decode image files to a ``(N, size, size, 3)`` uint8 array (greyscale converted to RGB), in
    parallel threads (PIL releases the GIL while decoding). ``source``: where to obtain a damaged file
    again (default: Tiny ImageNet's)."""
    source = source or SOURCES["tiny_imagenet"]
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def one(i):
        try:
            with Image.open(paths[i]) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, SyntaxError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"image file {paths[i]} cannot be read ({reason}); delete it and obtain it "
                             f"again from {source}") from None
        if arr.shape != (size, size, 3):
            raise ValueError(f"image file {paths[i]} is {arr.shape[1]}×{arr.shape[0]}; valid: {size}×{size}")
        out[i] = arr

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(paths))))
    return out


def tiny_imagenet_classes(root) -> list:
    """The 200 WordNet ids of Tiny ImageNet, sorted (class ``i`` is the ``i``-th; torchvision's
    ``ImageFolder`` order, also the order of Tiny ImageNet-C's folders)."""
    path = Path(root) / "tiny-imagenet-200" / "wnids.txt"
    return sorted(line.strip() for line in path.read_text().splitlines() if line.strip())


def _load_tiny_imagenet(root: Path, download: bool):
    """Tiny ImageNet's train and val splits (val as the test split: its labels are published, the
    test split's are not)."""
    root = Path(root)
    if any(not (root / f).exists() for f in REQUIRED_FILES["tiny_imagenet"]):
        if not download:
            raise _missing_files_error("tiny_imagenet", root)
        from torchvision.datasets.utils import download_and_extract_archive

        url, filename, md5 = ARCHIVES["tiny_imagenet"]
        download_and_extract_archive(url, str(root), filename=filename, md5=md5)
    base = root / "tiny-imagenet-200"
    wnids = tiny_imagenet_classes(root)
    index = {w: i for i, w in enumerate(wnids)}
    train_paths, train_labels = [], []
    for w in wnids:
        folder = base / "train" / w / "images"
        if not folder.is_dir():
            raise FileNotFoundError(f"tiny_imagenet folder {folder} not found (listed in wnids.txt); "
                                    f"obtain the data set again from {SOURCES['tiny_imagenet']}")
        files = sorted(folder.glob("*.JPEG"))
        train_paths += files
        train_labels += [index[w]] * len(files)
    val_paths, val_labels = [], []
    for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise ValueError(f"tiny_imagenet file {base / 'val' / 'val_annotations.txt'} has a bad line "
                             f"{line!r}; valid: '<file>\\t<wnid>\\t<box>'")
        val_paths.append(base / "val" / "images" / fields[0])
        val_labels.append(index[fields[1]])
    out = []
    for paths, labels in ((train_paths, train_labels), (val_paths, val_labels)):
        x = torch.from_numpy(_decode_images(paths, 64)).permute(0, 3, 1, 2)
        out.append((x.float().div_(255.0).contiguous(), torch.as_tensor(labels, dtype=torch.int64)))
    return out, len(wnids)


def _load_torchvision(name: str, root: Path, download: bool):
    import torchvision

    root = Path(root)
    if name == "tiny_imagenet":
        return _load_tiny_imagenet(root, download)
    if not download and any(not (root / f).exists() for f in REQUIRED_FILES[name]):
        raise _missing_files_error(name, root)
    if not download:
        verify_files(name, root)
        if name in ("mnist", "fashion_mnist"):
            for rel in REQUIRED_FILES[name]:
                _check_idx(name, root / rel)
    if name == "cifar10":
        cls = _CIFAR10Files
    else:
        cls = {"mnist": torchvision.datasets.MNIST,
               "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    out = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=download)
        except (OSError, EOFError, ValueError, RuntimeError, pickle.UnpicklingError, KeyError) as err:
            raise _damaged_file_error(name, root / REQUIRED_FILES[name][0].rsplit("/", 1)[0], err) from None
        x = torch.as_tensor(np.asarray(ds.data))
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        if x.ndim == 3:  # (N, H, W) grey
            x = x.unsqueeze(1)
        else:  # CIFAR: (N, H, W, C)
            x = x.permute(0, 3, 1, 2)
        out.append((x.float().div_(255.0).contiguous(), y))
    return out, 10


def _cifar10_class():
    import torchvision

    class CIFAR10Files(torchvision.datasets.CIFAR10):
        """torchvision's CIFAR-10 reader that checks the batch files exist rather than hashing
        170 MB on every load (the MD5s are still verified by torchvision on download)."""

        def _check_integrity(self) -> bool:  # noqa: D401 — torchvision hook
            base = Path(self.root) / self.base_folder
            return all((base / f).exists() for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            import pickle

            path = Path(self.root) / self.base_folder / self.meta["filename"]
            with open(path, "rb") as f:  # the CIFAR-10 format is a pickle (a data file, not a checkpoint)
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return CIFAR10Files


class _LazyCIFAR:
    def __call__(self, *args, **kwargs):
        return _cifar10_class()(*args, **kwargs)


_CIFAR10Files = _LazyCIFAR()


def _stratified_subset(y: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """Indices of a class-stratified random subset of size ``n`` (all indices if ``n`` is None)."""
    if n is None or n >= len(y):
        return torch.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y.numpy(), random_state=seed)
    return torch.as_tensor(np.sort(idx))


@lru_cache(maxsize=8)
def _load_raw(name: str, data_dir: str, download: bool):
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        x = torch.as_tensor(d.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
        y = torch.as_tensor(d.target, dtype=torch.int64)
        # The fixed split: 70 % train, 30 % test, stratified, independent of the experiment seed.
        tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y.numpy(), random_state=0)
        tr, te = torch.as_tensor(np.sort(tr)), torch.as_tensor(np.sort(te))
        return ((x[tr], y[tr]), (x[te], y[te])), 10
    return _load_torchvision(name, Path(data_dir), download)


def load_dataset(name: str = "digits", *, data_dir=None, download: bool = False,
                 n_train: int | None = None, n_test: int | None = None,
                 image_size: int | None = None, subset_seed: int = 0) -> Dataset:
    """Load a data set as in-memory tensors.

    Parameters
    ----------
    name : {'digits', 'mnist', 'fashion_mnist', 'cifar10', 'tiny_imagenet'}
    data_dir : path, optional
        Where torchvision's files live (default :func:`reprobust.paths.default_data_dir`).
        Unused for ``digits``.
    download : bool, default False
        Allow torchvision to download missing files. Without it a missing file is a clear error.
    n_train, n_test : int, optional
        Class-stratified random subsets (seeded by ``subset_seed``) of the fixed split.
    image_size : int, optional
        Resize images to ``image_size × image_size`` (bilinear; e.g. digits to 32×32).
    subset_seed : int, default 0

    Returns
    -------
    Dataset

    Example
    -------
    >>> ds = load_dataset("digits", n_train=500)
    >>> ds.x_train.shape
    torch.Size([500, 1, 8, 8])
    """
    check_choice("dataset", name, DATASETS)
    for what, n in (("n_train", n_train), ("n_test", n_test), ("image_size", image_size)):
        if n is not None:
            check_range(what, n, low=1)
    if download is False and os.environ.get("REPROBUST_ALLOW_DOWNLOAD") == "1":
        download = True
    root = str(Path(data_dir) if data_dir is not None else default_data_dir())
    ((x_tr, y_tr), (x_te, y_te)), num_classes = _load_raw(name, root, bool(download))
    # Normalisation statistics from the whole training split, per channel.
    mean = tuple(float(v) for v in x_tr.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in x_tr.std(dim=(0, 2, 3)).clamp_min(1e-3))
    tr = _stratified_subset(y_tr, n_train, subset_seed)
    te = _stratified_subset(y_te, n_test, subset_seed + 1)
    x_tr, y_tr, x_te, y_te = x_tr[tr], y_tr[tr], x_te[te], y_te[te]
    if image_size is not None and image_size != x_tr.shape[-1]:
        size = (image_size, image_size)
        x_tr = F.interpolate(x_tr, size=size, mode="bilinear", align_corners=False).clamp_(0, 1)
        x_te = F.interpolate(x_te, size=size, mode="bilinear", align_corners=False).clamp_(0, 1)
    return Dataset(name, x_tr.contiguous(), y_tr, x_te.contiguous(), y_te, num_classes, mean, std)


def stratified_batches(y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None):
    """Shuffle indices so that classes are spread evenly over the epoch, then cut into batches.

    Each class's samples are shuffled and placed at evenly spaced positions ``(rank + u) / count``
    along the epoch (``u`` uniform), so every batch holds every class in proportion — which the
    class-selectivity regulariser needs (class means per minibatch).

    Returns
    -------
    list of LongTensor, each of length ``batch_size`` (the last may be shorter)
    """
    check_range("batch_size", batch_size, low=1)
    keys = torch.empty(len(y), dtype=torch.float64)
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        perm = idx[torch.randperm(len(idx), generator=generator)]
        u = torch.rand(len(idx), generator=generator, dtype=torch.float64)
        keys[perm] = (torch.arange(len(idx), dtype=torch.float64) + u) / len(idx)
    order = torch.argsort(keys)
    return list(torch.split(order, batch_size))


def validation_split(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int = 0):
    """Hold out a stratified ``fraction`` of ``(x, y)`` for validation (early stopping, model selection).

    Each class contributes ``round(fraction * count)`` examples (at least one), chosen by ``seed``.

    Returns
    -------
    (x_fit, y_fit), (x_val, y_val) : Tensors; the two parts are disjoint and cover ``x``

    Example
    -------
    >>> (xf, yf), (xv, yv) = validation_split(ds.x_train, ds.y_train, 0.1, seed=0)
    """
    from .validation import check_range

    check_range("validation fraction", fraction, low=0, high=1, low_inclusive=False, high_inclusive=False)
    gen = torch.Generator().manual_seed(seed)
    val = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        val.append(idx[: max(1, round(fraction * len(idx)))])
    val = torch.sort(torch.cat(val)).values
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[val] = False
    return (x[mask], y[mask]), (x[val], y[val])


def leave_one_out(x: torch.Tensor, y: torch.Tensor, excluded: int):
    """Drop class ``excluded`` and re-index the remaining labels to ``0 … N-2``.

    Returns
    -------
    x_kept : Tensor, the images of the other classes
    y_kept : Tensor, labels re-indexed (classes above ``excluded`` shift down by one)
    """
    keep = y != excluded
    y_kept = y[keep]
    return x[keep], y_kept - (y_kept > excluded).long()


def insert_excluded_column(probs: torch.Tensor, excluded: int) -> torch.Tensor:
    """Re-insert a zero column at index ``excluded``: ``(n, N-1)`` → ``(n, N)``.

    Inverse of :func:`leave_one_out`'s re-indexing, used to compare a leave-one-out model's
    outputs with those of the full model in the common N-class space.
    """
    zeros = probs.new_zeros(probs.shape[0], 1)
    return torch.cat([probs[:, :excluded], zeros, probs[:, excluded:]], dim=1)


def with_subset(ds: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """A stratified subset of an already loaded :class:`Dataset`."""
    tr = _stratified_subset(ds.y_train, n_train, seed)
    te = _stratified_subset(ds.y_test, n_test, seed + 1)
    return replace(ds, x_train=ds.x_train[tr], y_train=ds.y_train[tr],
                   x_test=ds.x_test[te], y_test=ds.y_test[te])


def main(argv=None):  # pragma: no cover - thin CLI around torchvision's downloader
    import argparse

    p = argparse.ArgumentParser(description="Fetch a data set into the data directory")
    p.add_argument("name", choices=[d for d in DATASETS if d != "digits"])
    p.add_argument("--data-dir", default=str(default_data_dir()))
    p.add_argument("--download", action="store_true")
    a = p.parse_args(argv)
    ds = load_dataset(a.name, data_dir=a.data_dir, download=a.download)
    print(f"{a.name}: {len(ds.y_train)} train, {len(ds.y_test)} test images in {a.data_dir}")


if __name__ == "__main__":  # pragma: no cover
    main()
