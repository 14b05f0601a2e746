"""MobileNetV2 for 32x32 inputs (the common CIFAR variant, e.g. kuangliu/pytorch-cifar), no biases.

Differences from the ImageNet network, all for small inputs: the first conv has stride 1 and the
second (t, c, n, s) row has stride 1 instead of 2, so a 32x32 input ends as a 4x4 map. As in that
variant, ReLU (not ReLU6) is used, and a stride-1 block whose channels change gets a 1x1 conv + BN
shortcut. Channels scale with width / 64 (64 = standard widths, 32 = half), at least 1.
"""

from __future__ import annotations

import torch
from torch import nn

from cldst.models.norm import make_norm
from cldst.models.resnet import make_stem
from cldst.models.vgg import scale_channels

# (expansion t, output channels c, repeats n, stride of the first repeat s)
INVERTED_RESIDUALS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the ImageNet network
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 project-BN (linear bottleneck), + shortcut at stride 1."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int, bn: str):
        super().__init__()
        hidden = expansion * in_channels
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn1 = make_norm(bn, hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = make_norm(bn, hidden)
        self.conv3 = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = make_norm(bn, out_channels)
        self.shortcut = nn.Sequential()  # identity
        if stride == 1 and in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                make_norm(bn, out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    """x [B, in_channels, H, W] -> features [B, scale_channels(1280, width)]."""

    def __init__(self, width: int = 64, stem: str = "cifar", bn: str = "batch", in_channels: int = 3):
        super().__init__()
        channels = scale_channels(STEM_CHANNELS, width)
        self.conv1 = make_stem(stem, in_channels, channels)
        self.bn1 = make_norm(bn, channels)
        blocks = []
        for expansion, c, repeats, stride in INVERTED_RESIDUALS:
            out_channels = scale_channels(c, width)
            for r in range(repeats):
                blocks.append(InvertedResidual(channels, out_channels, expansion, stride if r == 0 else 1, bn))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = scale_channels(LAST_CHANNELS, width)
        self.conv2 = nn.Conv2d(channels, self.feature_dim, 1, bias=False)
        self.bn2 = make_norm(bn, self.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(self.blocks(out))))
        return out.mean(dim=(2, 3))  # [B, F, h, w] -> [B, F]
