"""PreActResNet-18 with a stride string (He et al., ECCV 2016; Paper E's ``preactresnet.py``).

``conv3×3(64) → 4 stages of 2 pre-activation blocks (BN → ReLU → conv → BN → ReLU → conv; the 1×1
projection shortcut reads the pre-activated input) → BN → ReLU → global pool → linear``. 11.17M
parameters for 10 classes (Paper E's table).
"""

from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem, parse_strides
from ..validation import check_range


class PreActBasicBlock(nn.Module):
    """Pre-activation BasicBlock; each op its own module so hooks see it once."""

    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(self, x):
        a = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(a))))
        return out + (x if self.shortcut is None else self.shortcut(a))


@register_model("preact_resnet18")
class PreActResNet18(nn.Module):
    """PreActResNet-18 with a 4-digit stride string.

    Parameters
    ----------
    strides : str, default "1222"
        Stride of the first block of layer1 … layer4 (``"1122"``: Paper E's stride method).
    head : {'avg', 'max'}, default 'avg'
    upsample : int, default 1
    upsample_mode : {'nearest', 'bilinear', 'bicubic'}
    width : int, default 64
        Channels of the first stage (stages: width × 1, 2, 4, 8); 64 is PreActResNet-18. Smaller widths
        only serve tests and tiny end-to-end runs of the ``full`` profile on a CPU.

    ``layer_names``: ``conv1``, ``layer1.0`` … ``layer4.1`` (block outputs), ``relu_final``, ``pool``.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, strides="1222", head="avg",
                 upsample=1, upsample_mode="nearest", width=64):
        super().__init__()
        c = input_shape[0]
        check_range("width", width, low=1)
        self.strides = parse_strides(strides, 4)
        self.stem = InputStem(c, mean, std, upsample=upsample, upsample_mode=upsample_mode)
        self.conv1 = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        self.layer_names = ["conv1"]
        in_ch = width
        for s, (ch, stride) in enumerate(zip((width, 2 * width, 4 * width, 8 * width), self.strides), start=1):
            self.add_module(f"layer{s}", nn.Sequential(PreActBasicBlock(in_ch, ch, stride),
                                                       PreActBasicBlock(ch, ch, 1)))
            self.layer_names += [f"layer{s}.0", f"layer{s}.1"]
            in_ch = ch
        self.bn_final = nn.BatchNorm2d(8 * width)
        self.relu_final = nn.ReLU()
        self.pool = GlobalPool(head)
        self.layer_names += ["relu_final", "pool"]
        self.classifier = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        x = self.conv1(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifier(self.pool(self.relu_final(self.bn_final(x))))
