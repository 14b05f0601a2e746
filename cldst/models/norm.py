"""The BatchNorm factory: one switch between the authors' parameter-free BN and standard BN."""

from __future__ import annotations

from torch import nn

from cldst.errors import ConfigError

BNS = ("batch", "standard")


def make_norm(kind: str, channels: int, dims: int = 2) -> nn.BatchNorm2d | nn.BatchNorm1d:
    """BatchNorm over `channels` feature maps (dims=2, [B, C, H, W]) or features (dims=1, [B, C]).

    "batch" (authors): affine=False, track_running_stats=False. Normalizes with the statistics of the
        current batch in train AND eval mode and has no parameters, so it needs no masking or
        freezing; the price is that a test image's output depends on the rest of its batch.
    "standard": affine=True, track_running_stats=True. Its scale/shift and running statistics are
        shared by all tasks and keep changing with each new task (so they forget).
    """
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    if kind == "batch":
        return norm(channels, affine=False, track_running_stats=False)
    if kind == "standard":
        return norm(channels, affine=True, track_running_stats=True)
    raise ConfigError(f"bn={kind!r} is not one of: {', '.join(BNS)}")
