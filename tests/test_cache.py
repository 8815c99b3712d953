import io
import json
import os

import numpy as np
import pytest
import torch

from reprobust.cache import Cache, CacheCorrupted, atomic_write_bytes, config_key


def test_round_trip_of_tensors_arrays_and_containers(cache):
    value = {"w": torch.arange(6.0).view(2, 3), "a": np.arange(4, dtype=np.int32), "hist": [0.5, 0.25],
             "nested": {"t": (torch.ones(2), "label")}, "n": 3}
    cache.save("thing", {"k": 1}, value)
    back = cache.load("thing", {"k": 1})
    assert torch.equal(back["w"], value["w"])
    assert isinstance(back["a"], np.ndarray) and back["a"].dtype == np.int32 and (back["a"] == value["a"]).all()
    assert back["hist"] == [0.5, 0.25] and back["n"] == 3 and back["nested"]["t"][1] == "label"


def test_key_depends_on_every_setting_and_not_on_dict_order():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
    assert config_key({"a": 1}, version=1) != config_key({"a": 1}, version=2)
    with pytest.raises(TypeError, match="not JSON"):
        config_key({"f": object()})


def test_get_or_compute_computes_once(cache):
    calls = []
    f = lambda: calls.append(1) or np.arange(3)
    a = cache.get_or_compute("sq", {"n": 3}, f)
    b = cache.get_or_compute("sq", {"n": 3}, f)
    assert calls == [1] and (a == b).all()


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_corrupted_entry_is_reported_and_recomputed(cache, damage):
    cache.save("x", {"n": 1}, {"t": torch.arange(1000.0)})
    data, meta = cache.paths("x", {"n": 1})
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    else:
        meta.write_text("{not json")
    with pytest.raises(CacheCorrupted):
        cache.load("x", {"n": 1})
    with pytest.warns(UserWarning, match="corrupted"):
        out = cache.get_or_compute("x", {"n": 1}, lambda: {"t": torch.zeros(2)})
    assert torch.equal(out["t"], torch.zeros(2))
    assert torch.equal(cache.load("x", {"n": 1})["t"], torch.zeros(2))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_loading_never_unpickles_arbitrary_objects(cache):
    # a well-formed entry (valid checksum) whose payload is an arbitrary object
    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)
    cache.save("evil", {"n": 1}, {"x": 1})
    data, meta = cache.paths("evil", {"n": 1})
    data.write_bytes(buf.getvalue())
    m = json.loads(meta.read_text())
    import hashlib
    m["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    meta.write_text(json.dumps(m))
    with pytest.raises(CacheCorrupted, match="cannot be loaded"):
        cache.load("evil", {"n": 1})


def test_atomic_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_entry_without_metadata_counts_as_absent(cache):
    cache.save("x", {"n": 2}, torch.ones(1))
    data, meta = cache.paths("x", {"n": 2})
    meta.unlink()
    assert not cache.contains("x", {"n": 2})
    with pytest.raises(KeyError):
        cache.load("x", {"n": 2})


def test_disabled_cache_writes_nothing(tmp_path):
    c = Cache(tmp_path / "c", enabled=False)
    c.get_or_compute("x", {}, lambda: torch.ones(1))
    assert not (tmp_path / "c").exists()


def test_a_value_that_could_never_be_read_back_is_refused_at_save(cache):
    # a DataFrame pickles fine but weights_only loading refuses it: stored, it would be "corrupted" and
    # recomputed on every run (notebook 01's reference rows were), so save() refuses it and writes nothing
    import pandas as pd

    with pytest.raises(TypeError, match="'refs': a DataFrame cannot be read back with weights_only=True"):
        cache.save("refs", {"a": 1}, pd.DataFrame({"x": [1.0, 2.0]}))
    assert not any(p.is_file() for p in cache.root.rglob("*"))
    with pytest.raises(KeyError):
        cache.load("refs", {"a": 1})
    # its plain-container form is stored and read back
    cache.save("refs", {"a": 1}, pd.DataFrame({"x": [1.0, 2.0]}).to_dict("list"))
    assert cache.load("refs", {"a": 1}) == {"x": [1.0, 2.0]}
