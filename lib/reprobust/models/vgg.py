"""VGG-style CNN: stacks of 3×3 conv-(BN)-ReLU separated by 2×2 max pooling, then a dense head."""

from torch import nn

from . import register_model
from ._common import InputStem

#: ``int`` = a conv layer with that many channels, ``"M"`` = 2×2 max pooling.
CONFIGS = {
    "vgg-small": (32, 32, "M", 64, 64, "M", 128, "M"),
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


@register_model("vgg")
class VGG(nn.Module):
    """VGG with a configurable layer list.

    Parameters
    ----------
    config : str or tuple, default 'vgg-small'
        A key of :data:`CONFIGS` or an explicit list (ints = conv channels, "M" = max pool).
    batchnorm : bool, default True
    hidden : int, default 256
        Width of the dense layer before the classifier.

    ``layer_names``: ``conv1 … convK`` (post-ReLU), ``pool1 …`` (after each max pool), ``fc``.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, config="vgg-small",
                 batchnorm=True, hidden=256, upsample=1):
        super().__init__()
        c, h, w = input_shape
        if isinstance(config, str):
            from ..validation import check_choice

            config = CONFIGS[check_choice("vgg config", config, CONFIGS)]
        self.stem = InputStem(c, mean, std, upsample=upsample)
        self.layer_names, self._order = [], []
        in_ch, n_conv, n_pool = c, 0, 0
        h, w = h * upsample, w * upsample
        for item in config:
            if item == "M":
                n_pool += 1
                name = f"pool{n_pool}"
                self.add_module(name, nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            else:
                n_conv += 1
                name = f"conv{n_conv}"
                layers = [nn.Conv2d(in_ch, item, 3, padding=1, bias=not batchnorm)]
                if batchnorm:
                    layers.append(nn.BatchNorm2d(item))
                layers.append(nn.ReLU())
                self.add_module(name, nn.Sequential(*layers))
                in_ch = item
            self._order.append(name)
            self.layer_names.append(name)
        if h < 1 or w < 1:
            raise ValueError(f"vgg config pools the {input_shape[1]}×{input_shape[2]} input below 1×1; use fewer 'M'")
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * h * w, hidden), nn.ReLU())
        self.layer_names.append("fc")
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for name in self._order:
            x = getattr(self, name)(x)
        return self.classifier(self.fc(x))
