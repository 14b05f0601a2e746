"""The BatchNorm factory: one switch between the authors' parameter-free BN and standard BN."""

from __future__ import annotations

from torch import nn

from cldst.errors import ConfigError

BNS = ("batch", "standard")


def make_norm(kind: str, channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d over `channels` feature maps of the given kind.

    "batch" (authors): affine=False, track_running_stats=False. Normalizes with the statistics of the
        current batch in train AND eval mode and has no parameters, so it needs no masking or
        freezing; the price is that a test image's output depends on the rest of its batch.
    "standard": affine=True, track_running_stats=True. Its scale/shift and running statistics are
        shared by all tasks and keep changing with each new task (so they forget).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "standard":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    raise ConfigError(f"bn={kind!r} is not one of: {', '.join(BNS)}")
