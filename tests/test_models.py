import pytest
import torch

from reprobust.models import MODELS, build_model


@pytest.mark.parametrize("name", ["linear", "mlp", "lenet", "cnn", "resnet", "vgg"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_every_model_maps_images_to_logits_and_names_real_layers(name, shape):
    net = build_model(name, input_shape=shape, num_classes=7, mean=[0.5] * shape[0], std=[0.25] * shape[0])
    out = net(torch.rand(3, *shape))
    assert out.shape == (3, 7)
    modules = dict(net.named_modules())
    assert all(layer in modules for layer in net.layer_names)
    assert isinstance(net.classifier, torch.nn.Linear)


def test_normalisation_lives_inside_the_model():
    torch.manual_seed(0)
    a = build_model("mlp", input_shape=(1, 8, 8), num_classes=3, mean=(0.5,), std=(0.25,))
    torch.manual_seed(0)
    b = build_model("mlp", input_shape=(1, 8, 8), num_classes=3)
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(a(x), b((x - 0.5) / 0.25), atol=1e-6)


@pytest.mark.parametrize("strides,up,expected", [("111", 1, (8, 8)), ("122", 1, (2, 2)), ("122", 2, (4, 4)),
                                                  ("222", 4, (4, 4)), ("112", 4, (16, 16))])
def test_cnn_feature_map_size_matches_a_forward_pass(strides, up, expected):
    net = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, strides=strides, upsample=up)
    assert net.feature_map_size((8, 8)) == expected
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = output.shape

    net.block3.register_forward_hook(hook)
    net(torch.rand(2, 1, 8, 8))
    assert tuple(seen["shape"][-2:]) == expected


def test_cnn_heads_pool_as_named():
    x = torch.rand(2, 1, 8, 8)
    for head, reduce in (("avg", lambda t: t.mean((2, 3))), ("max", lambda t: t.amax((2, 3)))):
        net = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, head=head)
        seen = {}
        net.block3.register_forward_hook(lambda m, i, o: seen.update(map=o))
        net.pool.register_forward_hook(lambda m, i, o: seen.update(pooled=o))
        net(x)
        assert torch.allclose(seen["pooled"], reduce(seen["map"]))


def test_upsampling_keeps_attack_gradients_at_input_resolution():
    net = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, upsample=2)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    net(x).sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("bad", [dict(name="googlenet"), dict(name="cnn", strides="12"), dict(name="cnn", head="median"),
                                 dict(name="resnet", depth=10), dict(name="cnn", upsample=0)])
def test_bad_model_options_are_one_line_errors(bad):
    name = bad.pop("name")
    with pytest.raises(ValueError) as e:
        build_model(name, input_shape=(1, 8, 8), num_classes=10, **bad)
    assert "\n" not in str(e.value)


def test_registry_lists_the_core_models():
    assert {"linear", "mlp", "lenet", "cnn", "resnet", "vgg"} <= set(MODELS)


def test_resnet_never_reuses_a_relu_module():
    net = build_model("resnet", input_shape=(1, 8, 8), num_classes=10, depth=14)
    calls = {}
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.ReLU):
            m.register_forward_hook(lambda mod, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    net(torch.rand(2, 1, 8, 8))
    assert calls and max(calls.values()) == 1
