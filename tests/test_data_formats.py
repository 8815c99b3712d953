"""Loaders on tiny synthetic files in each real on-disk format (reprobust.synthetic_data), checksums,
and one-line errors for missing or damaged files."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from reprobust import corruptions as C
from reprobust import data as D
from reprobust import synthetic_data as SD


@pytest.fixture(autouse=True)
def _fresh_loader_cache():
    D._load_raw.cache_clear()
    yield
    D._load_raw.cache_clear()


@pytest.mark.parametrize("variant,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_writer_round_trips_through_torchvision(tmp_path, variant, folder):
    SD.write_mnist(tmp_path, variant=variant, n_train=30, n_test=12, seed=3)
    ds = D.load_dataset(variant, data_dir=tmp_path)
    raw = (tmp_path / folder / "raw" / "t10k-images-idx3-ubyte").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03"  # idx magic: unsigned bytes, 3 dimensions
    expected = np.frombuffer(raw[16:], np.uint8).reshape(12, 1, 28, 28)
    assert torch.equal(ds.x_test, torch.tensor(expected, dtype=torch.float32) / 255)
    labels = np.frombuffer((tmp_path / folder / "raw" / "train-labels-idx1-ubyte").read_bytes()[8:], np.uint8)
    assert ds.y_train.tolist() == labels.tolist() and len(set(labels)) == 10


def test_cifar10_writer_round_trips_through_torchvision(tmp_path):
    SD.write_cifar10(tmp_path, n_train=25, n_test=10)
    ds = D.load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (25, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    first = torch.tensor(batch["data"][0], dtype=torch.float32).reshape(3, 32, 32) / 255
    assert torch.equal(ds.x_train[10], first)  # batches 1, 2 hold 5 images each
    assert ds.y_train[10] == batch["labels"][0]


def test_tiny_imagenet_reads_train_folders_and_val_annotations(tmp_path):
    SD.write_tiny_imagenet(tmp_path, n_classes=3, n_train_per_class=2, n_val_per_class=2)
    ds = D.load_dataset("tiny_imagenet", data_dir=tmp_path)
    assert ds.num_classes == 3 and ds.input_shape == (3, 64, 64)
    assert ds.x_train.shape == (6, 3, 64, 64) and ds.x_test.shape == (6, 3, 64, 64)
    wnids = sorted((tmp_path / "tiny-imagenet-200" / "wnids.txt").read_text().split())
    # Independent read of the annotation file and the JPEGs.
    lines = (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").read_text().splitlines()
    for i, line in enumerate(lines):
        fname, wnid = line.split("\t")[:2]
        assert ds.y_test[i] == wnids.index(wnid)
        img = np.asarray(Image.open(tmp_path / "tiny-imagenet-200" / "val" / "images" / fname).convert("RGB"))
        assert torch.equal(ds.x_test[i], torch.tensor(img, dtype=torch.float32).permute(2, 0, 1) / 255)
    assert ds.y_train.tolist() == [0, 0, 1, 1, 2, 2]


def test_tiny_imagenet_converts_greyscale_jpegs_to_rgb(tmp_path):
    SD.write_tiny_imagenet(tmp_path, n_classes=2, n_train_per_class=1, n_val_per_class=1)
    path = next((tmp_path / "tiny-imagenet-200" / "train" / "n00000000" / "images").glob("*.JPEG"))
    Image.fromarray(np.full((64, 64), 200, np.uint8), mode="L").save(path, format="JPEG")
    ds = D.load_dataset("tiny_imagenet", data_dir=tmp_path)
    assert ds.x_train.shape[1] == 3 and torch.equal(ds.x_train[0, 0], ds.x_train[0, 2])


def test_cifar10c_writer_has_all_19_files_and_loads(tmp_path):
    SD.write_cifar10c(tmp_path, n_per_severity=4)
    assert sorted(p.stem for p in (tmp_path / "CIFAR-10-C").glob("*.npy")) == sorted(C.CIFAR10C_FILES + ("labels",))
    cs = C.load_cifar10c(tmp_path, C.CIFAR10C_FILES, severities=(1, 5))
    assert cs.images.shape == (19, 2, 4, 3, 32, 32)
    raw = np.load(tmp_path / "CIFAR-10-C" / "frost.npy")
    np.testing.assert_array_equal(cs.images[C.CIFAR10C_FILES.index("frost"), 1, 3], np.moveaxis(raw[4 * 4 + 3], -1, 0))


def test_tiny_imagenet_c_reads_corruption_severity_wnid_folders(tmp_path):
    SD.write_tiny_imagenet_c(tmp_path, n_classes=3, n_per_class=2, corruptions=["fog", "pixelate"], severities=(2, 5))
    cs = C.load_tiny_imagenet_c(tmp_path, ["pixelate", "fog"], severities=(5, 2), n_per_severity=5)
    assert cs.images.shape == (2, 2, 5, 3, 64, 64)
    # File-name order val_0, val_1, ... (class-mixed); label = sorted wnid index of the folder.
    files = sorted((tmp_path / "Tiny-ImageNet-C" / "fog" / "2").glob("*/*.JPEG"), key=lambda p: int(p.stem[4:]))
    assert cs.labels.tolist() == [int(p.parent.name[1:]) for p in files[:5]]
    img = np.asarray(Image.open(files[4]).convert("RGB"))
    np.testing.assert_array_equal(cs.images[1, 1, 4], np.moveaxis(img, -1, 0))
    with pytest.raises(FileNotFoundError, match="missing: fog/3") as e:
        C.load_tiny_imagenet_c(tmp_path, ["fog"], severities=(3,))
    assert "\n" not in str(e.value) and "Tiny-ImageNet-C.tar" in str(e.value)


def test_write_all_covers_every_full_profile_data_set(tmp_path):
    SD.write_all(tmp_path, n_train=20, n_test=10)
    for name in ("mnist", "fashion_mnist", "cifar10", "tiny_imagenet"):
        ds = D.load_dataset(name, data_dir=tmp_path)
        assert len(ds.y_train) > 0 and float(ds.x_train.max()) <= 1
    assert C.load_cifar10c(tmp_path, ["snow"]).images.shape[2] == 5
    assert C.load_tiny_imagenet_c(tmp_path, ["snow"], severities=(1,)).images.shape[:3] == (1, 1, 8)


# ---- checksums and errors --------------------------------------------------------------------------------

def test_published_checksums_catch_a_file_that_is_not_the_release(tmp_path):
    SD.write_cifar10(tmp_path, n_train=10, n_test=5)
    (tmp_path / D.SYNTHETIC_MARKER).unlink()  # now it claims to be the real release
    with pytest.raises(ValueError) as e:
        D.load_dataset("cifar10", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "cifar-10-batches-py/data_batch_1" in msg and "cifar-10-python.tar.gz" in msg


def test_matching_checksums_load(tmp_path, monkeypatch):
    SD.write_cifar10(tmp_path, n_train=10, n_test=5)
    (tmp_path / D.SYNTHETIC_MARKER).unlink()
    real = {rel: D.file_md5(tmp_path / rel) for rel in D.published_md5s("cifar10")}
    monkeypatch.setattr(D, "published_md5s", lambda name: real if name == "cifar10" else {})
    assert D.load_dataset("cifar10", data_dir=tmp_path).x_train.shape == (10, 3, 32, 32)


def test_published_md5s_are_torchvision_s():
    import torchvision.datasets as tvd

    md5 = D.published_md5s("cifar10")
    assert md5["cifar-10-batches-py/test_batch"] == dict(tvd.CIFAR10.test_list)["test_batch"]
    assert len(md5) == 7
    assert set(D.published_md5s("mnist")) == {f"MNIST/raw/{f}" for f, _ in tvd.MNIST.resources}


@pytest.mark.parametrize("name,missing", [("tiny_imagenet", "tiny-imagenet-200/wnids.txt"),
                                          ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
                                          ("fashion_mnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte")])
def test_a_missing_file_is_named_with_location_and_source(tmp_path, name, missing):
    with pytest.raises(FileNotFoundError) as e:
        D.load_dataset(name, data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and missing in msg and str(tmp_path) in msg and "--allow-download" in msg


def test_a_truncated_batch_is_a_one_line_error(tmp_path):
    SD.write_cifar10(tmp_path, n_train=10, n_test=5)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError) as e:
        D.load_dataset("cifar10", data_dir=tmp_path)
    assert "\n" not in str(e.value) and "cifar-10-batches-py" in str(e.value)


def test_a_truncated_idx_file_is_named(tmp_path):
    SD.write_mnist(tmp_path, n_train=20, n_test=10)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError) as e:
        D.load_dataset("mnist", data_dir=tmp_path)
    assert "\n" not in str(e.value) and "t10k-labels-idx1-ubyte" in str(e.value) and "damaged" in str(e.value)


def test_a_damaged_jpeg_is_a_one_line_error_naming_it(tmp_path):
    SD.write_tiny_imagenet(tmp_path, n_classes=2, n_train_per_class=1, n_val_per_class=1)
    bad = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError) as e:
        D.load_dataset("tiny_imagenet", data_dir=tmp_path)
    assert "\n" not in str(e.value) and "val_1.JPEG" in str(e.value)


def test_a_truncated_npy_is_a_one_line_error_naming_it(tmp_path):
    SD.write_cifar10c(tmp_path, n_per_severity=2, corruptions=["fog"])
    path = tmp_path / "CIFAR-10-C" / "fog.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError) as e:
        C.load_cifar10c(tmp_path, ["fog"])
    assert "\n" not in str(e.value) and "fog.npy" in str(e.value)


def test_allow_download_uses_torchvision_s_downloader_with_the_published_md5(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def fake_download(url, root, filename=None, md5=None, **kw):
        calls.append((url, filename, md5))
        if filename == "tiny-imagenet-200.zip":
            SD.write_tiny_imagenet(root, n_classes=2, n_train_per_class=1, n_val_per_class=1)
        else:
            SD.write_cifar10c(root, n_per_severity=2, corruptions=["fog"])

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake_download)
    with pytest.raises(FileNotFoundError):
        D.load_dataset("tiny_imagenet", data_dir=tmp_path)
    assert D.load_dataset("tiny_imagenet", data_dir=tmp_path, download=True).num_classes == 2
    monkeypatch.setenv("REPROBUST_ALLOW_DOWNLOAD", "1")
    assert C.load_cifar10c(tmp_path, ["fog"]).images.shape == (1, 5, 2, 3, 32, 32)
    assert calls == [("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip",
                      "90528d7ca1a48142e341f4ef8d21d0de"),
                     ("https://zenodo.org/records/2535967/files/CIFAR-10-C.tar", "CIFAR-10-C.tar",
                      "56bf5dcef84df0e2308c6dcbcbbd8499")]


@pytest.mark.parametrize("name", ["mnist", "cifar10", "tiny_imagenet"])
def test_synthetic_test_split_is_learnable_from_the_training_split(tmp_path, name):
    # Every split shows the same class prototypes: the nearest training-class mean classifies the test
    # (validation) images, so a model trained in an end-to-end run is tested on data it can fit.
    if name == "tiny_imagenet":
        SD.write_tiny_imagenet(tmp_path, n_classes=4, n_train_per_class=5, n_val_per_class=5)
    else:
        getattr(SD, f"write_{name}")(tmp_path, n_train=50, n_test=30)
    ds = D.load_dataset(name, data_dir=tmp_path)
    means = torch.stack([ds.x_train[ds.y_train == c].mean(0) for c in range(ds.num_classes)]).flatten(1)
    pred = torch.cdist(ds.x_test.flatten(1), means).argmin(1)
    assert (pred == ds.y_test).float().mean() > 0.9


def test_cifar10c_holds_the_test_split_s_classes(tmp_path):
    SD.write_cifar10(tmp_path, n_train=50, n_test=20)
    SD.write_cifar10c(tmp_path, n_per_severity=20, corruptions=["fog"])
    ds = D.load_dataset("cifar10", data_dir=tmp_path)
    x = torch.tensor(np.load(tmp_path / "CIFAR-10-C" / "fog.npy")[:20], dtype=torch.float32).permute(0, 3, 1, 2) / 255
    y = torch.tensor(np.load(tmp_path / "CIFAR-10-C" / "labels.npy")[:20].astype(np.int64))
    means = torch.stack([ds.x_train[ds.y_train == c].mean(0) for c in range(10)]).flatten(1)
    assert (torch.cdist(x.flatten(1), means).argmin(1) == y).float().mean() > 0.9
