import os

import pytest
import torch

# Small models on a 2-core machine: more threads than cores only adds contention.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def cache(tmp_path):
    from reprobust.cache import Cache

    return Cache(tmp_path / "cache")


@pytest.fixture(scope="session")
def digits():
    from reprobust.data import load_dataset

    return load_dataset("digits")
