"""The VGG-like CIFAR-10 "CONV" network of Pócoš, Bečková & Farkaš (Paper B, spec §2: the authors' code).

``[conv3×3(32) → BN → ReLU] ×2 → maxpool 2 → dropout 0.2 → [conv3×3(64) → BN → ReLU] ×2 → maxpool 2 →
dropout 0.3 → [conv3×3(128) → BN → ReLU] ×2 → maxpool 2 → dropout 0.4 → flatten → BN1d → linear 256 →
ReLU → dropout 0.2 → BN1d → linear (classes)``; the convolutions use replicate padding.
"""

from torch import nn

from . import register_model
from ._common import InputStem


@register_model("cifar_conv")
class CifarConv(nn.Module):
    """Paper B's CIFAR-10 CONV network.

    Parameters
    ----------
    dropout : tuple of 4 floats, default (0.2, 0.3, 0.4, 0.2)
        After the three pooling stages and after the dense layer.

    ``layer_names``: ``conv1 … conv6`` (post-ReLU), ``pool1 … pool3``, ``fc`` (post-ReLU dense layer),
    in execution order.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, dropout=(0.2, 0.3, 0.4, 0.2)):
        super().__init__()
        c, h, w = input_shape
        if h % 8 or w % 8:
            raise ValueError(f"input_shape={tuple(input_shape)} needs H and W divisible by 8 (three 2×2 pools)")
        if len(dropout) != 4:
            raise ValueError(f"dropout={dropout!r} needs 4 rates (three stages, then the dense layer)")
        self.stem = InputStem(c, mean, std)
        self.layer_names, self._order = [], []
        in_ch, k = c, 0
        for stage, ch in enumerate((32, 64, 128), start=1):
            for _ in range(2):
                k += 1
                self.add_module(f"conv{k}", nn.Sequential(nn.Conv2d(in_ch, ch, 3, padding=1, padding_mode="replicate"),
                                                          nn.BatchNorm2d(ch), nn.ReLU()))
                self._order.append(f"conv{k}")
                in_ch = ch
            self.add_module(f"pool{stage}", nn.MaxPool2d(2))
            self.add_module(f"drop{stage}", nn.Dropout(dropout[stage - 1]))
            self._order += [f"pool{stage}", f"drop{stage}"]
        self.layer_names = [n for n in self._order if not n.startswith("drop")]
        flat = 128 * (h // 8) * (w // 8)
        self.fc = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(flat), nn.Linear(flat, 256), nn.ReLU())
        self.layer_names.append("fc")
        self.drop_fc = nn.Dropout(dropout[3])
        self.bn_fc = nn.BatchNorm1d(256)
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for name in self._order:
            x = getattr(self, name)(x)
        return self.classifier(self.bn_fc(self.drop_fc(self.fc(x))))
