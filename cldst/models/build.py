"""`build_model`: a backbone by name, initialized, with task heads (the entry point of cldst.models)."""

from __future__ import annotations

import logging

from torch import nn

from cldst.errors import check_choice, check_positive_int
from cldst.lazy import resolve
from cldst.models import ARCHS, BACKBONES, BNS, HEADS, VARIANTS, WEIGHT_INITS
from cldst.models.continual_net import ContinualNet
from cldst.models.norm import per_task_norms

log = logging.getLogger(__name__)


def init_weights(module: nn.Module, kind: str = "torch") -> None:
    """Initialize every conv of `module` (see WEIGHT_INITS); "torch" leaves PyTorch's default in place.

    With BatchNorm after every conv the scale of a conv's weights does not change its output, but it
    sets how far one Adam step moves them relative to their size: Kaiming-normal fan_out convs are
    ~2.4x larger than the default at 3x3, so the same lr trains them relatively less."""
    check_choice("weight_init", kind, WEIGHT_INITS)
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
    for field, value, allowed in (("arch", arch, ARCHS), ("variant", variant, VARIANTS), ("bn", bn, BNS),
                                  ("head", head, HEADS), ("weight_init", weight_init, WEIGHT_INITS)):
        check_choice(field, value, allowed)
    for field, value in (("num_classes", num_classes), ("num_tasks", num_tasks), ("width", width),
                         ("in_channels", in_channels)):
        check_positive_int(field, value)
    backbone = resolve(BACKBONES[arch])(width=width, variant=variant, bn=bn, in_channels=in_channels)
    init_weights(backbone, weight_init)
    if bn == "task":
        per_task_norms(backbone, num_tasks)
    net = ContinualNet(backbone, backbone.feature_dim, num_classes, num_tasks, head)
    log.debug("built %s width=%d variant=%s bn=%s head=%s: %d parameters", arch, width, variant, bn, head,
              sum(p.numel() for p in net.parameters()))
    return net
