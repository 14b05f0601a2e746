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
    "ARCHS", "BNS", "HEADS", "STEMS", "ContinualNet", "TaskNorm", "build_model", "make_norm", "param_shapes",
]  # fmt: skip

log = logging.getLogger(__name__)

BACKBONES: dict[str, type[nn.Module]] = {"resnet18": ResNet18, "vgg": VGG, "mobilenetv2": MobileNetV2}
ARCHS = tuple(BACKBONES)
# The stem is the first conv of any backbone: "cifar" 3x3 stride 1, "authors" 7x7 stride 2 padding 3.
STEMS = ("cifar", "authors")


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(allowed)}")


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be an integer >= 1")


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, relu) for every conv; linear layers keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def build_model(
    arch: str,
    *,
    num_classes: int,
    num_tasks: int,
    width: int = 64,
    stem: str = "cifar",
    bn: str = "batch",
    head: str = "shared",
    in_channels: int = 3,
) -> ContinualNet:
    """A ContinualNet with the named backbone; width=64 is the standard network of each arch."""
    _choice("arch", arch, ARCHS)
    _choice("stem", stem, STEMS)
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
    backbone = BACKBONES[arch](width=width, stem=stem, bn=bn, in_channels=in_channels)
    init_weights(backbone)
    if bn == "task":
        per_task_norms(backbone, num_tasks)
    net = ContinualNet(backbone, backbone.feature_dim, num_classes, num_tasks, head)
    log.debug("built %s width=%d stem=%s bn=%s head=%s: %d parameters", arch, width, stem, bn, head,
              sum(p.numel() for p in net.parameters()))  # fmt: skip
    return net
