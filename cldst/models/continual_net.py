"""A backbone plus task heads: the network every task trains a subnetwork of.

Two heads:
- "shared" (authors): one Linear(F, num_classes) without bias. Task t's logits are columns
  [t*C, (t+1)*C) with C = num_classes // num_tasks; column j is the class at position j of the class
  order (the split maps class ids to positions). Its weight is masked like any layer.
- "multi": one dense Linear(F, C) per task, never masked; task t trains only its own head.
Linear layers keep PyTorch's default init (kaiming-uniform, i.e. U(-1/sqrt(F), 1/sqrt(F))).
"""

from __future__ import annotations

import torch
from torch import nn

from cldst.data.splits import check_divides
from cldst.errors import check_choice
from cldst.models import HEADS
from cldst.models.norm import TaskNorm


class ContinualNet(nn.Module):
    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, num_tasks: int, head: str = "shared"):
        super().__init__()
        check_choice("head", head, HEADS)
        check_divides(num_classes, num_tasks)
        self.backbone = backbone  # x -> features [B, F]
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.num_tasks = num_tasks
        self.classes_per_task = num_classes // num_tasks
        self.head_kind = head
        self.task_norms = [m for m in backbone.modules() if isinstance(m, TaskNorm)]  # bn="task" only
        if head == "shared":
            self.head = nn.Linear(feature_dim, num_classes, bias=False)
        else:
            self.heads = nn.ModuleList(
                nn.Linear(feature_dim, self.classes_per_task, bias=False) for _ in range(num_tasks)
            )

    def _check_task(self, task: int) -> None:
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task={task} is out of range 0..{self.num_tasks - 1}")

    def select_task(self, task: int) -> None:
        """Route every per-task BatchNorm (bn="task") to `task`'s own; nothing else depends on it."""
        self._check_task(task)
        for norm in self.task_norms:
            norm.task = task

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_channels, H, W] -> [B, F] (with the per-task BatchNorms last selected)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Logits of `task`'s classes, [B, C], in the order of the task's class positions."""
        self.select_task(task)
        f = self.backbone(x)
        if self.head_kind == "multi":
            return self.heads[task](f)
        # Slicing the full logits (rather than the weight) keeps them bitwise equal to all_logits;
        # the gradient reaches only rows [t*C, (t+1)*C) of the head weight either way.
        lo = task * self.classes_per_task
        return self.head(f)[:, lo : lo + self.classes_per_task]

    def all_logits(self, x: torch.Tensor, task: int | None = None) -> torch.Tensor:
        """[B, num_classes]: the shared head's logits; for "multi", every task head's logits
        concatenated in task order (same shape, column j again = class position j). `task` selects
        the per-task BatchNorms (bn="task"); None keeps the last selected."""
        if task is not None:
            self.select_task(task)
        f = self.backbone(x)
        if self.head_kind == "multi":
            return torch.cat([h(f) for h in self.heads], dim=1)
        return self.head(f)

    def maskable_parameters(self) -> dict[str, nn.Parameter]:
        """Every Conv2d/Linear weight of the backbone (depthwise convs included) plus the shared
        head's weight, ordered as in named_parameters(). Per-task heads are dense, so left out."""
        modules = [m for m in self.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        if self.head_kind == "shared":
            modules.append(self.head)
        wanted = {id(m.weight) for m in modules}
        return {name: p for name, p in self.named_parameters() if id(p) in wanted}

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """What task `task`'s optimizer trains: the backbone (incl. BN affine parameters, if any; with
        bn="task" only this task's BNs) and the shared head, or the backbone and that task's own head."""
        self._check_task(task)
        head = self.head if self.head_kind == "shared" else self.heads[task]
        others = {id(p) for norm in self.task_norms for j, bn in enumerate(norm.norms) if j != task
                  for p in bn.parameters()}
        return [*(p for p in self.backbone.parameters() if id(p) not in others), *head.parameters()]


def param_shapes(net: ContinualNet) -> dict[str, tuple[int, ...]]:
    """Shapes of the maskable parameters, by name (input of cldst.sparse.layer_densities)."""
    return {name: tuple(p.shape) for name, p in net.maskable_parameters().items()}
