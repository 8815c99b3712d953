"""Data sets as in-memory tensors in [0, 1] with fixed, seeded train/test splits.

``digits`` (scikit-learn's bundled 8×8 handwritten digits, 1,797 images) works offline and is the
default for the ``smoke`` and ``quick`` profiles. ``mnist``, ``fashion_mnist`` and ``cifar10`` go
through torchvision's own loaders reading the standard on-disk formats (idx files, pickled batches)
from a data directory; they download only when asked.

Images are float32 tensors of shape ``(N, C, H, W)`` in ``[0, 1]``; labels are int64 of shape
``(N,)``. Normalisation is *not* applied here: it lives inside each model, so that every attack
works in pixel space.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .paths import default_data_dir
from .validation import check_choice, check_range

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")

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
}


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
        f"download them with: python -m reprobust.data {name} --data-dir {root} --download")


def _load_torchvision(name: str, root: Path, download: bool):
    import torchvision

    root = Path(root)
    if not download and any(not (root / f).exists() for f in REQUIRED_FILES[name]):
        raise _missing_files_error(name, root)
    if name == "cifar10":
        cls = _CIFAR10Files
    else:
        cls = {"mnist": torchvision.datasets.MNIST,
               "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    out = []
    for train in (True, False):
        ds = cls(root=str(root), train=train, download=download)
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
    name : {'digits', 'mnist', 'fashion_mnist', 'cifar10'}
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
