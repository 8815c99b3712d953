"""Every path the project uses, resolved from one place (the repository root).

Papermill runs kernels in the caller's working directory, so nothing in the package may rely on
``os.getcwd()``; everything is anchored on :data:`REPO_ROOT` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
FIGURES_DIR = REPO_ROOT / "figures"
BUILD_DIR = REPO_ROOT / "build"


def default_cache_dir() -> Path:
    """Cache root: ``$REPROBUST_CACHE_DIR`` or ``<repo>/.cache``."""
    return Path(os.environ.get("REPROBUST_CACHE_DIR") or REPO_ROOT / ".cache")


def default_data_dir() -> Path:
    """Data root for MNIST/CIFAR-10 files: ``$REPROBUST_DATA_DIR`` or ``<repo>/data``."""
    return Path(os.environ.get("REPROBUST_DATA_DIR") or REPO_ROOT / "data")
