"""Temperature scaling against a grid search of the NLL and a known generating temperature."""

import numpy as np
import pytest
import torch

from reprobust.calibration import fit_temperature, nll, softmax


def _sampled(T, seed=0, n=4000, k=6):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3
    p = softmax(z, T)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, y


@pytest.mark.parametrize("T", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_the_generating_temperature(T):
    z, y = _sampled(T)
    assert abs(np.log(fit_temperature(z, y) / T)) < 0.1


def test_fit_temperature_is_the_nll_minimum_on_a_grid():
    z, y = _sampled(2.0, seed=3, n=500)
    grid = np.exp(np.linspace(-2, 2, 4001))
    best = grid[np.argmin([nll(z, y, t) for t in grid])]
    assert abs(fit_temperature(z, y) - best) / best < 2e-3


def test_nll_matches_torch_cross_entropy_and_bad_input_is_refused():
    z, y = _sampled(1.0, n=50)
    ref = torch.nn.functional.cross_entropy(torch.tensor(z / 1.7), torch.tensor(y)).item()
    assert nll(z, y, 1.7) == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError, match="temperature"):
        nll(z, y, 0.0)
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(z, y + 10)
