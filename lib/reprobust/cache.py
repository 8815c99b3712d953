"""On-disk cache of trained models and expensive arrays, keyed by their full configuration.

- The key is a hash of the canonical JSON of the configuration plus the package version and a
  per-kind version number, so changing any setting (or the code that matters) recomputes.
- Writes are atomic (temporary file in the same folder, ``fsync``, ``os.replace``): a crash leaves
  either the old entry or none, never half a file.
- Each entry ``<kind>/<key>.pt`` has a sidecar ``<key>.json`` with the configuration and the
  SHA-256 of the data file; a truncated or corrupted entry is detected, reported and recomputed.
- Loading uses ``torch.load(..., weights_only=True)``: only tensors and plain containers are ever
  unpickled. NumPy arrays are stored as tensors and restored as arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .paths import default_cache_dir


def canonical_json(cfg) -> str:
    """Deterministic JSON of a configuration (sorted keys, tuples as lists)."""
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (Path, torch.device, torch.dtype)):
        return str(o)
    raise TypeError(f"configuration value {o!r} of type {type(o).__name__} is not JSON-serialisable")


def config_key(cfg, version: int = 1) -> str:
    """Short hex key of a configuration (24 hex digits of SHA-256)."""
    payload = canonical_json({"cfg": cfg, "package": __version__, "version": version})
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; published figures should be world-readable
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _encode(obj):
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_encode(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode(v) for v in obj)
    return obj


class CacheCorrupted(Exception):
    """An entry exists but cannot be trusted."""


class Cache:
    """A folder of cached results.

    Parameters
    ----------
    root : path, optional, default :func:`reprobust.paths.default_cache_dir`
    enabled : bool, default True; when False every call recomputes and nothing is written

    Example
    -------
    >>> cache = Cache("/tmp/c")
    >>> arr = cache.get_or_compute("squares", {"n": 4}, lambda: np.arange(4) ** 2)
    """

    def __init__(self, root=None, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled

    def paths(self, kind: str, cfg, version: int = 1):
        key = config_key(cfg, version)
        folder = self.root / kind
        return folder / f"{key}.pt", folder / f"{key}.json"

    def contains(self, kind: str, cfg, version: int = 1) -> bool:
        data, meta = self.paths(kind, cfg, version)
        return data.exists() and meta.exists()

    def load(self, kind: str, cfg, version: int = 1):
        """Load an entry; raise ``KeyError`` if absent, :class:`CacheCorrupted` if damaged."""
        data_path, meta_path = self.paths(kind, cfg, version)
        if not (data_path.exists() and meta_path.exists()):
            raise KeyError(f"{kind}/{data_path.stem}")
        raw = data_path.read_bytes()
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CacheCorrupted(f"{meta_path}: unreadable metadata ({e})") from None
        if meta.get("sha256") != hashlib.sha256(raw).hexdigest():
            raise CacheCorrupted(f"{data_path}: checksum mismatch (truncated or modified)")
        try:
            return _decode(torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True))
        except Exception as e:  # noqa: BLE001 — any unpickling failure means "do not trust"
            raise CacheCorrupted(f"{data_path}: cannot be loaded ({type(e).__name__}: {e})") from None

    def save(self, kind: str, cfg, value, version: int = 1) -> None:
        """Store ``value`` (tensors, arrays, numbers, strings and containers of them) atomically."""
        data_path, meta_path = self.paths(kind, cfg, version)
        buf = io.BytesIO()
        torch.save(_encode(value), buf)
        raw = buf.getvalue()
        try:  # what load() will do: refuse now what could never be read back (it would be recomputed forever)
            torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 — torch raises UnpicklingError or RuntimeError here
            raise TypeError(f"cache entry {kind!r}: a {type(value).__name__} cannot be read back with "
                            f"weights_only=True ({type(err).__name__}); store tensors, arrays, numbers, strings "
                            "and containers of them (e.g. DataFrame.to_dict('list'))") from None
        meta = {"kind": kind, "config": json.loads(canonical_json(cfg)), "version": version,
                "package": __version__, "sha256": hashlib.sha256(raw).hexdigest()}
        # Data first, metadata last: an entry only counts once its metadata exists.
        atomic_write_bytes(data_path, raw)
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1, sort_keys=True).encode())

    def get_or_compute(self, kind: str, cfg, compute, version: int = 1):
        """Return the cached value for ``(kind, cfg)``, computing and storing it if needed.

        A corrupted entry is reported with a warning and recomputed.
        """
        if self.enabled:
            try:
                return self.load(kind, cfg, version)
            except KeyError:
                pass
            except CacheCorrupted as e:
                warnings.warn(f"cache entry corrupted, recomputing: {e}", stacklevel=2)
        value = compute()
        if self.enabled:
            self.save(kind, cfg, value, version)
        return value
