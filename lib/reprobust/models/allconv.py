"""All-Convolutional Net, All-CNN-C (Springenberg et al., ICLR 2015 workshop; Paper A's ``AllConv``).

``dropout 0.2 → conv3×3(96) → conv3×3(96) → conv3×3(96, stride 2) → dropout 0.5 → conv3×3(192) ×2 →
conv3×3(192, stride 2) → dropout 0.5 → conv3×3(192, valid) → conv1×1(192) → conv1×1(classes) → global
average pool``, every convolution followed by ReLU, no batch norm and no max pooling (strided
convolutions downsample). 1.3M parameters for 10 classes (Springenberg et al. Table: "≈1.3M").

As in the paper there is no dense layer: the last 1×1 convolution, named ``classifier`` (an
``nn.Conv2d``), produces one map per class whose global average is the class score.
"""

from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem
from ..validation import check_range


def _conv_relu(i, o, k, stride=1, padding=None):
    return nn.Sequential(nn.Conv2d(i, o, k, stride=stride, padding=k // 2 if padding is None else padding), nn.ReLU())


@register_model("allconv")
class AllConvNet(nn.Module):
    """All-CNN-C.

    Parameters
    ----------
    input_dropout : float, default 0.2
    dropout : float, default 0.5, after each strided convolution

    ``layer_names``: ``conv1 … conv8`` (post-ReLU), ``class_maps`` (post-ReLU class maps), ``pool``.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, input_dropout=0.2, dropout=0.5):
        super().__init__()
        c, h, w = input_shape
        check_range("input_dropout", input_dropout, low=0, high=1, high_inclusive=False)
        check_range("dropout", dropout, low=0, high=1, high_inclusive=False)
        if min(h, w) < 12:
            raise ValueError(f"input_shape={tuple(input_shape)} is too small for All-CNN-C (two stride-2 "
                             f"convolutions then a valid 3×3); valid: H, W >= 12")
        self.stem = InputStem(c, mean, std)
        self.drop0 = nn.Dropout(input_dropout)
        self.conv1, self.conv2 = _conv_relu(c, 96, 3), _conv_relu(96, 96, 3)
        self.conv3, self.drop1 = _conv_relu(96, 96, 3, stride=2), nn.Dropout(dropout)
        self.conv4, self.conv5 = _conv_relu(96, 192, 3), _conv_relu(192, 192, 3)
        self.conv6, self.drop2 = _conv_relu(192, 192, 3, stride=2), nn.Dropout(dropout)
        self.conv7 = _conv_relu(192, 192, 3, padding=0)
        self.conv8 = _conv_relu(192, 192, 1)
        self.classifier = nn.Conv2d(192, num_classes, 1)
        self.class_maps = nn.ReLU()
        self.pool = GlobalPool("avg")
        self.layer_names = [f"conv{i}" for i in range(1, 9)] + ["class_maps", "pool"]

    def forward(self, x):
        x = self.conv3(self.conv2(self.conv1(self.drop0(self.stem(x)))))
        x = self.conv6(self.conv5(self.conv4(self.drop1(x))))
        x = self.conv8(self.conv7(self.drop2(x)))
        return self.pool(self.class_maps(self.classifier(x)))
