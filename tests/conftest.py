import os

import pytest
import torch

# The notebooks' CPU default (reprobust.context.default_threads): one torch thread.
torch.set_num_threads(1)


@pytest.fixture
def cache(tmp_path):
    from reprobust.cache import Cache

    return Cache(tmp_path / "cache")


@pytest.fixture(scope="session")
def digits():
    from reprobust.data import load_dataset

    return load_dataset("digits")
