"""CapsNet: squash, routing-by-agreement, margin loss, registry."""

import pytest
import torch

from reprobust.models import build_model
from reprobust.models.capsnet import dynamic_routing, margin_loss, squash
from reprobust.train import LOSSES, fit


def test_squash_keeps_direction_and_norm_below_one():
    s = torch.randn(50, 7, 16) * torch.logspace(-3, 1.5, 50).view(-1, 1, 1)
    v = squash(s)
    norms = v.norm(dim=-1)
    assert (norms < 1).all() and (norms >= 0).all()
    cos = torch.nn.functional.cosine_similarity(v, s, dim=-1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-4)
    # eq. (1): length = |s|^2 / (1 + |s|^2)
    sn = s.norm(dim=-1)
    assert torch.allclose(norms, sn ** 2 / (1 + sn ** 2), rtol=1e-4, atol=1e-6)


def test_routing_shapes_and_coupling_coefficients():
    u_hat = torch.randn(3, 5, 12, 4)  # (B, n_out, n_in, D)
    v, c = dynamic_routing(u_hat, iterations=3)
    assert v.shape == (3, 5, 4) and c.shape == (3, 5, 12)
    assert torch.allclose(c.sum(dim=1), torch.ones(3, 12), atol=1e-6)
    assert (v.norm(dim=-1) < 1).all()
    # one iteration = uniform coupling
    v1, c1 = dynamic_routing(u_hat, iterations=1)
    assert torch.allclose(c1, torch.full_like(c1, 1 / 5))
    assert torch.allclose(v1, squash(u_hat.sum(dim=2) / 5), atol=1e-6)


def test_routing_increases_coupling_to_agreeing_output():
    # every input predicts the same vector for output 0 and noise for the others: routing must move
    # coupling towards output 0
    torch.manual_seed(0)
    u_hat = torch.randn(1, 4, 30, 8) * 0.3
    u_hat[:, 0] = torch.ones(8)
    _, c = dynamic_routing(u_hat, iterations=3)
    assert float(c[0, 0].mean()) > 0.5


def test_detached_routing_has_identical_forward():
    u_hat = torch.randn(2, 3, 6, 4)
    v1, _ = dynamic_routing(u_hat, detach_intermediate=True)
    v2, _ = dynamic_routing(u_hat, detach_intermediate=False)
    assert torch.allclose(v1, v2)


@pytest.mark.parametrize("shape,expected_primary", [((1, 8, 8), 128), ((3, 32, 32), 2048)])
def test_capsnet_output_is_log_length(shape, expected_primary):
    net = build_model("capsnet", input_shape=shape, num_classes=10, mean=(0.5,) * shape[0], std=(0.3,) * shape[0])
    assert net.num_primary == expected_primary
    x = torch.rand(2, *shape)
    logits = net(x)
    lengths = net.capsules(x).norm(dim=-1)
    assert logits.shape == (2, 10)
    assert torch.allclose(logits.exp(), lengths, atol=1e-6)
    probs = torch.softmax(logits, dim=1)
    assert torch.allclose(probs, lengths / lengths.sum(1, keepdim=True), atol=1e-5)
    assert net.layer_names == ["act1", "primary_caps", "class_caps"]


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        build_model("capsnet", input_shape=(1, 3, 3), num_classes=10)


def test_margin_loss_zero_at_margins_and_positive_otherwise():
    y = torch.tensor([0, 2])
    lengths = torch.full((2, 3), 0.05)
    lengths[0, 0] = lengths[1, 2] = 0.95
    assert float(margin_loss(lengths.log(), y)) == pytest.approx(0.0, abs=1e-7)
    bad = torch.full((2, 3), 0.5).log()
    # present: (0.9-0.5)^2 = 0.16, absent: 0.5 * (0.5-0.1)^2 * 2 = 0.16 -> 0.32
    assert float(margin_loss(bad, y)) == pytest.approx(0.32, rel=1e-5)


def test_capsnet_trains_with_margin_loss_through_fit():
    assert "margin" in LOSSES
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > x[:, 0, 4:].mean(dim=(1, 2))).long()
    net = build_model("capsnet", input_shape=(1, 8, 8), num_classes=2, conv_channels=8, primary_types=4)
    with torch.no_grad():
        before = float(margin_loss(net(x), y))
    hist = fit(net, x, y, epochs=15, batch_size=32, lr=5e-3, optimizer="adam", weight_decay=0, loss="margin")
    assert hist["loss"][-1] < before
