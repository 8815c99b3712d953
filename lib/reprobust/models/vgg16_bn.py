"""VGG-16 with batch norm and a stride string, CIFAR variant (Simonyan & Zisserman 2015 config D;
Paper E's ``vgg.py``; Paper A's VGG16 with ``hidden=(512,), dropout=0.4``).

``13 conv3×3-BN-ReLU layers in 5 stages (64, 128, 256, 512, 512) → global average pool → MLP →
linear``. ``strides`` has one digit per stage-ending max pool, with Paper E's semantics: a digit ``s > 1``
is ``MaxPool2d(2, stride=s)``, a digit ``1`` *removes* that pool. ``"22222"`` is the usual network
(1×1 map on CIFAR-10), ``"11222"`` the base configuration of Paper E's README (4×4 map). With the default
head (512 → 256 → 256 → classes, dropout 0.5) it has 14.92M parameters for 10 classes (Paper E's table).
"""

from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem, parse_strides
from ..validation import check_range

STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


@register_model("vgg16_bn")
class VGG16BN(nn.Module):
    """VGG-16-bn with a 5-digit stride string.

    Parameters
    ----------
    strides : str, default "22222"
        One digit per max pool (``1`` removes it).
    hidden : tuple of int, default (256, 256)
        Widths of the dense layers between the pooled features and the classifier.
    dropout : float, default 0.5
        Dropout after each dense layer.
    head : {'avg', 'max'}, default 'avg'
    upsample : int, default 1
    width : int, default 64
        Channels of the first stage; every conv width scales by ``width / 64`` (64 is VGG-16). Smaller
        widths only serve tests and tiny end-to-end runs of the ``full`` profile on a CPU.

    ``layer_names``: ``conv1`` … ``conv13`` (post-ReLU), ``pool1`` … (each max pool kept), ``pool``
    (global pool), ``fc1`` … (post-ReLU dense layers), in execution order.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, strides="22222", hidden=(256, 256),
                 dropout=0.5, head="avg", upsample=1, upsample_mode="nearest", width=64):
        super().__init__()
        c = input_shape[0]
        check_range("dropout", dropout, low=0, high=1, high_inclusive=False)
        check_range("width", width, low=1)
        self.strides = parse_strides(strides, 5)
        self._upsample = upsample
        self.stem = InputStem(c, mean, std, upsample=upsample, upsample_mode=upsample_mode)
        self.layer_names, self._order = [], []
        in_ch, k, p = c, 0, 0
        for widths, s in zip(STAGES, self.strides):
            for ch in widths:
                ch = max(1, ch * width // 64)
                k += 1
                self.add_module(f"conv{k}", nn.Sequential(nn.Conv2d(in_ch, ch, 3, padding=1),
                                                          nn.BatchNorm2d(ch), nn.ReLU()))
                self._order.append(f"conv{k}")
                in_ch = ch
            if s > 1:
                p += 1
                self.add_module(f"pool{p}", nn.MaxPool2d(2, stride=s))
                self._order.append(f"pool{p}")
        self.layer_names = list(self._order)
        self.pool = GlobalPool(head)
        self.layer_names.append("pool")
        self._fc = []
        for i, h in enumerate(hidden, start=1):
            self.add_module(f"fc{i}", nn.Sequential(nn.Linear(in_ch, h), nn.ReLU()))
            self.add_module(f"drop{i}", nn.Dropout(dropout))
            self._fc.append(i)
            self.layer_names.append(f"fc{i}")
            in_ch = h
        self.classifier = nn.Linear(in_ch, num_classes)

    def feature_map_size(self, hw) -> tuple:
        """Spatial size ``(H, W)`` before global pooling (2×2 pools, floor division)."""
        h, w = hw[0] * self._upsample, hw[1] * self._upsample
        for s in self.strides:
            if s > 1:
                h, w = (h - 2) // s + 1, (w - 2) // s + 1
        return h, w

    def forward(self, x):
        x = self.stem(x)
        for name in self._order:
            x = getattr(self, name)(x)
        x = self.pool(x)
        for i in self._fc:
            x = getattr(self, f"drop{i}")(getattr(self, f"fc{i}")(x))
        return self.classifier(x)
