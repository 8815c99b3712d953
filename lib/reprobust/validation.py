"""One-line, actionable errors for bad input.

Every public entry point checks names and ranges here, so that a typo gives
``ValueError: unknown dataset 'mnsit'; valid choices: cifar10, digits, fashion_mnist, mnist``
instead of a stack trace from deep inside PyTorch.
"""

from __future__ import annotations

from typing import Iterable


def check_choice(what: str, value, choices: Iterable):
    """Return ``value`` if it is one of ``choices``, else raise a one-line ``ValueError``.

    Example
    -------
    >>> check_choice("norm", "linf", ["linf", "l2"])
    'linf'
    """
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(sorted(str(c) for c in choices))
        raise ValueError(f"unknown {what} {value!r}; valid choices: {listed}")
    return value


def check_range(what: str, value, low=None, high=None, *, low_inclusive=True, high_inclusive=True):
    """Return ``value`` if ``low <= value <= high`` (bounds optional), else raise ``ValueError``.

    Example
    -------
    >>> check_range("eps", 0.1, low=0)
    0.1
    """
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb = "[" if low_inclusive and low is not None else "("
        hb = "]" if high_inclusive and high is not None else ")"
        raise ValueError(f"{what}={value!r} is out of range; valid range: {lb}{lo}, {hi}{hb}")
    return value
