import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from reprobust.data import (SYNTHETIC_MARKER, Dataset, insert_excluded_column, leave_one_out, load_dataset,
                            stratified_batches, with_subset)


def test_digits_split_is_fixed_and_in_unit_range(digits):
    again = load_dataset("digits")
    assert digits.x_train.shape == (1257, 1, 8, 8) and digits.x_test.shape == (540, 1, 8, 8)
    assert torch.equal(digits.x_train, again.x_train) and torch.equal(digits.y_test, again.y_test)
    assert 0 <= digits.x_train.min() and digits.x_train.max() <= 1
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    # the split is stratified: every class in both parts, no image in both
    assert set(digits.y_test.tolist()) == set(range(10))
    tr = {tuple(v.tolist()) for v in digits.x_train.flatten(1)}
    assert sum(tuple(v.tolist()) in tr for v in digits.x_test.flatten(1)) < 5  # digits has a few duplicates


def test_subsets_are_stratified_and_seeded():
    a = load_dataset("digits", n_train=200, n_test=100, subset_seed=3)
    b = load_dataset("digits", n_train=200, n_test=100, subset_seed=3)
    c = load_dataset("digits", n_train=200, n_test=100, subset_seed=4)
    assert len(a.y_train) == 200 and len(a.y_test) == 100
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    counts = torch.bincount(a.y_train, minlength=10)
    assert counts.min() >= 18 and counts.max() <= 22


def test_resize_to_32(digits):
    ds = load_dataset("digits", image_size=32, n_train=50)
    assert ds.x_train.shape == (50, 1, 32, 32)
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1


def test_with_subset(digits):
    sub = with_subset(digits, n_train=100, n_test=50)
    assert isinstance(sub, Dataset) and len(sub.y_train) == 100 and len(sub.y_test) == 50


@pytest.mark.parametrize("bad", [dict(name="mnsit"), dict(name="digits", n_train=0), dict(name="digits", image_size=-2)])
def test_bad_input_is_one_line_error(bad):
    with pytest.raises(ValueError) as e:
        load_dataset(**bad)
    assert "\n" not in str(e.value)
    assert ("valid" in str(e.value))


def test_leave_one_out_round_trip():
    y = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3])
    x = torch.arange(8.0).view(8, 1, 1, 1)
    xk, yk = leave_one_out(x, y, excluded=1)
    assert yk.tolist() == [0, 1, 2, 1, 0, 2]  # classes 2, 3 shift down to 1, 2
    assert xk.flatten().tolist() == [0, 2, 3, 4, 6, 7]
    probs = torch.tensor([[0.25, 0.25, 0.5]])
    full = insert_excluded_column(probs, 1)
    assert full.tolist() == [[0.25, 0.0, 0.25, 0.5]]
    # the relabelling and the re-insertion are inverse maps of class indices
    onehot = torch.nn.functional.one_hot(yk, 3).float()
    back = insert_excluded_column(onehot, 1).argmax(1)
    assert torch.equal(back, y[y != 1])


def test_stratified_batches_hold_every_class(digits):
    batches = stratified_batches(digits.y_train, 64, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(len(digits.y_train)))
    for b in batches[:-1]:
        assert len(torch.unique(digits.y_train[b])) == 10


# ---- real torchvision loaders on tiny files in the real on-disk formats -----------------------------

def _write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.tobytes())


def _fake_mnist(root, folder):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 20)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_loads_idx_files_through_torchvision(tmp_path, name, folder):
    _fake_mnist(tmp_path, folder)
    ds = load_dataset(name, data_dir=tmp_path)
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (20, 1, 28, 28)
    assert ds.y_train.tolist() == [i % 10 for i in range(30)]
    raw = np.frombuffer((tmp_path / folder / "raw" / "train-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    assert torch.allclose(ds.x_train.flatten(), torch.tensor(raw, dtype=torch.float32) / 255)


def test_cifar10_loads_pickled_batches_through_torchvision(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(1)
    for i, name in enumerate(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]):
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "labels": [(i + j) % 10 for j in range(4)]}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    # Hand-made files cannot match CIFAR-10's published MD5s: mark the folder synthetic.
    (tmp_path / SYNTHETIC_MARKER).write_text("{}")
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    with open(base / "test_batch", "rb") as f:
        first = pickle.load(f)["data"][0]
    # CIFAR rows are channel-major (1024 R, 1024 G, 1024 B)
    assert torch.allclose(ds.x_test[0].flatten(), torch.tensor(first, dtype=torch.float32) / 255)
    assert len(ds.mean) == 3


def test_missing_files_name_them_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", data_dir=tmp_path / "nothing")
    msg = str(e.value)
    assert "data_batch_1" in msg and "--download" in msg and "\n" not in msg
