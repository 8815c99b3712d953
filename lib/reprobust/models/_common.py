"""Building blocks shared by the models: input normalisation and in-model upsampling."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..validation import check_choice, check_range

UPSAMPLE_MODES = ("nearest", "bilinear", "bicubic")


class InputStem(nn.Module):
    """Normalise ``[0, 1]`` images per channel, then optionally upsample them.

    Upsampling lives *inside* the model, after normalisation, so an attack perturbs the
    original-resolution image (Xu et al.'s "upsampling the inputs").
    """

    def __init__(self, channels: int, mean=None, std=None, upsample: int = 1, upsample_mode: str = "nearest"):
        super().__init__()
        check_range("upsample", upsample, low=1)
        check_choice("upsample_mode", upsample_mode, UPSAMPLE_MODES)
        mean = torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())
        self.upsample = int(upsample)
        self.upsample_mode = upsample_mode

    def forward(self, x):
        x = (x - self.mean) / self.std
        if self.upsample > 1:
            kw = {} if self.upsample_mode == "nearest" else {"align_corners": False}
            x = F.interpolate(x, scale_factor=self.upsample, mode=self.upsample_mode, **kw)
        return x


class GlobalPool(nn.Module):
    """Global average or max pooling over the spatial dimensions: ``(N, C, H, W)`` → ``(N, C)``."""

    HEADS = ("avg", "max")

    def __init__(self, head: str = "avg"):
        super().__init__()
        self.head = check_choice("pooling head", head, self.HEADS)

    def forward(self, x):
        return x.mean(dim=(2, 3)) if self.head == "avg" else x.amax(dim=(2, 3))


def parse_strides(strides, n_layers: int) -> tuple:
    """Accept ``"1122"`` or ``(1, 1, 2, 2)``; check there is one stride per conv layer."""
    if isinstance(strides, str):
        if not strides.isdigit():
            raise ValueError(f"strides={strides!r} must be a string of digits such as '122'")
        strides = tuple(int(c) for c in strides)
    strides = tuple(int(s) for s in strides)
    if len(strides) != n_layers or any(s < 1 for s in strides):
        raise ValueError(f"strides={strides!r} needs {n_layers} positive entries, one per conv layer")
    return strides
