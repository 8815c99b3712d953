"""Pre-activation Wide ResNet WRN-d-k (Zagoruyko & Komodakis, BMVC 2016), CIFAR layout.

``conv3×3(16) → 3 groups of n = (d − 4) / 6 pre-activation blocks (16k, 32k, 64k channels; strides
1, 2, 2) → BN → ReLU → global average pool → linear``. Each block is ``BN → ReLU → conv3×3 → BN →
ReLU → (dropout) → conv3×3`` plus an identity shortcut, or a 1×1 convolution (``conv_shortcut``) on the
pre-activated input when the shape changes — the layout of Zagoruyko's code and of the WRN file used by
Cianfarani et al. (Paper C: WRN-28-4) and Kotyan et al. (Paper A: WRN-16-8).

Published sizes on CIFAR-10 (Zagoruyko & Komodakis Table 1/4): WRN-16-8 11.0M, WRN-28-10 36.5M,
WRN-40-4 8.9M parameters (tested in ``tests/test_paper_models.py``).
"""

from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem, parse_strides
from ..validation import check_range


class PreActBlock(nn.Module):
    """``BN → ReLU → conv → BN → ReLU → dropout → conv`` (+ shortcut). Every op is its own module so
    that activation hooks see each one once (Paper C hooks bn1, relu1, conv1, bn2, relu2, conv2)."""

    def __init__(self, in_ch, out_ch, stride, dropout=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.equal = in_ch == out_ch and stride == 1
        self.conv_shortcut = None if self.equal else nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x):
        a = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(a)))))
        # Zagoruyko's code: an identity shortcut adds the raw input, a projection reads the activated one.
        return out + (x if self.equal else self.conv_shortcut(a))


@register_model("wide_resnet")
class WideResNet(nn.Module):
    """Pre-activation WRN-``depth``-``widen``.

    Parameters
    ----------
    depth : int, default 28
        ``6n + 4`` (10, 16, 22, 28, 40, ...).
    widen : int, default 4
        Widening factor ``k``: groups have 16k, 32k, 64k channels.
    dropout : float, default 0.0
        Dropout between the two convolutions of a block (0 in Papers A and C).
    strides : str, default "122"
        Stride of the first block of each group.
    upsample : int, default 1

    Attributes
    ----------
    layer_names : list of str
        Every op Paper C's hook list contains, in execution order, logits excluded: ``conv1``; per
        block ``bn1, relu1, conv1, bn2, relu2, conv2`` and, where the shape changes,
        ``conv_shortcut``; then ``bn_final``, ``relu_final``, ``pool``. WRN-28-4 gives 79 names (80
        layers with the ``classifier``), WRN-28-1 gives 78.

    Example
    -------
    >>> from reprobust.models import build_model
    >>> net = build_model("wide_resnet", input_shape=(3, 32, 32), num_classes=10, depth=28, widen=4)
    >>> len(net.layer_names) + 1
    80
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, depth=28, widen=4, dropout=0.0,
                 strides="122", upsample=1, upsample_mode="nearest"):
        super().__init__()
        check_range("depth", depth, low=10)
        if (depth - 4) % 6:
            raise ValueError(f"depth={depth} is not 6n+4; valid choices: 10, 16, 22, 28, 34, 40")
        check_range("widen", widen, low=1)
        check_range("dropout", dropout, low=0, high=1, high_inclusive=False)
        n = (depth - 4) // 6
        c = input_shape[0]
        strides = parse_strides(strides, 3)
        self.stem = InputStem(c, mean, std, upsample=upsample, upsample_mode=upsample_mode)
        self.conv1 = nn.Conv2d(c, 16, 3, 1, 1, bias=False)
        self.layer_names = ["conv1"]
        in_ch = 16
        for g, (ch, stride) in enumerate(zip((16 * widen, 32 * widen, 64 * widen), strides), start=1):
            blocks = []
            for b in range(n):
                block = PreActBlock(in_ch, ch, stride if b == 0 else 1, dropout)
                blocks.append(block)
                ops = ["bn1", "relu1", "conv1", "bn2", "relu2", "conv2"]
                if block.conv_shortcut is not None:
                    ops.append("conv_shortcut")  # runs after conv2 in forward()
                self.layer_names += [f"block{g}.{b}.{op}" for op in ops]
                in_ch = ch
            self.add_module(f"block{g}", nn.Sequential(*blocks))
        self.bn_final = nn.BatchNorm2d(in_ch)
        self.relu_final = nn.ReLU()
        self.pool = GlobalPool("avg")
        self.layer_names += ["bn_final", "relu_final", "pool"]
        self.classifier = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        x = self.conv1(self.stem(x))
        x = self.block3(self.block2(self.block1(x)))
        return self.classifier(self.pool(self.relu_final(self.bn_final(x))))
