"""Temperature scaling: confidence calibration of a classifier's softmax (Guo et al., ICML 2017, §4.2).

A single temperature ``T > 0`` divides the logits, ``softmax(z / T)``, and is fitted by minimising the
negative log-likelihood of held-out labels. It changes the confidence of a model but never its
predictions (the arg-max is invariant), so a metric computed on temperature-scaled outputs compares
models at matched calibration instead of at whatever confidence their training left them with.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> z = rng.normal(size=(2000, 5)) * 3
>>> p = np.exp(z / 2.0); p /= p.sum(1, keepdims=True)
>>> y = np.array([rng.choice(5, p=row) for row in p])
>>> 1.8 < fit_temperature(z, y) < 2.2     # labels drawn from softmax(z / 2)
True
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from .validation import check_range

#: Search range of log T: temperatures from 1e-3 to 1e3.
LOG_T_BOUNDS = (-3 * np.log(10), 3 * np.log(10))


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def nll(logits, y, temperature: float) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``softmax(logits / temperature)``.

    Parameters
    ----------
    logits : array (n, K); y : int array (n,); temperature : float > 0

    Returns
    -------
    float
    """
    check_range("temperature", temperature, low=0, low_inclusive=False)
    z = _as_numpy(logits) / temperature
    y = np.asarray(_as_numpy(y), dtype=int)
    return float(np.mean(special.logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def fit_temperature(logits, y) -> float:
    """The temperature minimising the held-out NLL (bounded scalar search over log T).

    Parameters
    ----------
    logits : array (n, K), model outputs before the softmax, on data not used for training
    y : int array (n,), labels in ``0..K-1``

    Returns
    -------
    float, T in [1e-3, 1e3] (at a bound when the NLL keeps falling, e.g. on separable data with
    every prediction right: sharper is then always better)
    """
    z = _as_numpy(logits)
    y = np.asarray(_as_numpy(y), dtype=int)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"logits must be (n, K) with n == len(y) > 0; got {z.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in 0..{z.shape[1] - 1}; got range {y.min()}..{y.max()}")
    res = optimize.minimize_scalar(lambda s: nll(z, y, float(np.exp(s))), bounds=LOG_T_BOUNDS, method="bounded",
                                   options={"xatol": 1e-6})
    return float(np.exp(res.x))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` row-wise, float64 (n, K)."""
    check_range("temperature", temperature, low=0, low_inclusive=False)
    return special.softmax(_as_numpy(logits) / temperature, axis=1)
