"""DenseNet-BC (Huang et al., CVPR 2017), CIFAR layout: DenseNet-BC-100 with growth rate 12.

``conv3×3(2k) → 3 dense blocks of n = (depth − 4) / 6 bottleneck layers (BN → ReLU → conv1×1(4k) →
BN → ReLU → conv3×3(k), concatenated to the block's input), separated by transitions (BN → ReLU →
conv1×1 to ⌊θ·C⌋ channels → 2×2 average pool) → BN → ReLU → global average pool → linear``.
DenseNet-BC-100 (k = 12, θ = 0.5) has 0.8M parameters (Huang et al. Table 2).
"""

import torch
from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem
from ..validation import check_range


class Bottleneck(nn.Module):
    def __init__(self, in_ch, growth):
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(in_ch), nn.ReLU()
        self.conv1 = nn.Conv2d(in_ch, 4 * growth, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(4 * growth), nn.ReLU()
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        new = self.conv2(self.relu2(self.bn2(self.conv1(self.relu1(self.bn1(x))))))
        return torch.cat([x, new], dim=1)


class Transition(nn.Module):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.bn, self.relu = nn.BatchNorm2d(in_ch), nn.ReLU()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        return self.pool(self.conv(self.relu(self.bn(x))))


@register_model("densenet_bc")
class DenseNetBC(nn.Module):
    """DenseNet-BC.

    Parameters
    ----------
    depth : int, default 100, ``6n + 4``
    growth : int, default 12
    compression : float in (0, 1], default 0.5

    ``layer_names``: ``conv1``, ``block1``, ``trans1``, ``block2``, ``trans2``, ``block3`` (block outputs:
    the concatenated feature maps), ``relu_final``, ``pool``.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, depth=100, growth=12, compression=0.5):
        super().__init__()
        check_range("depth", depth, low=10)
        if (depth - 4) % 6:
            raise ValueError(f"depth={depth} is not 6n+4; valid choices: 40, 100, 190, 250")
        check_range("growth", growth, low=1)
        check_range("compression", compression, low=0, high=1, low_inclusive=False)
        n = (depth - 4) // 6
        c = input_shape[0]
        self.stem = InputStem(c, mean, std)
        ch = 2 * growth
        self.conv1 = nn.Conv2d(c, ch, 3, padding=1, bias=False)
        self.layer_names = ["conv1"]
        for b in range(1, 4):
            layers = []
            for _ in range(n):
                layers.append(Bottleneck(ch, growth))
                ch += growth
            self.add_module(f"block{b}", nn.Sequential(*layers))
            self.layer_names.append(f"block{b}")
            if b < 3:
                out = int(ch * compression)
                self.add_module(f"trans{b}", Transition(ch, out))
                self.layer_names.append(f"trans{b}")
                ch = out
        self.bn_final, self.relu_final = nn.BatchNorm2d(ch), nn.ReLU()
        self.pool = GlobalPool("avg")
        self.layer_names += ["relu_final", "pool"]
        self.classifier = nn.Linear(ch, num_classes)

    def forward(self, x):
        x = self.conv1(self.stem(x))
        x = self.block3(self.trans2(self.block2(self.trans1(self.block1(x)))))
        return self.classifier(self.pool(self.relu_final(self.bn_final(x))))
