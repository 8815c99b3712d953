"""Device selection and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from .validation import check_choice

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda"`` into a :class:`torch.device`.

    ``"auto"`` picks CUDA when available. Asking for ``"cuda"`` on a machine without it is an error
    rather than a silent fallback, so that a GPU run is never secretly a CPU run.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = check_choice("device", spec or "auto", DEVICES)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but CUDA is not available; valid choices here: auto, cpu")
    return torch.device(spec)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a CPU generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
