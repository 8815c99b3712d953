"""ResNet-18 for 32×32 / 64×64 inputs with a stride string (He et al. 2016; the CIFAR variant of
Xu et al.'s ``cifar_resnet.py``, Paper E §2.2).

``conv3×3(64), stride 1, no stem max-pool → 4 stages of 2 BasicBlocks (64, 128, 256, 512 channels) →
global pool → linear``. ``strides`` has one digit per stage: the stride of the stage's first block (its
1×1 projection shortcut gets the same stride). ``"1222"`` is the usual network; ``"1122"`` is Paper E's
stride method (an 8×8 instead of a 4×4 map before pooling on CIFAR-10). 11.17M parameters for 10
classes (Paper E's table).
"""

from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem, parse_strides
from .resnet import BasicBlock
from ..validation import check_range


@register_model("resnet18")
class ResNet18(nn.Module):
    """ResNet-18 with a 4-digit stride string.

    Parameters
    ----------
    strides : str, default "1222"
        Stride of the first block of layer1 … layer4.
    head : {'avg', 'max'}, default 'avg'
    upsample : int, default 1
        Input upsampling inside the model (Paper E's ``--scale-factor``).
    upsample_mode : {'nearest', 'bilinear', 'bicubic'}
    width : int, default 64
        Channels of the first stage (the stages have width × 1, 2, 4, 8); 64 is ResNet-18. Smaller
        widths only serve tests and tiny end-to-end runs of the ``full`` profile on a CPU.

    ``layer_names``: ``stem``, ``layer1.0`` … ``layer4.1`` (block outputs), ``pool``.

    Example
    -------
    >>> from reprobust.models import build_model
    >>> net = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, strides="1122")
    >>> net.feature_map_size((32, 32))
    (8, 8)
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, strides="1222", head="avg",
                 upsample=1, upsample_mode="nearest", width=64):
        super().__init__()
        c = input_shape[0]
        check_range("width", width, low=1)
        self.strides = parse_strides(strides, 4)
        self._upsample = upsample
        self.stem_in = InputStem(c, mean, std, upsample=upsample, upsample_mode=upsample_mode)
        self.conv1 = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.stem = nn.ReLU()
        self.layer_names = ["stem"]
        in_ch = width
        for s, (ch, stride) in enumerate(zip((width, 2 * width, 4 * width, 8 * width), self.strides), start=1):
            self.add_module(f"layer{s}", nn.Sequential(BasicBlock(in_ch, ch, stride), BasicBlock(ch, ch, 1)))
            self.layer_names += [f"layer{s}.0", f"layer{s}.1"]
            in_ch = ch
        self.pool = GlobalPool(head)
        self.layer_names.append("pool")
        self.classifier = nn.Linear(8 * width, num_classes)

    def feature_map_size(self, hw) -> tuple:
        """Spatial size ``(H, W)`` of the last block's output, by arithmetic (3×3 convs, padding 1)."""
        h, w = hw[0] * self._upsample, hw[1] * self._upsample
        for s in self.strides:
            h, w = (h - 1) // s + 1, (w - 1) // s + 1
        return h, w

    def forward(self, x):
        x = self.stem(self.bn1(self.conv1(self.stem_in(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifier(self.pool(x))
