"""LeNet-style CNN: two conv + max-pool stages, two fully connected layers."""

from torch import nn

from . import register_model
from ._common import InputStem


@register_model("lenet")
class LeNet(nn.Module):
    """``conv(6,5×5) → ReLU → maxpool → conv(16,5×5) → ReLU → maxpool → fc120 → fc84 → classifier``.

    Convolutions are padded ('same'), so the net also runs on 8×8 digits.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, width: int = 1):
        super().__init__()
        c, h, w = input_shape
        c1, c2 = 6 * width, 16 * width
        self.stem = InputStem(c, mean, std)
        self.conv1, self.act1, self.pool1 = nn.Conv2d(c, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.act2, self.pool2 = nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)
        flat = c2 * (h // 4) * (w // 4)
        self.fc1, self.act3 = nn.Linear(flat, 120), nn.ReLU()
        self.fc2, self.act4 = nn.Linear(120, 84), nn.ReLU()
        self.classifier = nn.Linear(84, num_classes)
        self.layer_names = ["pool1", "pool2", "act3", "act4"]

    def forward(self, x):
        x = self.pool1(self.act1(self.conv1(self.stem(x))))
        x = self.pool2(self.act2(self.conv2(x)))
        x = self.act3(self.fc1(x.flatten(1)))
        x = self.act4(self.fc2(x))
        return self.classifier(x)
