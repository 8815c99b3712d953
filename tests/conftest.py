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


@pytest.fixture
def run_smoke(tmp_path):
    """Run one notebook on the smoke profile through the headless runner (a separate process, like
    ``./run_all.sh``); check it published the expected figures and tables, a claims table in which
    every verdict follows from its own row (and no row with < 3 replicates carries a verdict) and the
    replicate values behind it; return its output folder."""
    import subprocess
    import sys

    import pandas as pd

    from reprobust.claims import VERDICTS, check_claims_table

    def run(number: str, figures=(), tables=()):
        out = tmp_path / "figures"
        res = subprocess.run([sys.executable, "-m", "reprobust.run", "--profile", "smoke", "--only", number,
                              "--output-root", str(out), "--cache-dir", str(tmp_path / "cache")],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        (folder,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith(number + "_")]
        for name in figures:
            assert (folder / f"{name}.png").stat().st_size > 1000, name
        for name in (*tables, "claims", "claims_replicates"):
            assert (folder / f"{name}.csv").exists() and (folder / f"{name}.md").exists(), name
        claims = pd.read_csv(folder / "claims.csv")
        assert len(claims) and set(claims["verdict"]) <= set(VERDICTS)
        check_claims_table(claims)
        replicates = pd.read_csv(folder / "claims_replicates.csv")
        assert set(claims["id"]) == set(replicates["id"])
        return folder

    return run


@pytest.fixture(scope="session")
def adv_cnn(digits):
    """A small CNN adversarially trained (L∞ PGD, ε = 0.1) on the digits: robust to part of the attacks."""
    from reprobust.models import build_model
    from reprobust.train import fit

    torch.manual_seed(0)
    net = build_model("cnn", channels=(16, 32), strides="12", batchnorm=True, **digits.model_kwargs())
    fit(net, digits.x_train, digits.y_train, epochs=8, seed=0, adversarial={"attack": "pgd", "eps": 0.1, "steps": 2})
    return net.eval()


class TwoBasins(torch.nn.Module):
    """One-pixel images at 0.5; the class-1 logit ``100u² + 5u − 1.2`` (u = x − 0.5) has its minimum
    at u = −0.025: gradient ascent from a start left of it ends at u = −ε (still class 0), from the
    right at u = +ε (class 1, for ε = 0.1). Only some random starts succeed."""

    def forward(self, x):
        u = x.flatten(1)[:, 0] - 0.5
        return torch.stack([torch.zeros_like(u), 100 * u ** 2 + 5 * u - 1.2], dim=1)


@pytest.fixture
def two_basins():
    """(model, x, y): 64 identical one-pixel images that an attack fools from some starts only."""
    return TwoBasins(), torch.full((64, 1, 1, 1), 0.5), torch.zeros(64, dtype=torch.long)
