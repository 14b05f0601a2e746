"""ResNet-18 (BasicBlock, [2, 2, 2, 2]) without biases, in two variants that differ in the stem.

width=64 gives the standard network: stages of 64, 128, 256, 512 channels.
"""

from __future__ import annotations

import torch
from torch import nn

from cldst.models.norm import make_norm

STAGE_BLOCKS = (2, 2, 2, 2)  # BasicBlocks per stage
STAGE_MULTIPLIERS = (1, 2, 4, 8)  # stage channels = width * multiplier


def make_stem(variant: str, in_channels: int, out_channels: int) -> nn.Conv2d:
    """ResNet-18's first conv.

    "cifar": 3x3 stride 1 (keeps 32x32 resolution, the usual CIFAR choice).
    "authors": 7x7 stride 2 padding 3, as the authors' ResNet-18 (they drop the ImageNet max-pool
    but keep the stride-2 conv, so every feature map is half the CIFAR-stem size).
    """
    if variant == "cifar":
        return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    if variant == "authors":
        return nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    raise ValueError(f"unknown variant {variant!r}")  # build_model validates user input before this


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus a shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bn: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(bn, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(bn, out_channels)
        self.shortcut = nn.Sequential()  # identity
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                make_norm(bn, out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """x [B, in_channels, H, W] -> features [B, 8 * width] (global average pool of the last stage)."""

    def __init__(self, width: int = 64, variant: str = "cifar", bn: str = "batch", in_channels: int = 3):
        super().__init__()
        self.conv1 = make_stem(variant, in_channels, width)
        self.bn1 = make_norm(bn, width)
        stages: list[nn.Module] = []
        channels = width
        for i, (blocks, mult) in enumerate(zip(STAGE_BLOCKS, STAGE_MULTIPLIERS)):
            out_channels = width * mult
            stride = 1 if i == 0 else 2  # stages 2-4 halve the resolution
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(channels, out_channels, stride if b == 0 else 1, bn))
                channels = out_channels
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return out.mean(dim=(2, 3))  # [B, 8*width, h, w] -> [B, 8*width]
