"""Multi-layer perceptron with ReLU hidden layers."""

from torch import nn

from . import register_model
from ._common import InputStem


@register_model("mlp")
class MLP(nn.Module):
    """``fc1 → act1 → fc2 → act2 → … → classifier``.

    Parameters
    ----------
    hidden : tuple of int, default (256, 128)
        Width of each hidden layer; ``layer_names`` are ``act1 … actK``.
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, hidden=(256, 128)):
        super().__init__()
        c, h, w = input_shape
        self.stem = InputStem(c, mean, std)
        self.layer_names = []
        width = c * h * w
        for i, units in enumerate(hidden, start=1):
            self.add_module(f"fc{i}", nn.Linear(width, units))
            self.add_module(f"act{i}", nn.ReLU())
            self.layer_names.append(f"act{i}")
            width = units
        self.n_hidden = len(hidden)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(1)
        for i in range(1, self.n_hidden + 1):
            x = getattr(self, f"act{i}")(getattr(self, f"fc{i}")(x))
        return self.classifier(x)
