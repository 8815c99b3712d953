"""AlexNet, CIFAR variant with a stride string (Krizhevsky et al. 2012, as adapted in Paper E's
``alexnet.py``).

``conv5×5(64, stride s0) → ReLU → maxpool(2, s1) → conv5×5(192) → ReLU → maxpool(2, s2) →
conv3×3(384) → conv3×3(256) → conv3×3(256) (each + ReLU) → maxpool(2, s3) → global average pool →
MLP 256 → 512 → 512 (ReLU, dropout 0.5) → linear``. Paper E's stride semantics: digit 0 is the
stride of the first convolution, digits 1–3 the strides of the three 2×2 max pools; a ``1`` keeps the
pool with stride 1, so the map shrinks by one pixel (``"1122"`` → 7×7 on CIFAR-10, ``"2222"`` → 2×2).
2.85M parameters for 10 classes (Paper E's table).
"""

from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem, parse_strides
from ..validation import check_range


@register_model("alexnet")
class AlexNet(nn.Module):
    """CIFAR AlexNet with a 4-digit stride string.

    Parameters
    ----------
    strides : str, default "1122"
        The base configuration of Paper E's README; ``"2222"`` is the downsampling-everywhere network.
    dropout : float, default 0.5
    head : {'avg', 'max'}, default 'avg'
    upsample : int, default 1
    width : int, default 64
        Channels of the first conv; every conv and dense width scales by ``width / 64`` (64 is the
        CIFAR AlexNet). Smaller widths only serve tests and tiny end-to-end runs of the ``full`` profile.

    ``layer_names``: ``conv1``, ``pool1``, ``conv2``, ``pool2``, ``conv3``, ``conv4``, ``conv5``,
    ``pool3``, ``pool`` (global), ``fc1``, ``fc2``.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, strides="1122", dropout=0.5,
                 head="avg", upsample=1, upsample_mode="nearest", width=64):
        super().__init__()
        c = input_shape[0]
        check_range("dropout", dropout, low=0, high=1, high_inclusive=False)
        check_range("width", width, low=1)
        w = {n: max(1, n * width // 64) for n in (64, 192, 384, 256, 512)}
        s = self.strides = parse_strides(strides, 4)
        self._upsample = upsample
        self.stem = InputStem(c, mean, std, upsample=upsample, upsample_mode=upsample_mode)

        def conv(i, o, k, stride=1):
            return nn.Sequential(nn.Conv2d(i, o, k, stride=stride, padding=k // 2), nn.ReLU())

        self.conv1, self.pool1 = conv(c, w[64], 5, s[0]), nn.MaxPool2d(2, s[1])
        self.conv2, self.pool2 = conv(w[64], w[192], 5), nn.MaxPool2d(2, s[2])
        self.conv3, self.conv4, self.conv5 = conv(w[192], w[384], 3), conv(w[384], w[256], 3), conv(w[256], w[256], 3)
        self.pool3 = nn.MaxPool2d(2, s[3])
        self.pool = GlobalPool(head)
        self.fc1 = nn.Sequential(nn.Linear(w[256], w[512]), nn.ReLU())
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Sequential(nn.Linear(w[512], w[512]), nn.ReLU())
        self.drop2 = nn.Dropout(dropout)
        self.classifier = nn.Linear(w[512], num_classes)
        self.layer_names = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool3", "pool",
                            "fc1", "fc2"]
        h = self.feature_map_size(input_shape[1:])
        if min(h) < 1:
            raise ValueError(f"strides={strides!r} shrink the {input_shape[1]}×{input_shape[2]} input below 1×1")

    def feature_map_size(self, hw) -> tuple:
        """Spatial size ``(H, W)`` before global pooling, by arithmetic."""
        out = []
        for n in hw:
            n = (n * self._upsample - 1) // self.strides[0] + 1  # 5×5 conv, padding 2
            for s in self.strides[1:]:
                n = (n - 2) // s + 1
            out.append(n)
        return tuple(out)

    def forward(self, x):
        x = self.pool1(self.conv1(self.stem(x)))
        x = self.pool2(self.conv2(x))
        x = self.pool3(self.conv5(self.conv4(self.conv3(x))))
        x = self.drop1(self.fc1(self.pool(x)))
        return self.classifier(self.drop2(self.fc2(x)))
