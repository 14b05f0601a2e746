"""Task splits: which classes belong to which task.

A split is a pure function of (num_classes, num_tasks, order, seed): the class order is either
0..K-1 ("natural", as the authors' code) or a permutation drawn by torch.randperm from a generator
seeded with `seed` ("random"). Task t gets class_order[t*C:(t+1)*C] with C = K / T classes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from cldst.errors import ConfigError, check_choice

ORDERS = ("natural", "random")


@dataclass(frozen=True)
class TaskSplit:
    class_order: tuple[int, ...]  # a permutation of 0..num_classes-1
    num_tasks: int

    def __post_init__(self) -> None:
        check_divides(len(self.class_order), self.num_tasks)
        if sorted(self.class_order) != list(range(len(self.class_order))):
            raise ConfigError(f"class_order must be a permutation of 0..{len(self.class_order) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.class_order)

    @property
    def classes_per_task(self) -> int:
        return len(self.class_order) // self.num_tasks

    def classes(self, t: int) -> tuple[int, ...]:
        """The class ids of task t, in order: local label i <-> class classes(t)[i]."""
        try:
            t = operator.index(t)
        except TypeError:
            raise ConfigError(f"task {t!r} must be an integer in 0..{self.num_tasks - 1}") from None
        if not 0 <= t < self.num_tasks:
            raise ConfigError(f"task {t} is out of range (allowed: 0..{self.num_tasks - 1})")
        c = self.classes_per_task
        return self.class_order[t * c : (t + 1) * c]


def make_split(num_classes: int, num_tasks: int, order: str = "natural", seed: int = 0) -> TaskSplit:
    check_divides(num_classes, num_tasks)
    check_choice("class_order", order, ORDERS)
    if order == "natural":
        class_order = tuple(range(num_classes))
    else:
        import torch  # here: this module is imported by cldst.config, which must not import torch

        generator = torch.Generator().manual_seed(seed)
        class_order = tuple(torch.randperm(num_classes, generator=generator).tolist())
    return TaskSplit(class_order, num_tasks)


def check_divides(num_classes: int, num_tasks: int) -> None:
    """ConfigError unless num_tasks >= 1 divides num_classes >= 1 (every task gets as many classes),
    listing the numbers of tasks that would."""
    if num_classes < 1:
        raise ConfigError(f"num_classes={num_classes} must be at least 1")
    if num_tasks < 1 or num_classes % num_tasks:
        allowed = ", ".join(str(d) for d in range(1, num_classes + 1) if num_classes % d == 0)
        raise ConfigError(f"num_tasks={num_tasks} does not divide num_classes={num_classes} (allowed: {allowed})")
