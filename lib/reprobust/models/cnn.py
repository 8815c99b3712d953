"""A plain CNN family with a configurable stride string, pooling head, width and input upsampling.

This is the model of the feature-map experiments (Xu et al.): the size of the last feature map
before global pooling is set by the input upsampling factor and the stride string.
"""

from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem, parse_strides
from ..validation import check_choice

HEADS = ("avg", "max", "flatten")


@register_model("cnn")
class ConvNet(nn.Module):
    """``stem → [conv3×3(stride s_i) → (BN) → ReLU]_i → head → classifier``.

    Parameters
    ----------
    channels : tuple of int, default (32, 64, 128)
        Output channels of each conv layer (multiplied by ``width``).
    strides : str or tuple, default "122"
        One stride per conv layer, e.g. ``"1122"``.
    head : {'avg', 'max', 'flatten'}, default 'avg'
        Global average pooling, global max pooling, or flatten the last map (a dense head).
    upsample : int, default 1
        Input upsampling factor applied inside the model after normalisation.
    upsample_mode : {'nearest', 'bilinear', 'bicubic'}
    batchnorm : bool, default False
    width : int, default 1

    ``layer_names`` are ``block1 … blockK`` (post-ReLU conv maps) and ``pool`` (the pooled or
    flattened features the classifier reads).
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, channels=(32, 64, 128),
                 strides="122", head="avg", upsample=1, upsample_mode="nearest", batchnorm=False, width=1):
        super().__init__()
        c, h, w = input_shape
        check_choice("head", head, HEADS)
        strides = parse_strides(strides, len(channels))
        self.stem = InputStem(c, mean, std, upsample=upsample, upsample_mode=upsample_mode)
        self.layer_names = []
        in_ch = c
        for i, (out, s) in enumerate(zip(channels, strides), start=1):
            out = out * width
            layers = [nn.Conv2d(in_ch, out, 3, stride=s, padding=1, bias=not batchnorm)]
            if batchnorm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            self.add_module(f"block{i}", nn.Sequential(*layers))
            self.layer_names.append(f"block{i}")
            in_ch = out
        self.n_blocks = len(channels)
        self.strides = strides
        self.head = head
        if head == "flatten":
            size = self.feature_map_size(input_shape[1:], upsample)
            self.pool = nn.Flatten()
            in_ch = in_ch * size[0] * size[1]
        else:
            self.pool = GlobalPool(head)
        self.layer_names.append("pool")
        self.classifier = nn.Linear(in_ch, num_classes)
        self._upsample = upsample

    def feature_map_size(self, hw=None, upsample=None) -> tuple:
        """Spatial size ``(H, W)`` of the last conv map (before the head), by arithmetic."""
        h, w = hw
        up = self._upsample if upsample is None else upsample
        h, w = h * up, w * up
        for s in self.strides:
            h, w = (h - 1) // s + 1, (w - 1) // s + 1  # 3×3, padding 1
        return h, w

    def forward(self, x):
        x = self.stem(x)
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"block{i}")(x)
        return self.classifier(self.pool(x))
