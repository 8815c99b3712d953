"""The papers' architectures: parameter counts against the published figures, stride-string map sizes
against Paper E's table, and hook points that each fire once in execution order."""

import pytest
import torch

from reprobust.models import build_model


def n_params(net):
    return sum(p.numel() for p in net.parameters())


# (model, options, input shape, classes, published count, how the source rounds it)
PUBLISHED = [
    # Zagoruyko & Komodakis 2016, Table 4 (CIFAR-10): rounded to 0.1M
    ("wide_resnet", dict(depth=16, widen=8), 11.0e6, 0.05e6),
    ("wide_resnet", dict(depth=28, widen=10), 36.5e6, 0.05e6),
    ("wide_resnet", dict(depth=40, widen=4), 8.9e6, 0.05e6),
    # Paper E's table (Xu et al.): two decimals of millions
    ("resnet18", dict(), 11.17e6, 0.005e6),
    ("resnet18", dict(strides="1122"), 11.17e6, 0.005e6),
    ("preact_resnet18", dict(), 11.17e6, 0.005e6),
    ("vgg16_bn", dict(), 14.92e6, 0.005e6),
    ("vgg16_bn", dict(strides="11222"), 14.92e6, 0.005e6),
    ("alexnet", dict(), 2.85e6, 0.005e6),
    # Huang et al. 2017 Table 2: DenseNet-BC (L=100, k=12) 0.8M
    ("densenet_bc", dict(), 0.8e6, 0.05e6),
    # Lin et al. 2014's CIFAR-10 NIN as commonly cited: 0.97M
    ("nin", dict(), 0.97e6, 0.005e6),
]

# Sources that truncate: He et al. 2016 Table 6 (ResNet-20 0.27M, ResNet-32 0.46M), Springenberg et al.
# 2015 (All-CNN-C "≈1.3M").
TRUNCATED = [
    ("resnet", dict(depth=20), 0.27e6, 0.01e6),
    ("resnet", dict(depth=32), 0.46e6, 0.01e6),
    ("allconv", dict(), 1.3e6, 0.1e6),
]


@pytest.mark.parametrize("name,opts,published,half_unit", PUBLISHED)
def test_parameter_counts_match_the_published_ones(name, opts, published, half_unit):
    net = build_model(name, input_shape=(3, 32, 32), num_classes=10, **opts)
    assert abs(n_params(net) - published) <= half_unit


@pytest.mark.parametrize("name,opts,published,unit", TRUNCATED)
def test_parameter_counts_match_truncated_published_ones(name, opts, published, unit):
    net = build_model(name, input_shape=(3, 32, 32), num_classes=10, **opts)
    assert published <= n_params(net) < published + unit


def test_sabour_capsnet_has_6_8m_parameters_and_8_2m_with_the_decoder():
    # Sabour et al. 2017 §5: "CapsNet has 8.2M parameters and 6.8M parameters without the
    # reconstruction subnetwork" (MNIST, 28×28).
    plain = build_model("capsnet", input_shape=(1, 28, 28), num_classes=10)
    full = build_model("capsnet", input_shape=(1, 28, 28), num_classes=10, reconstruction=True)
    assert abs(n_params(plain) - 6.8e6) <= 0.05e6
    assert abs(n_params(full) - 8.2e6) <= 0.05e6
    assert plain.num_primary == 1152


def test_capsnet_decoder_reconstructs_from_the_masked_capsule():
    torch.manual_seed(0)
    net = build_model("capsnet", input_shape=(1, 28, 28), num_classes=10, reconstruction=True).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        v = net.capsules(x)
    y = torch.tensor([1, 2, 3])
    rec = net.reconstruct(v, y).detach()
    assert rec.shape == x.shape and float(rec.min()) >= 0 and float(rec.max()) <= 1
    # Only the masked capsule reaches the decoder: changing another one leaves the image unchanged.
    v2 = v.clone()
    v2[:, 5] += 1.0
    assert torch.equal(net.reconstruct(v2, y), rec)
    v2[0, 1] += 1.0
    assert not torch.equal(net.reconstruct(v2, y)[0], rec[0])
    # Without labels the longest capsule is used.
    assert torch.equal(net.reconstruct(v), net.reconstruct(v, v.norm(dim=-1).argmax(1)))
    with pytest.raises(ValueError):
        build_model("capsnet", input_shape=(1, 28, 28), num_classes=10).reconstruct(v)


@pytest.mark.parametrize("depth,widen,layers", [(28, 4, 80), (28, 1, 79)])
def test_wide_resnet_has_paper_c_s_hooked_layer_count(depth, widen, layers):
    # Paper C §1: WRN-28-4 gives 80 hooked layers, WRN-28-1 79 (its first block needs no shortcut).
    net = build_model("wide_resnet", input_shape=(3, 32, 32), num_classes=10, depth=depth, widen=widen)
    assert len(net.layer_names) + 1 == layers


ALL = [("wide_resnet", dict(depth=16, widen=2)), ("resnet18", {}), ("preact_resnet18", {}),
       ("vgg16_bn", {}), ("alexnet", {}), ("nin", {}), ("allconv", {}), ("densenet_bc", dict(depth=40)),
       ("resnet", dict(depth=32)), ("resnet", dict(depth=32, preact=True)), ("cifar_conv", {})]


@pytest.mark.parametrize("name,opts", ALL)
def test_layer_names_fire_once_each_in_execution_order(name, opts):
    net = build_model(name, input_shape=(3, 32, 32), num_classes=10, mean=(0.5,) * 3, std=(0.2,) * 3, **opts).eval()
    modules = dict(net.named_modules())
    order = []
    for layer in net.layer_names:
        modules[layer].register_forward_hook(lambda m, i, o, layer=layer: order.append(layer))
    out = net(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert order == net.layer_names


@pytest.mark.parametrize("name,strides,size", [
    # Paper E §2.2 table, scale ×1 on 32×32 CIFAR-10
    ("resnet18", "1222", 4), ("resnet18", "1122", 8), ("resnet18", "1112", 16), ("resnet18", "1111", 32),
    ("preact_resnet18", "1222", 4), ("preact_resnet18", "1122", 8), ("preact_resnet18", "1112", 16),
    ("vgg16_bn", "22222", 1), ("vgg16_bn", "11222", 4), ("vgg16_bn", "11122", 8), ("vgg16_bn", "11112", 16),
    ("alexnet", "2222", 2), ("alexnet", "1122", 7), ("alexnet", "1112", 15), ("alexnet", "1111", 29),
])
def test_stride_strings_give_paper_e_s_pre_pool_map_sizes(name, strides, size):
    net = build_model(name, input_shape=(3, 32, 32), num_classes=10, strides=strides).eval()
    seen = {}
    net.pool.register_forward_hook(lambda m, i, o: seen.update(shape=i[0].shape))
    net(torch.rand(1, 3, 32, 32))
    assert tuple(seen["shape"][-2:]) == (size, size)
    if hasattr(net, "feature_map_size"):
        assert net.feature_map_size((32, 32)) == (size, size)


def test_upsampling_doubles_the_map_like_one_stride_less():
    # Paper E: ×2 upsampling with 1222 and strides 1122 at ×1 give the same 8×8 final map for ResNet18.
    a = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, strides="1222", upsample=2)
    b = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, strides="1122")
    assert a.feature_map_size((32, 32)) == b.feature_map_size((32, 32)) == (8, 8)


@pytest.mark.parametrize("name,opts", [("resnet18", dict(strides="122")), ("vgg16_bn", dict(strides="2222")),
                                        ("alexnet", dict(strides="2a22")), ("wide_resnet", dict(depth=27)),
                                        ("densenet_bc", dict(depth=99)), ("allconv", dict(dropout=1.0))])
def test_bad_paper_model_options_are_one_line_errors(name, opts):
    with pytest.raises(ValueError) as e:
        build_model(name, input_shape=(3, 32, 32), num_classes=10, **opts)
    assert "\n" not in str(e.value)


def test_tiny_imagenet_sized_inputs_work_for_the_pooled_models():
    for name in ("resnet18", "preact_resnet18", "wide_resnet"):
        net = build_model(name, input_shape=(3, 64, 64), num_classes=200).eval()
        assert net(torch.rand(1, 3, 64, 64)).shape == (1, 200)


def test_paper_b_cifar_conv_layers_and_size():
    # Spec §2: 6 convs (32, 32, 64, 64, 128, 128) with BN, BN1d(2048) → Linear(2048→256) → BN1d → Linear(256→10).
    net = build_model("cifar_conv", input_shape=(3, 32, 32), num_classes=10)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [32, 32, 64, 64, 128, 128]
    assert all(m.padding_mode == "replicate" for m in convs)
    assert net.fc[1].num_features == 2048 and net.fc[2].out_features == 256
    expected = (896 + 9248 + 18496 + 36928 + 73856 + 147584 + 2 * (64 + 128 + 256)
                + 2 * 2048 + 524544 + 2 * 256 + 2570)
    assert n_params(net) == expected


def test_preact_resnet32_is_pre_activation_with_the_same_convolutions():
    from reprobust.models.preact_resnet18 import PreActBasicBlock

    post = build_model("resnet", input_shape=(3, 32, 32), num_classes=10, depth=32)
    pre = build_model("resnet", input_shape=(3, 32, 32), num_classes=10, depth=32, preact=True)
    blocks = [m for m in pre.modules() if isinstance(m, PreActBasicBlock)]
    assert len(blocks) == 15  # (32 - 2) / 6 = 5 per stage
    conv = lambda net: [tuple(m.weight.shape) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv(pre) == conv(post)
    # 0.46M as He et al.'s ResNet-32 (BN placement changes the count by a few hundred parameters)
    assert 0.46e6 <= n_params(pre) < 0.47e6


@pytest.mark.parametrize("name,strides,size", [("resnet18", "1122", 8), ("preact_resnet18", "1222", 4),
                                               ("vgg16_bn", "11222", 4), ("alexnet", "1122", 7)])
def test_width_shrinks_channels_but_keeps_the_stride_geometry(name, strides, size):
    # `width` exists for tiny end-to-end runs of the full profile: fewer channels, same map sizes.
    full = build_model(name, input_shape=(3, 32, 32), num_classes=10, strides=strides)
    tiny = build_model(name, input_shape=(3, 32, 32), num_classes=10, strides=strides, width=8).eval()
    assert n_params(tiny) < n_params(full) / 8
    seen = {}
    tiny.pool.register_forward_hook(lambda m, i, o: seen.update(shape=i[0].shape))
    assert tiny(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert tuple(seen["shape"][-2:]) == (size, size) and seen["shape"][1] <= 64  # 512 (alexnet 256) at full width
    with pytest.raises(ValueError, match="width"):
        build_model(name, input_shape=(3, 32, 32), num_classes=10, width=0)
