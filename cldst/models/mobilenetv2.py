"""MobileNetV2 without biases, in two variants.

"cifar" (the common CIFAR adaptation, e.g. kuangliu/pytorch-cifar): a 3x3 stride-1 first conv and
stride 1 instead of 2 in the second (t, c, n, s) row, so a 32x32 input ends as a 4x4 map; ReLU; a
stride-1 block whose channels change gets a 1x1 conv + BN shortcut.
"authors" (the authors' code): the ImageNet layout, a 3x3 stride-2 first conv and every stride of the
table below, so a 32x32 input ends as a 1x1 map; ReLU6; a residual only where a block keeps its shape
(stride 1, same channels), no conv shortcuts. Their final classifier has a bias; cldst's heads have none.
Channels scale with width / 64 (64 = standard widths, 32 = half), at least 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cldst.models.norm import make_norm
from cldst.models.vgg import scale_channels

# (expansion t, output channels c, repeats n, stride of the first repeat s): the ImageNet table
INVERTED_RESIDUALS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),  # stride 1 in the "cifar" variant
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expand-BN-act, 3x3 depthwise-BN-act, 1x1 project-BN (linear bottleneck), + shortcut at stride 1."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int, bn: str, variant: str):
        super().__init__()
        hidden = expansion * in_channels
        self.act = F.relu6 if variant == "authors" else F.relu
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn1 = make_norm(bn, hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = make_norm(bn, hidden)
        self.conv3 = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = make_norm(bn, out_channels)
        self.shortcut: nn.Module | None = None  # no residual
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Sequential()  # identity
        elif stride == 1 and variant == "cifar":
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), make_norm(bn, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out if self.shortcut is None else out + self.shortcut(x)


class MobileNetV2(nn.Module):
    """x [B, in_channels, H, W] -> features [B, scale_channels(1280, width)]."""

    def __init__(self, width: int = 64, variant: str = "cifar", bn: str = "batch", in_channels: int = 3):
        super().__init__()
        if variant not in ("cifar", "authors"):
            raise ValueError(f"unknown variant {variant!r}")  # build_model validates user input before this
        self.act = F.relu6 if variant == "authors" else F.relu
        channels = scale_channels(STEM_CHANNELS, width)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=2 if variant == "authors" else 1, padding=1, bias=False)
        self.bn1 = make_norm(bn, channels)
        blocks = []
        for row, (expansion, c, repeats, stride) in enumerate(INVERTED_RESIDUALS):
            if row == 1 and variant == "cifar":
                stride = 1
            out_channels = scale_channels(c, width)
            for r in range(repeats):
                blocks.append(InvertedResidual(channels, out_channels, expansion, stride if r == 0 else 1, bn, variant))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = scale_channels(LAST_CHANNELS, width)
        self.conv2 = nn.Conv2d(channels, self.feature_dim, 1, bias=False)
        self.bn2 = make_norm(bn, self.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(self.blocks(out))))
        return out.mean(dim=(2, 3))  # [B, F, h, w] -> [B, F]
