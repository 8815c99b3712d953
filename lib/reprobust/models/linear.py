"""Multinomial logistic regression (a linear softmax model)."""

from torch import nn

from . import register_model
from ._common import InputStem


@register_model("linear")
class LinearSoftmax(nn.Module):
    """Logits = W · normalise(x) + b. Has no hidden layer (``layer_names == []``)."""

    def __init__(self, *, input_shape, num_classes, mean=None, std=None):
        super().__init__()
        c, h, w = input_shape
        self.stem = InputStem(c, mean, std)
        self.classifier = nn.Linear(c * h * w, num_classes)
        self.layer_names = []

    def forward(self, x):
        return self.classifier(self.stem(x).flatten(1))
