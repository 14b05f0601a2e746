"""Backbones (ResNet-18, VGG-like, MobileNetV2) with task heads; `build_model` is the entry point."""

from __future__ import annotations

import logging

from torch import nn

from cldst.errors import ConfigError
from cldst.models.continual_net import HEADS, ContinualNet, param_shapes
from cldst.models.mobilenetv2 import MobileNetV2
from cldst.models.norm import BNS, TaskNorm, make_norm, per_task_norms
from cldst.models.resnet import ResNet18
from cldst.models.vgg import VGG

__all__ = [
    "ARCHS", "BNS", "HEADS", "VARIANTS", "WEIGHT_INITS", "ContinualNet", "TaskNorm", "build_model", "init_weights",
    "make_norm", "param_shapes",
]  # fmt: skip

log = logging.getLogger(__name__)

BACKBONES: dict[str, type[nn.Module]] = {"resnet18": ResNet18, "vgg": VGG, "mobilenetv2": MobileNetV2}
ARCHS = tuple(BACKBONES)
# "cifar": the CIFAR adaptations (3x3 stride-1 first convs); "authors": the networks of the authors' code
# (ResNet-18 with a 7x7 stride-2 stem; VGG-like the same in both; MobileNetV2 with ImageNet strides, ReLU6).
VARIANTS = ("cifar", "authors")
# "torch": PyTorch's default init (kaiming-uniform, a = sqrt(5)), which the authors' models keep;
# "kaiming": Kaiming-normal (fan_out, relu) convs, as torchvision's ResNets. Linear layers keep the default.
WEIGHT_INITS = ("torch", "kaiming")


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(allowed)}")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be an integer >= 1")


def init_weights(module: nn.Module, kind: str = "torch") -> None:
    """Initialize every conv of `module` (see WEIGHT_INITS); "torch" leaves PyTorch's default in place.

    With BatchNorm after every conv the scale of a conv's weights does not change its output, but it
    sets how far one Adam step moves them relative to their size: Kaiming-normal fan_out convs are
    ~2.4x larger than the default at 3x3, so the same lr trains them relatively less."""
    _choice("weight_init", kind, WEIGHT_INITS)
    if kind == "kaiming":
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def build_model(
    arch: str,
    *,
    num_classes: int,
    num_tasks: int,
    width: int = 64,
    variant: str = "cifar",
    bn: str = "batch",
    head: str = "shared",
    in_channels: int = 3,
    weight_init: str = "torch",
) -> ContinualNet:
    """A ContinualNet with the named backbone; width=64 is the standard network of each arch."""
    _choice("arch", arch, ARCHS)
    _choice("variant", variant, VARIANTS)
    _choice("weight_init", weight_init, WEIGHT_INITS)
    _choice("bn", bn, BNS)
    _choice("head", head, HEADS)
    for name, value in (("num_classes", num_classes), ("num_tasks", num_tasks), ("width", width),
                        ("in_channels", in_channels)):  # fmt: skip
        _positive_int(name, value)
    if num_classes % num_tasks:
        divisors = [d for d in range(1, num_classes + 1) if num_classes % d == 0]
        raise ConfigError(
            f"num_tasks={num_tasks} does not divide num_classes={num_classes} "
            f"(allowed: {', '.join(map(str, divisors))})"
        )
    backbone = BACKBONES[arch](width=width, variant=variant, bn=bn, in_channels=in_channels)
    init_weights(backbone, weight_init)
    if bn == "task":
        per_task_norms(backbone, num_tasks)
    net = ContinualNet(backbone, backbone.feature_dim, num_classes, num_tasks, head)
    log.debug("built %s width=%d variant=%s bn=%s head=%s: %d parameters", arch, width, variant, bn, head,
              sum(p.numel() for p in net.parameters()))  # fmt: skip
    return net
