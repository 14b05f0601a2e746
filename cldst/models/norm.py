"""The BatchNorm factory: the authors' parameter-free BN, standard BN, or one standard BN per task."""

from __future__ import annotations

import copy

import torch
from torch import nn

from cldst.errors import check_choice
from cldst.models import BNS


def make_norm(kind: str, channels: int, dims: int = 2) -> nn.BatchNorm2d | nn.BatchNorm1d:
    """BatchNorm over `channels` feature maps (dims=2, [B, C, H, W]) or features (dims=1, [B, C]).

    "batch" (authors): affine=False, track_running_stats=False. Normalizes with the statistics of the
        current batch in train AND eval mode and has no parameters, so it needs no masking or
        freezing; the price is that a test image's output depends on the rest of its batch.
    "standard": affine=True, track_running_stats=True. Its scale/shift and running statistics are
        shared by all tasks and keep changing with each new task (so they forget).
    "task": a standard BN here; `build_model` then gives every task its own copy (`per_task_norms`).
    """
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    if kind == "batch":
        return norm(channels, affine=False, track_running_stats=False)
    if kind in ("standard", "task"):
        return norm(channels, affine=True, track_running_stats=True)
    check_choice("bn", kind, BNS)
    raise AssertionError(f"BNS and make_norm disagree on {kind!r}")


class TaskNorm(nn.Module):
    """One standard BatchNorm per task; `task` (set by ContinualNet before every forward) picks it.

    Task t trains only its own scale, shift and running statistics, so a finished task's
    normalization never changes again (BN cannot forget, as with "batch"), and evaluation uses running
    statistics, so a test image's output does not depend on the rest of its batch (unlike "batch").
    """

    def __init__(self, template: nn.modules.batchnorm._BatchNorm, num_tasks: int):
        super().__init__()
        self.norms = nn.ModuleList(copy.deepcopy(template) for _ in range(num_tasks))
        self.task = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norms[self.task](x)


def per_task_norms(module: nn.Module, num_tasks: int) -> None:
    """Replace every BatchNorm inside `module`, in place, by a TaskNorm of `num_tasks` copies of it."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, TaskNorm(child, num_tasks))
        else:
            per_task_norms(child, num_tasks)
