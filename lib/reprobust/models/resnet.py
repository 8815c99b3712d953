"""CIFAR-style ResNet (He et al. 2016, §4.2): 3 stages of BasicBlocks, depth = 6n + 2.

``depth=8`` gives one block per stage (a "ResNet-8"), ``depth=20`` the classic ResNet-20.
"""

from torch import nn
import torch.nn.functional as F

from . import register_model
from ._common import GlobalPool, InputStem, parse_strides
from ..validation import check_range


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 projection) shortcut."""

    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        # A separate module for the output ReLU (never reuse one ReLU twice: hooks would only see
        # its last call).
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


@register_model("resnet")
class ResNet(nn.Module):
    """CIFAR ResNet.

    Parameters
    ----------
    depth : int, default 8
        ``6n + 2`` (8, 14, 20, 32, ...).
    width : int, default 16
        Channels of the first stage (stages have width, 2·width, 4·width).
    strides : str, default "112"... one stride per stage, default ``"122"``.
    head : {'avg', 'max'}
    upsample : int, default 1
    preact : bool, default False
        Pre-activation blocks (He et al., ECCV 2016: BN → ReLU → conv, twice; final BN → ReLU before the
        pool), as Paper A's ResNet-32 (Kotyan et al.'s code: pre-activation, 16/32/64 filters).

    ``layer_names``: ``stem``, every block (``layer1.0``, ...), with ``preact`` also ``relu_final``, and
    ``pool``.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, depth=8, width=16,
                 strides="122", head="avg", upsample=1, upsample_mode="nearest", preact=False):
        super().__init__()
        check_range("depth", depth, low=8)
        if (depth - 2) % 6:
            raise ValueError(f"depth={depth} is not 6n+2; valid choices: 8, 14, 20, 32, 44, 56")
        n = (depth - 2) // 6
        c = input_shape[0]
        strides = parse_strides(strides, 3)
        self.stem_in = InputStem(c, mean, std, upsample=upsample, upsample_mode=upsample_mode)
        self.conv1 = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        # Pre-activation networks normalise inside the first block: the stem is the bare convolution.
        self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(width)
        self.stem = nn.Identity() if preact else nn.ReLU()
        self.layer_names = ["stem"]
        in_ch = width
        block_cls = BasicBlock
        if preact:
            from .preact_resnet18 import PreActBasicBlock as block_cls
        for s, (mult, stride) in enumerate(zip((1, 2, 4), strides), start=1):
            blocks = []
            for b in range(n):
                blocks.append(block_cls(in_ch, width * mult, stride if b == 0 else 1))
                in_ch = width * mult
                self.layer_names.append(f"layer{s}.{b}")
            self.add_module(f"layer{s}", nn.Sequential(*blocks))
        self.bn_final = nn.BatchNorm2d(in_ch) if preact else nn.Identity()
        self.relu_final = nn.ReLU() if preact else nn.Identity()
        if preact:
            self.layer_names.append("relu_final")
        self.pool = GlobalPool(head)
        self.layer_names.append("pool")
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        x = self.stem(self.bn1(self.conv1(self.stem_in(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.classifier(self.pool(self.relu_final(self.bn_final(x))))
