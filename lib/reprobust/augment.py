"""Data augmentation on the device: random crop with padding and random horizontal flip.

The standard CIFAR augmentation of every paper here (``Pad(4) → RandomCrop(32) → RandomHorizontalFlip``,
e.g. Paper E's ``Pad(4, reflect)``; Papers C and D zero-pad as torchvision's ``RandomCrop(32, padding=4)``),
applied to a whole batch on the GPU in a few tensor operations instead of per image on the host. The
random offsets and flips are drawn from a CPU :class:`torch.Generator` (a few numbers per image), so the
result is the same on every device and reproducible from the seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import check_choice, check_range

PAD_MODES = ("zeros", "reflect", "replicate")


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, *, padding: int = 4, flip: bool = True,
                     pad_mode: str = "zeros") -> torch.Tensor:
    """Randomly crop each image from its padded copy and flip it horizontally with probability 1/2.

    Parameters
    ----------
    x : Tensor of shape (N, C, H, W), on any device
    generator : torch.Generator on the CPU, seeds the offsets and flips
    padding : int >= 0, pixels added on each side before cropping back to H × W
    flip : bool, default True
    pad_mode : {'zeros', 'reflect', 'replicate'}, default 'zeros'

    Returns
    -------
    Tensor of shape (N, C, H, W): image ``i`` is ``pad(x_i)[:, dy_i : dy_i + H, dx_i : dx_i + W]``
    with ``dy_i, dx_i`` uniform in ``0 … 2·padding``, mirrored left–right where drawn.

    Example
    -------
    >>> g = torch.Generator().manual_seed(0)
    >>> random_crop_flip(torch.rand(8, 3, 32, 32), g).shape
    torch.Size([8, 3, 32, 32])
    """
    check_range("padding", padding, low=0)
    check_choice("pad_mode", pad_mode, PAD_MODES)
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    if padding > 0:
        mode = "constant" if pad_mode == "zeros" else pad_mode
        x = F.pad(x, (padding,) * 4, mode=mode)
        dev = x.device
        rows = (offsets[:, 0:1] + torch.arange(h)).to(dev)  # (N, H)
        cols = (offsets[:, 1:2] + torch.arange(w)).to(dev)  # (N, W)
        # Two gathers (rows, then columns) crop every image at its own offset in one pass each.
        x = x.gather(2, rows[:, None, :, None].expand(n, x.shape[1], h, x.shape[3]))
        x = x.gather(3, cols[:, None, None, :].expand(n, x.shape[1], h, w))
    if flip:
        f = flips.to(x.device)[:, None, None, None]
        x = torch.where(f, x.flip(3), x)
    return x
