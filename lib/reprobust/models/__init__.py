"""Model registry: one file per model, each registered under a short name.

Every model

- takes images in ``[0, 1]`` and normalises them itself (so attacks work in pixel space),
- exposes ``layer_names``: the names of its hidden-representation modules in execution order
  (post-activation / pooling outputs, logits excluded), for :mod:`reprobust.features`,
- ends with a linear layer named ``classifier`` producing the logits.

Example
-------
>>> from reprobust.models import build_model
>>> net = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, mean=(0.3,), std=(0.4,))
>>> net.layer_names
['act1', 'act2']
"""

from __future__ import annotations

import importlib
import pkgutil

from ..validation import check_choice

MODELS: dict = {}


def register_model(name: str):
    """Class decorator adding a model constructor to :data:`MODELS` under ``name``."""

    def wrap(cls):
        MODELS[name] = cls
        return cls

    return wrap


def _discover():
    # Import every module of this package once so their @register_model decorators run.
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_discover()


def build_model(name: str, *, input_shape, num_classes: int, mean=None, std=None, **options):
    """Build a registered model.

    Parameters
    ----------
    name : str
        One of ``sorted(MODELS)``.
    input_shape : tuple (C, H, W)
    num_classes : int
    mean, std : sequence of float, optional
        Per-channel normalisation applied inside the model (default: none).
    **options
        Model-specific options (width, strides, pooling head, upsampling factor, ...).
    """
    check_choice("model", name, MODELS)
    return MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes, mean=mean, std=std, **options)
