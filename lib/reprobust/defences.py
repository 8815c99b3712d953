"""Test-time input-transformation defences as ``nn.Module`` wrappers.

* :class:`FeatureSqueezing` — reduce the colour bit depth (Xu, Evans & Qi, NDSS 2018, "Feature
  Squeezing"): ``x -> round(x · (2^b − 1)) / (2^b − 1)``.
* :class:`SpatialSmoothing` — a ``k × k`` median filter per channel (the same paper's "spatial
  smoothing"; ART's ``SpatialSmoothing``).

Both wrap a trained model without touching its weights (the Raw Zero-Shot code reuses the undefended
model's weights for test-time-only defences, spec §2.3), keep ``layer_names`` and map ``[0, 1]``
images to logits, so attacks, metrics and activation capture work unchanged. Note that rounding has a
zero gradient almost everywhere: gradient attacks on :class:`FeatureSqueezing` see masked gradients
(Athalye et al. 2018); the black-box attacks of :mod:`reprobust.attacks.blackbox` are unaffected.

Training-time defences (adversarial training, Gaussian-noise augmentation, label smoothing) are options
of :func:`reprobust.train.fit`.

Example
-------
>>> import torch, torch.nn as nn
>>> net = wrap_defence(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "spatial_smoothing", window=3)
>>> net(torch.rand(1, 1, 2, 2)).shape
torch.Size([1, 2])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_choice, check_range

TEST_TIME_DEFENCES = ("none", "feature_squeezing", "spatial_smoothing")


class _InputDefence(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # Activation capture addresses layers by name: expose the wrapped model's, prefixed.
        self.layer_names = [f"model.{n}" for n in getattr(model, "layer_names", [])]

    def transform(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x):
        return self.model(self.transform(x))


class FeatureSqueezing(_InputDefence):
    """Bit-depth reduction in front of ``model``.

    Parameters
    ----------
    model : nn.Module mapping [0, 1] images to logits
    bits : int in [1, 16], default 3
        Colour depth kept. The authors use 5 bits for 8-bit CIFAR-10; the 8×8 digits have only 17 grey
        levels (~4 bits), so 3 bits (8 levels) is the comparable squeeze there.

    Example
    -------
    >>> sq = FeatureSqueezing(nn.Identity(), bits=1)
    >>> sq(torch.tensor([0.2, 0.7]))
    tensor([0., 1.])
    """

    def __init__(self, model: nn.Module, bits: int = 3):
        super().__init__(model)
        self.bits = int(check_range("bits", bits, low=1, high=16))

    def transform(self, x):
        levels = 2 ** self.bits - 1
        return torch.round(x.clamp(0, 1) * levels) / levels


class SpatialSmoothing(_InputDefence):
    """Median filter (``window × window``, reflect padding) in front of ``model``.

    Parameters
    ----------
    model : nn.Module mapping [0, 1] images of shape (N, C, H, W) to logits
    window : odd int >= 1, default 3 (the authors' window; 2 on 8×8 digits would be as strong as
        3 on 32×32 CIFAR but a median needs a centre pixel)

    Example
    -------
    >>> sm = SpatialSmoothing(nn.Identity(), window=3)
    >>> x = torch.zeros(1, 1, 3, 3); x[0, 0, 1, 1] = 1.0  # an isolated bright pixel is removed
    >>> float(sm(x).max())
    0.0
    """

    def __init__(self, model: nn.Module, window: int = 3):
        super().__init__(model)
        check_range("window", window, low=1)
        if window % 2 == 0:
            raise ValueError(f"window={window} must be odd (a median filter needs a centre pixel)")
        self.window = int(window)

    def transform(self, x):
        if self.window == 1:
            return x
        r = self.window // 2
        padded = F.pad(x, (r, r, r, r), mode="reflect" if min(x.shape[-2:]) > r else "replicate")
        patches = padded.unfold(2, self.window, 1).unfold(3, self.window, 1)  # (N, C, H, W, k, k)
        return patches.reshape(*patches.shape[:4], -1).median(dim=-1).values


def wrap_defence(model: nn.Module, name: str, **params) -> nn.Module:
    """Attach a test-time defence by name (``'none'`` returns ``model`` itself).

    Parameters
    ----------
    model : nn.Module
    name : {'none', 'feature_squeezing', 'spatial_smoothing'}
    **params : ``bits`` for feature squeezing, ``window`` for spatial smoothing

    Returns
    -------
    nn.Module in the wrapped model's train/eval mode
    """
    check_choice("test-time defence", name, TEST_TIME_DEFENCES)
    if name == "none":
        return model
    wrapped = FeatureSqueezing(model, **params) if name == "feature_squeezing" else SpatialSmoothing(model, **params)
    return wrapped.train(model.training)
