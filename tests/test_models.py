"""Backbones and task heads: shapes, exact parameter counts, maskable sets, BN modes, head slicing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cldst.errors import ConfigError
from cldst.models import (
    ARCHS,
    BNS,
    HEADS,
    VARIANTS,
    ContinualNet,
    TaskNorm,
    build_model,
    make_norm,
    param_shapes,
)
from cldst.models.vgg import scale_channels


def tiny(arch: str, **kw) -> ContinualNet:
    """Width 8, 12 classes in 3 tasks (C = 4): small enough for many forward passes."""
    torch.manual_seed(0)
    return build_model(arch, num_classes=12, num_tasks=3, width=kw.pop("width", 8), **kw)


def resnet18_conv_shapes(width: int, stem_kernel: int, in_channels: int = 3) -> list[tuple[int, ...]]:
    """Conv weight shapes of ResNet-18 written out by hand: stem, then per stage two BasicBlocks
    (two 3x3 convs each), plus a 1x1 shortcut in the first block of stages 2-4."""
    w = width
    shapes = [(w, in_channels, stem_kernel, stem_kernel)]
    shapes += [(w, w, 3, 3)] * 4  # stage 1: no shape change, no shortcut
    for c_in, c_out in ((w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)):
        shapes += [(c_out, c_in, 3, 3), (c_out, c_out, 3, 3), (c_out, c_in, 1, 1)]
        shapes += [(c_out, c_out, 3, 3)] * 2
    return shapes


# ---------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("head", HEADS)
def test_output_shapes(arch: str, variant: str, head: str) -> None:
    net = tiny(arch, variant=variant, head=head)
    expected_features = {"resnet18": 64, "vgg": 64, "mobilenetv2": 160}[arch]  # 8*8, 512/8, 1280/8
    assert net.feature_dim == expected_features
    x = torch.randn(5, 3, 16, 16)
    assert net.features(x).shape == (5, expected_features)
    assert net(x, 2).shape == (5, 4)
    assert net.all_logits(x).shape == (5, 12)


def test_in_channels_and_32px_input() -> None:
    net = tiny("resnet18", in_channels=1)
    assert net.backbone.conv1.weight.shape == (8, 1, 3, 3)
    assert net(torch.randn(2, 1, 32, 32), 0).shape == (2, 4)


def test_width_scaling_rounds_and_keeps_at_least_one_channel() -> None:
    assert scale_channels(1280, 32) == 640
    assert scale_channels(24, 8) == 3
    assert scale_channels(16, 1) == 1  # 0.25 rounds to 0, clamped to 1
    net = build_model("mobilenetv2", num_classes=4, num_tasks=2, width=1)
    assert net.backbone.conv1.weight.shape == (1, 3, 3, 3)  # round(32/64) = 0 -> 1
    assert net.feature_dim == 20  # 1280/64
    assert net(torch.randn(2, 3, 8, 8), 1).shape == (2, 2)


# ------------------------------------------------------------------------------ parameter counts
def test_resnet18_exact_parameter_count() -> None:
    net = build_model("resnet18", num_classes=100, num_tasks=10)  # width 64, cifar stem, bn="batch"
    backbone = sum(math.prod(s) for s in resnet18_conv_shapes(64, 3))
    assert backbone == 11_159_232
    assert sum(p.numel() for p in net.backbone.parameters()) == backbone  # no BN params, no biases
    assert sum(p.numel() for p in net.parameters()) == 11_159_232 + 512 * 100 == 11_210_432
    assert [tuple(s) for s in param_shapes(net).values()] == resnet18_conv_shapes(64, 3) + [(100, 512)]


@pytest.mark.parametrize(
    ("arch", "count"),
    # Known totals of the common CIFAR-10 nets (kuangliu/pytorch-cifar: 11,173,962 / 2,296,922 /
    # 14,728,266) minus their biases: classifier bias 10, and VGG's 13 conv biases (4,224); VGG-like
    # adds its hidden 512x512 layer (262,144) and that layer's BN scale and shift (1,024).
    [("resnet18", 11_173_952), ("mobilenetv2", 2_296_912), ("vgg", 14_724_032 + 262_144 + 1_024)],
)
def test_standard_bn_counts_match_reference_nets(arch: str, count: int) -> None:
    net = build_model(arch, num_classes=10, num_tasks=1, bn="standard")
    assert sum(p.numel() for p in net.parameters()) == count


def test_authors_stem_is_7x7_stride_2_and_halves_every_map() -> None:
    net = build_model("resnet18", num_classes=100, num_tasks=10, variant="authors")
    conv = net.backbone.conv1
    assert conv.weight.shape == (64, 3, 7, 7)
    assert (conv.stride, conv.padding) == ((2, 2), (3, 3))
    assert sum(p.numel() for p in net.parameters()) == 11_210_432 + 64 * 3 * (49 - 9)

    sizes: dict[str, tuple[int, ...]] = {}
    for stem in VARIANTS:
        small = tiny("resnet18", variant=stem)
        hooks = [
            small.backbone.conv1.register_forward_hook(lambda m, i, o, s=stem: sizes.__setitem__(s + "1", o.shape)),
            small.backbone.layer4.register_forward_hook(lambda m, i, o, s=stem: sizes.__setitem__(s + "4", o.shape)),
        ]
        small.features(torch.randn(2, 3, 32, 32))
        for h in hooks:
            h.remove()
    assert sizes["cifar1"][2:] == (32, 32) and sizes["authors1"][2:] == (16, 16)
    assert sizes["cifar4"][2:] == (4, 4) and sizes["authors4"][2:] == (2, 2)


def conv_strides(net: ContinualNet) -> list[int]:
    return [m.stride[0] for m in net.backbone.modules() if isinstance(m, nn.Conv2d)]


def test_vgg_starts_with_a_3x3_stride_1_conv_in_both_variants() -> None:
    # the authors' VGG-like (SNIP's) has no ResNet stem: 13 conv3x3 stride 1, then the hidden FC
    for variant in VARIANTS:
        first = next(m for m in tiny("vgg", variant=variant).backbone.modules() if isinstance(m, nn.Conv2d))
        assert (first.kernel_size, first.stride, first.padding) == ((3, 3), (1, 1), (1, 1))
    assert str(tiny("vgg", variant="authors")) == str(tiny("vgg", variant="cifar"))


def test_mobilenetv2_authors_variant_is_the_imagenet_layout_with_relu6_and_identity_residuals() -> None:
    cifar, authors = tiny("mobilenetv2"), tiny("mobilenetv2", variant="authors")
    first = authors.backbone.conv1
    assert (first.kernel_size, first.stride) == ((3, 3), (2, 2))
    assert cifar.backbone.conv1.stride == (1, 1)
    # stride of each block's depthwise conv: rows (t, c, n, s) of the ImageNet table
    blocks = lambda net: [b.conv2.stride[0] for b in net.backbone.blocks]
    assert blocks(authors) == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    assert blocks(cifar) == [1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    # residuals: identity only where a block keeps its shape; the cifar variant adds 1x1 conv shortcuts
    kinds = lambda net: [None if b.shortcut is None else len(b.shortcut) for b in net.backbone.blocks]
    assert kinds(authors) == [None, None, 0, None, 0, 0, None, 0, 0, 0, None, 0, 0, None, 0, 0, None]
    assert kinds(cifar).count(2) == 4 and None not in kinds(cifar)[:2]
    assert authors.backbone.act is torch.nn.functional.relu6 and cifar.backbone.act is torch.nn.functional.relu
    sizes = {}
    for name, net in (("cifar", cifar), ("authors", authors)):
        net.backbone.conv2.register_forward_hook(lambda m, i, o, k=name: sizes.__setitem__(k, o.shape[2:]))
        net.features(torch.randn(2, 3, 32, 32))
    assert sizes == {"cifar": (4, 4), "authors": (1, 1)}
    x = torch.full((1, 1, 2, 2), 9.0)
    assert authors.backbone.act(x).max() == 6.0  # ReLU6 caps


def test_paper_profile_builds_the_authors_first_layers_for_every_arch() -> None:
    from cldst.experiments import configs

    expected = {"cifar100-10": ((7, 7), (2, 2)), "vgg": ((3, 3), (1, 1)), "mobilenetv2": ((3, 3), (2, 2))}
    for experiment, (kernel, stride) in expected.items():
        cfg = configs(experiment, "paper")[0]
        net = build_model(cfg.arch, num_classes=cfg.num_classes, num_tasks=cfg.num_tasks, width=8,
                          variant=cfg.variant, bn=cfg.bn, head=cfg.head)
        first = next(m for m in net.backbone.modules() if isinstance(m, nn.Conv2d))
        assert (first.kernel_size, first.stride) == (kernel, stride), experiment


def test_weight_init_torch_keeps_the_default_and_kaiming_is_about_2_4x_larger() -> None:
    torch.manual_seed(0)
    default = build_model("resnet18", num_classes=10, num_tasks=1, weight_init="torch")
    kaiming = build_model("resnet18", num_classes=10, num_tasks=1, weight_init="kaiming")
    w_default, w_kaiming = default.backbone.layer1[0].conv1.weight, kaiming.backbone.layer1[0].conv1.weight
    fan_in = 64 * 9
    # PyTorch's default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std 1/sqrt(3 fan_in)
    assert w_default.abs().max() <= 1 / math.sqrt(fan_in)
    assert w_default.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.03)
    # Kaiming-normal fan_out (relu): std sqrt(2 / (64 * 9)), i.e. sqrt(6) = 2.45x the default's
    assert w_kaiming.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    for net in (default, kaiming):  # linear layers keep PyTorch's default either way
        assert net.head.weight.abs().max() <= 1 / math.sqrt(net.feature_dim)


# ---------------------------------------------------------------------------- maskable parameters
def test_resnet18_maskable_parameters_are_exactly_conv_and_head_weights() -> None:
    net = tiny("resnet18")
    maskable = net.maskable_parameters()
    assert len(maskable) == 21  # 17 convs on the main path + 3 shortcut convs + head
    assert sum(".shortcut." in name for name in maskable) == 3
    assert list(maskable)[0] == "backbone.conv1.weight" and list(maskable)[-1] == "head.weight"
    order = [name for name, _ in net.named_parameters() if name in maskable]
    assert list(maskable) == order
    weights = {id(m.weight) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert {id(p) for p in maskable.values()} == weights

    multi = tiny("resnet18", head="multi")
    assert len(multi.maskable_parameters()) == 20  # per-task heads are dense
    assert not any(name.startswith("heads.") for name in multi.maskable_parameters())


@pytest.mark.parametrize(("arch", "convs"), [("vgg", 13 + 1), ("mobilenetv2", 57)])  # VGG: + the hidden FC
def test_other_archs_mask_every_conv_including_depthwise(arch: str, convs: int) -> None:
    # MobileNetV2: stem + 17 blocks x 3 convs + 4 shortcut convs (stride-1 blocks whose channels
    # change: 32->16, 16->24, 64->96, 160->320) + final 1x1 = 57.
    net = tiny(arch)
    maskable = net.maskable_parameters()
    assert len(maskable) == convs + 1
    depthwise = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == (17 if arch == "mobilenetv2" else 0)
    assert all(any(p is m.weight for p in maskable.values()) for m in depthwise)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bn", BNS)
def test_no_biases_anywhere(arch: str, bn: str) -> None:
    net = tiny(arch, bn=bn, head="multi")
    assert all(m.bias is None for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    bn_names = [n for n, m in net.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert bn_names
    # "bias" may only appear as the shift of an affine BatchNorm (bn="standard" or "task").
    for name, _ in net.named_parameters():
        if "bias" in name:
            assert bn in ("standard", "task") and name.rsplit(".", 1)[0] in bn_names


# ------------------------------------------------------------------------------------ BatchNorm
def test_make_norm_kinds() -> None:
    batch, standard = make_norm("batch", 4), make_norm("standard", 4)
    assert (batch.affine, batch.track_running_stats) == (False, False)
    assert list(batch.parameters()) == [] and list(batch.buffers()) == []
    assert (standard.affine, standard.track_running_stats) == (True, True)
    assert sum(p.numel() for p in standard.parameters()) == 8
    with pytest.raises(ConfigError, match="bn='group' is not one of: batch, standard, task"):
        make_norm("group", 4)


def test_batch_bn_has_no_parameters_and_eval_depends_on_the_batch() -> None:
    net = tiny("resnet18", bn="batch").eval()
    assert [id(p) for p in net.parameters()] == [id(p) for p in net.maskable_parameters().values()]
    torch.manual_seed(1)
    sample, other_a, other_b = torch.randn(1, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        out_a = net(torch.cat([sample, other_a]), 0)[0]
        out_b = net(torch.cat([sample, other_b]), 0)[0]
    assert (out_a - out_b).abs().max() > 1e-3


def test_standard_bn_eval_output_does_not_depend_on_the_batch() -> None:
    net = tiny("resnet18", bn="standard")
    torch.manual_seed(1)
    with torch.no_grad():
        net(torch.randn(8, 3, 16, 16), 0)  # one train-mode pass moves the running statistics
    net.eval()
    sample, other_a, other_b = torch.randn(1, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        out_a = net(torch.cat([sample, other_a]), 0)[0]
        out_b = net(torch.cat([sample, other_b]), 0)[0]
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-6)
    bn_params = sum(p.numel() for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert bn_params == 2 * 5 * (8 + 16 + 32 + 64)  # weight + bias per channel; 5 BNs at each width


@pytest.mark.parametrize("arch", ARCHS)
def test_task_bn_gives_every_task_its_own_copy_of_every_bn(arch: str) -> None:
    standard, per_task = tiny(arch, bn="standard"), tiny(arch, bn="task")
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in standard.modules())
    norms = [m for m in per_task.modules() if isinstance(m, TaskNorm)]
    assert len(norms) == len(per_task.task_norms) == n_bn and all(len(m.norms) == 3 for m in norms)
    bn_numel = sum(p.numel() for m in standard.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for p in m.parameters())
    assert sum(p.numel() for p in per_task.parameters()) == sum(p.numel() for p in standard.parameters()) + 2 * bn_numel
    assert list(per_task.maskable_parameters()) == list(standard.maskable_parameters())  # same masked weights
    # task t's optimizer gets the shared weights and only its own BNs
    for t in range(3):
        own = {id(p) for m in norms for p in m.norms[t].parameters()}
        others = {id(p) for m in norms for j in range(3) if j != t for p in m.norms[j].parameters()}
        params = {id(p) for p in per_task.task_parameters(t)}
        assert own <= params and not others & params
        assert len(params) == len(list(per_task.parameters())) - len(others)


def test_task_bn_trains_only_the_current_task_and_evaluates_per_image() -> None:
    net = tiny("resnet18", bn="task")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.Adam(net.task_parameters(1), lr=0.1)
    loss = nn.functional.cross_entropy(net(torch.randn(8, 3, 16, 16), 1), torch.randint(0, 4, (8,)))
    loss.backward()
    opt.step()
    after = net.state_dict()
    changed = {k.split(".norms.")[1].split(".")[0] for k in after if ".norms." in k and not torch.equal(after[k], before[k])}
    assert changed == {"1"}  # scale, shift, running statistics and batch count of task 1's BNs only
    net.eval()
    torch.manual_seed(1)
    sample, other_a, other_b = torch.randn(1, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        out_a = net(torch.cat([sample, other_a]), 1)[0]
        out_b = net(torch.cat([sample, other_b]), 1)[0]
        assert torch.equal(net.all_logits(sample, 1)[0, 4:8], net(sample, 1)[0])
        differs = (net(sample, 0) - net(sample, 1)).abs().max()
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-6)
    assert differs > 0  # task 0 normalizes with its own (untrained) statistics


# ------------------------------------------------------------------------------------------ heads
def test_shared_head_task_logits_are_columns_of_all_logits() -> None:
    net = tiny("resnet18")
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        full = net.all_logits(x)
        for t in range(3):
            assert torch.equal(net(x, t), full[:, 4 * t : 4 * t + 4])


def test_multi_head_all_logits_concatenate_task_heads_in_order() -> None:
    net = tiny("vgg", head="multi")
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        full = net.all_logits(x)
        for t in range(3):
            assert torch.equal(net(x, t), full[:, 4 * t : 4 * t + 4])


def test_multi_head_gradient_reaches_only_its_own_head() -> None:
    net = tiny("resnet18", head="multi")
    net(torch.randn(4, 3, 16, 16), 1).square().sum().backward()
    assert net.heads[0].weight.grad is None and net.heads[2].weight.grad is None
    assert net.heads[1].weight.grad.abs().sum() > 0
    params = net.task_parameters(1)
    assert any(p is net.heads[1].weight for p in params)
    assert not any(p is net.heads[0].weight or p is net.heads[2].weight for p in params)
    assert len(params) == len(list(net.backbone.parameters())) + 1


def test_shared_head_gradient_reaches_only_the_task_rows() -> None:
    net = tiny("resnet18")
    net(torch.randn(4, 3, 16, 16), 2).square().sum().backward()
    row_grad = net.head.weight.grad.abs().sum(dim=1)  # [12]
    assert torch.equal(row_grad[:8], torch.zeros(8))
    assert (row_grad[8:] > 0).all()
    assert [id(p) for p in net.task_parameters(0)] == [id(p) for p in net.parameters()]


def test_task_parameters_include_bn_affine_parameters() -> None:
    net = tiny("mobilenetv2", bn="standard", head="multi")
    params = {id(p) for p in net.task_parameters(0)}
    bn_params = [p for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    assert bn_params and all(id(p) in params for p in bn_params)


def test_task_out_of_range() -> None:
    net = tiny("resnet18")
    with pytest.raises(ValueError, match="task=3 is out of range 0..2"):
        net(torch.randn(2, 3, 16, 16), 3)


# ------------------------------------------------------------------------------- init, training
def test_conv_init_kaiming_is_kaiming_normal_fan_out() -> None:
    torch.manual_seed(0)
    net = build_model("resnet18", num_classes=100, num_tasks=10, width=16, weight_init="kaiming")
    w = net.backbone.layer4[1].conv2.weight  # [128, 128, 3, 3]: fan_out = 128 * 9
    assert abs(w.std().item() / math.sqrt(2 / (128 * 9)) - 1) < 0.02
    assert abs(w.mean().item()) < 1e-3
    bound = 1 / math.sqrt(128)  # head: PyTorch default kaiming-uniform U(-1/sqrt(F), 1/sqrt(F))
    assert net.head.weight.abs().max() <= bound


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_reaches_every_maskable_weight(arch: str) -> None:
    net = tiny(arch, bn="standard")
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32), 1), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in net.maskable_parameters().items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "head.weight":
            assert p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "resnet50"}, "arch='resnet50' is not one of: resnet18, vgg, mobilenetv2"),
        ({"variant": "imagenet"}, "variant='imagenet' is not one of: cifar, authors"),
        ({"weight_init": "xavier"}, "weight_init='xavier' is not one of: torch, kaiming"),
        ({"bn": "group"}, "bn='group' is not one of: batch, standard, task"),
        ({"head": "single"}, "head='single' is not one of: shared, multi"),
        ({"num_tasks": 7}, r"num_tasks=7 does not divide num_classes=12 \(allowed: 1, 2, 3, 4, 6, 12\)"),
        ({"width": 0}, "width=0 must be an integer >= 1"),
        ({"num_classes": 0}, "num_classes=0 must be an integer >= 1"),
        ({"in_channels": 2.5}, "in_channels=2.5 must be an integer >= 1"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict, message: str) -> None:
    args = {"arch": "resnet18", "num_classes": 12, "num_tasks": 3, "width": 8, **kwargs}
    arch = args.pop("arch")
    with pytest.raises(ConfigError, match=f"^{message}$"):
        build_model(arch, **args)
