"""Memory budgets: how many images (or candidates, queries) to process at once so that the working set
of a step fits in a given number of bytes.

Every computation here that batches over images × candidates or images × layers — the black-box
attacks' populations, CapsNet's routing tensor, Method 2's convex projections, minibatch-CKA's Grams —
accepts ``memory_budget`` and cuts its work into chunks that fit. Chunking changes only how much is
computed at once, never what: results under a small budget are identical to those of one big batch on
the CPU (tested for each).

A budget is a number of bytes or a string such as ``"8GB"`` / ``"512MiB"``. ``None`` reads
``$REPROBUST_MEMORY_BUDGET`` and, when that is unset, means "no limit" (one batch).

Example
-------
>>> parse_budget("2GiB")
2147483648
>>> items_per_chunk(bytes_per_item=3_000_000, budget="10MB", total=100)
3
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

_UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
          "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


def parse_budget(budget=None) -> int | None:
    """Bytes of a budget (int, float or ``"<number><unit>"``); None → ``$REPROBUST_MEMORY_BUDGET`` or no limit.

    Raises
    ------
    ValueError
        One line naming the bad value and the valid forms.
    """
    if budget is None:
        budget = os.environ.get("REPROBUST_MEMORY_BUDGET") or None
        if budget is None:
            return None
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        value = float(budget)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(budget))
        if not m or m.group(2).upper() not in _UNITS:
            raise ValueError(f"memory budget {budget!r} is not understood; valid: bytes (int) or a string "
                             f"such as '512MB', '8GB', '2GiB'")
        value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value <= 0:
        raise ValueError(f"memory budget {budget!r} is out of range; valid: a positive size")
    return int(value)


def items_per_chunk(bytes_per_item: int, budget=None, *, total: int) -> int:
    """How many items of ``bytes_per_item`` bytes fit in ``budget`` (at least 1, at most ``total``)."""
    limit = parse_budget(budget)
    total = max(1, int(total))
    if limit is None:
        return total
    return int(max(1, min(total, limit // max(1, int(bytes_per_item)))))


def forward_bytes_per_item(model: nn.Module, example: torch.Tensor) -> int:
    """Estimated bytes one input occupies during an inference forward pass of ``model``.

    The sum of the outputs of every module (an upper bound on what a no-grad forward pass keeps alive
    at once, since it frees each activation after its use) for one input, plus what the model declares
    about work that is not a module output (``model.extra_forward_bytes(example)``, e.g. CapsNet's
    prediction vectors and routing). Measured with one forward pass of ``example[:1]``.

    Parameters
    ----------
    model : nn.Module
    example : Tensor of shape (1, ...) or (N, ...), an input (only the first is used)

    Returns
    -------
    int, bytes per input
    """
    total = [0]

    def hook(module, inputs, output):
        outs = output if isinstance(output, (tuple, list)) else (output,)
        for o in outs:
            if isinstance(o, torch.Tensor):
                total[0] += o.numel() * o.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    extra = getattr(model, "extra_forward_bytes", None)
    return int(total[0] + example[:1].numel() * example.element_size() + (extra(example[:1]) if extra else 0))
