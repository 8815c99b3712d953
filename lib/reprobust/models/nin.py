"""Network in Network (Lin, Chen & Yan, ICLR 2014), CIFAR layout with batch norm as in Paper A.

Three mlpconv blocks — ``conv5×5(192) → 1×1(160) → 1×1(96)``, ``conv5×5(192) → 1×1(192) → 1×1(192)``,
``conv3×3(192) → 1×1(192) → 1×1(classes)`` — each conv followed by BN and ReLU; 3×3 stride-2 max
pooling (dropout 0.5) after the first block, 3×3 stride-2 average pooling (dropout 0.5) after the second,
and global average pooling of the last (class) maps. About 0.97M parameters for 10 classes (Lin et
al.'s CIFAR-10 network; tested).

There is no dense layer: the last 1×1 convolution, named ``classifier`` (an ``nn.Conv2d``), produces one
map per class whose global average is the class score.
"""

from torch import nn

from . import register_model
from ._common import GlobalPool, InputStem
from ..validation import check_range


def _conv_bn_relu(i, o, k):
    return nn.Sequential(nn.Conv2d(i, o, k, padding=k // 2), nn.BatchNorm2d(o), nn.ReLU())


@register_model("nin")
class NIN(nn.Module):
    """Network in Network with batch norm.

    Parameters
    ----------
    dropout : float, default 0.5, after each of the two pooling layers

    ``layer_names``: ``block1.0 … block1.2``, ``pool1``, ``block2.0 … block2.2``, ``pool2``,
    ``block3.0``, ``block3.1``, ``class_maps`` (post-ReLU class maps), ``pool``.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, dropout=0.5):
        super().__init__()
        c = input_shape[0]
        check_range("dropout", dropout, low=0, high=1, high_inclusive=False)
        self.stem = InputStem(c, mean, std)
        self.block1 = nn.Sequential(_conv_bn_relu(c, 192, 5), _conv_bn_relu(192, 160, 1), _conv_bn_relu(160, 96, 1))
        self.pool1 = nn.MaxPool2d(3, 2, padding=1)
        self.drop1 = nn.Dropout(dropout)
        self.block2 = nn.Sequential(_conv_bn_relu(96, 192, 5), _conv_bn_relu(192, 192, 1), _conv_bn_relu(192, 192, 1))
        self.pool2 = nn.AvgPool2d(3, 2, padding=1)
        self.drop2 = nn.Dropout(dropout)
        self.block3 = nn.Sequential(_conv_bn_relu(192, 192, 3), _conv_bn_relu(192, 192, 1))
        self.classifier = nn.Conv2d(192, num_classes, 1)
        self.bn_class = nn.BatchNorm2d(num_classes)
        self.class_maps = nn.ReLU()
        self.pool = GlobalPool("avg")
        self.layer_names = ["block1.0", "block1.1", "block1.2", "pool1", "block2.0", "block2.1", "block2.2",
                            "pool2", "block3.0", "block3.1", "class_maps", "pool"]

    def forward(self, x):
        x = self.drop1(self.pool1(self.block1(self.stem(x))))
        x = self.drop2(self.pool2(self.block2(x)))
        x = self.class_maps(self.bn_class(self.classifier(self.block3(x))))
        return self.pool(x)
