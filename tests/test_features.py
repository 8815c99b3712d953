import torch
from torch import nn

from reprobust.features import ActivationRecorder, capture_activations
from reprobust.models import build_model


class InplaceNet(nn.Module):
    """fc1 → ReLU(inplace) → fc2; fc1's output is overwritten in place by the ReLU."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(4, 2)
        self.layer_names = ["fc1", "act"]

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ReusedReluNet(nn.Module):
    """One ReLU module called twice in a forward pass."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.relu = nn.ReLU()
        self.layer_names = ["relu"]

    def forward(self, x):
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


def test_inplace_relu_does_not_overwrite_recorded_preactivations():
    torch.manual_seed(0)
    net = InplaceNet()
    x = torch.randn(16, 4)
    expected = net.fc1(x).detach()
    assert (expected < 0).any()  # otherwise the test would not test anything
    acts = capture_activations(net, x, ["fc1", "act"])
    assert torch.allclose(acts["fc1"], expected)
    assert torch.allclose(acts["act"], expected.clamp_min(0))


def test_reused_module_records_every_call():
    torch.manual_seed(0)
    net = ReusedReluNet()
    x = torch.randn(8, 4)
    acts = capture_activations(net, x, ["relu"])
    first = net.fc1(x).relu()
    second = net.fc2(first).relu()
    assert set(acts) == {"relu", "relu#1"}
    assert torch.allclose(acts["relu"], first.detach()) and torch.allclose(acts["relu#1"], second.detach())


def test_batched_capture_equals_one_pass_and_restores_mode(digits):
    torch.manual_seed(0)
    net = build_model("resnet", **digits.model_kwargs())
    net.train()
    x = digits.x_test[:50]
    a = capture_activations(net, x, batch_size=7, flatten=True, include_logits=True)
    net.eval()
    with torch.no_grad(), ActivationRecorder(net, net.layer_names) as rec:
        logits = net(x)
    assert net.training is False
    for name in net.layer_names:
        assert torch.allclose(a[name], rec.activations[name].flatten(1), atol=1e-5)
    assert torch.allclose(a["logits"], logits, atol=1e-5)
    net.train()
    capture_activations(net, x[:4])
    assert net.training is True


def test_recorder_keeps_graph_when_asked():
    net = InplaceNet()
    x = torch.randn(3, 4)
    with ActivationRecorder(net, ["act"], detach=False) as rec:
        net(x)
    rec.activations["act"].sum().backward()
    assert net.fc1.weight.grad is not None and net.fc1.weight.grad.abs().sum() > 0


def test_unknown_layer_is_refused():
    import pytest

    with pytest.raises(ValueError, match="valid choices"):
        capture_activations(InplaceNet(), torch.randn(2, 4), ["conv9"])


def test_transform_runs_inside_the_hook_before_an_inplace_op():
    # a transform that returns a new tensor sees fc1's output before the in-place ReLU overwrites it
    torch.manual_seed(0)
    net = InplaceNet()
    x = torch.randn(16, 4)
    expected = net.fc1(x).detach()
    assert (expected < 0).any()
    grams = capture_activations(net, x, ["fc1", "act"], batch_size=16, transform=lambda a: a @ a.T)
    assert grams["fc1"].shape == (16, 16)
    assert torch.allclose(grams["fc1"], expected @ expected.T, atol=1e-6)
    assert torch.allclose(grams["act"], expected.clamp_min(0) @ expected.clamp_min(0).T, atol=1e-6)
