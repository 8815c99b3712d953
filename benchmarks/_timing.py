"""Timing helper shared by the benchmark scripts (imported as a sibling module: the scripts run as
``python benchmarks/<name>.py``, which puts this folder on ``sys.path``)."""

from __future__ import annotations

import math
import time


def best_time(fn, repeats: int):
    """``(seconds, result)``: the fastest of ``repeats`` calls of ``fn()`` and the last call's result.

    The minimum, not the mean: on a shared machine the fastest run is the least disturbed one.
    """
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out
