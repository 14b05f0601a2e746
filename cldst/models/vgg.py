"""The VGG-like network of the DST literature for CIFAR (VGG-16 layout, conv3x3-BN-ReLU, no biases).

Config (numbers = output channels at width 64, "M" = 2x2 max-pool):
    64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M
13 convs; channels are scaled by width / 64 (at least 1). After the last pool a global average pool
gives [B, 512 * width / 64] (at 32x32 inputs the map is already 1x1, so this is a flatten), then one
hidden fully-connected layer of the same width, ReLU and BatchNorm, as the SNIP "VGG-like" that the
authors' code uses (Linear-ReLU-BN in their order, BN standing in for dropout). Without biases, like
every layer here: a bias would be trained by every task and break the frozen subnetworks.
Both variants are this network: the authors' VGG-like, too, starts with a 3x3 stride-1 conv (their
convs and linear layers have biases, trained by every task: cldst leaves them out).
"""

from __future__ import annotations

import torch
from torch import nn

from cldst.models.norm import make_norm

VGG_LIKE: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


def scale_channels(channels: int, width: int) -> int:
    """Channels of a width-64 layer at `width`: round(channels * width / 64), at least 1."""
    return max(1, round(channels * width / 64))


class VGG(nn.Module):
    """x [B, in_channels, H, W] -> features [B, scale_channels(512, width)]."""

    def __init__(self, width: int = 64, variant: str = "cifar", bn: str = "batch", in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in VGG_LIKE:
            if item == "M":
                # ceil_mode: a 1x1 map stays 1x1 (inputs under 32 px); on even sizes it is identical
                # to the usual floor mode (the authors').
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
                continue
            out_channels = scale_channels(int(item), width)
            conv = nn.Conv2d(channels, out_channels, 3, padding=1, bias=False)
            layers += [conv, make_norm(bn, out_channels), nn.ReLU(inplace=True)]
            channels = out_channels
        self.layers = nn.Sequential(*layers)
        self.hidden = nn.Sequential(
            nn.Linear(channels, channels, bias=False), nn.ReLU(inplace=True), make_norm(bn, channels, dims=1)
        )
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.layers(x).mean(dim=(2, 3)))  # [B, F, h, w] -> [B, F] -> [B, F]
