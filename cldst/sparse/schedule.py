"""When to update the topology, how much of it, and which growth criterion each task uses.

Within a task (steps counted from 1 after each optimizer step):
    update at step s      iff  s % update_frequency == 0  and  0 < s < T_end,  T_end = t_end * total_steps
                          (at_end=True: also at s == T_end, as the authors' code does at a task's last step)
    drop fraction f(s)    =    minimum + (alpha - minimum) / 2 * (1 + cos(pi * s / T_end))   for s <= T_end, else 0
The paper's formula has minimum = 0; the authors' code uses a floor (eta_min) of 0.005. An update at
s == T_end drops the floor's share: weights grown there are never trained (they start at 0).

Across tasks, a `GrowthSchedule` picks the growth criterion of each task from one spec string:
    "random"                      one criterion for every task
    "0:random,5:gradient"         per-task stages: random from task 0, gradient from task 5 on (paper Fig. 6)
    "random,free<0.4:gradient"    capacity switch: random until the backbone's free fraction (maskable
                                  positions no finished task trained) is below 0.4 at the start of a
                                  task, gradient for that task and every later one
Stages and switches may be combined ("0:random,3:unfired,free<0.3:gradient"); a switch whose
threshold is crossed overrides the stages. Switches are sticky because the free fraction never grows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cldst.errors import ConfigError
from cldst.sparse.registry import check_name

FORMS = "a criterion ('random'), per-task stages ('0:random,5:gradient') or a capacity switch ('random,free<0.4:gradient')"


def check_update_schedule(update_frequency: int, drop_fraction: float, drop_fraction_min: float, t_end: float) -> None:
    """ConfigError naming the Config field of the first value a topology-update schedule cannot take
    (ContinualSparsity's alpha is drop_fraction, its drop_min drop_fraction_min)."""
    if isinstance(update_frequency, bool) or not isinstance(update_frequency, int) or update_frequency < 1:
        raise ConfigError(f"update_frequency={update_frequency!r} must be a positive integer (batches between updates)")
    if not 0.0 <= drop_fraction_min <= drop_fraction < 1.0:
        raise ConfigError(f"drop_fraction={drop_fraction}, drop_fraction_min={drop_fraction_min}: "
                          "need 0 <= drop_fraction_min <= drop_fraction < 1")
    if not 0.0 < t_end <= 1.0:
        raise ConfigError(f"t_end={t_end} must be in (0, 1] (fraction of a task's steps with topology updates)")


def drop_fraction(step: int, total_steps: int, *, alpha: float = 0.5, t_end: float = 1.0, minimum: float = 0.0) -> float:
    """Fraction of each layer's active weights dropped (and regrown) at `step`: cosine from alpha to minimum."""
    horizon = t_end * total_steps
    if step > horizon:
        return 0.0
    return minimum + (alpha - minimum) / 2 * (1 + math.cos(math.pi * step / horizon))


def is_update_step(step: int, update_frequency: int, total_steps: int, t_end: float = 1.0, at_end: bool = False) -> bool:
    """True at the steps where the topology is updated: never at step 0, nor after T_end, nor at T_end
    itself unless `at_end`."""
    horizon = t_end * total_steps
    return step % update_frequency == 0 and 0 < step and (step < horizon or (at_end and step == horizon))


_STAGE = re.compile(r"(\d+):(\w+)")  # "5:gradient"
_SWITCH = re.compile(r"free<([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?):(\w+)")  # "free<0.4:gradient"


@dataclass(frozen=True)
class GrowthSchedule:
    """Growth criterion per task: stages by task index, then switches by the backbone's free fraction."""

    stages: tuple[tuple[int, str], ...]  # (first task, criterion), ascending, the first at task 0
    switches: tuple[tuple[float, str], ...] = ()  # (threshold, criterion), strictly descending thresholds

    @classmethod
    def parse(cls, spec: str | GrowthSchedule) -> GrowthSchedule:
        """Parse and validate a spec; ConfigError naming the field `growth` otherwise."""
        if isinstance(spec, GrowthSchedule):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"growth={spec!r} is not valid: use {FORMS}")
        items = re.sub(r"\s+", "", spec).split(",")  # blanks carry no meaning
        stages: list[tuple[int, str]] = []
        switches: list[tuple[float, str]] = []
        for position, item in enumerate(items):
            stage, switch = _STAGE.fullmatch(item), _SWITCH.fullmatch(item)
            if position == 0 and re.fullmatch(r"\w+", item):
                stages.append((0, item))
            elif stage and not switches:
                stages.append((int(stage[1]), stage[2]))
            elif switch:
                switches.append((float(switch[1]), switch[2]))
            else:
                raise ConfigError(f"growth={spec!r} is not valid (at {item!r}): use {FORMS}")
        if not stages:
            raise ConfigError(f"growth={spec!r} names no criterion before its switches: use {FORMS}")
        tasks = [task for task, _ in stages]
        if tasks[0] != 0:
            raise ConfigError(f"growth={spec!r}: per-task stages must start at task 0 (e.g. '0:random,5:gradient')")
        if any(b <= a for a, b in zip(tasks, tasks[1:])):
            raise ConfigError(f"growth={spec!r}: the tasks of per-task stages must increase (e.g. '0:random,5:gradient')")
        thresholds = [threshold for threshold, _ in switches]
        if any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ConfigError(f"growth={spec!r}: a free-fraction threshold must be in (0, 1] (e.g. 'random,free<0.4:gradient')")
        if any(b >= a for a, b in zip(thresholds, thresholds[1:])):
            raise ConfigError(f"growth={spec!r}: free-fraction thresholds must decrease from left to right")
        for _, name in stages + switches:
            check_name("growth", name)  # ConfigError: "growth 'x' is not one of: random, unfired, gradient, momentum"
        return cls(tuple(stages), tuple(switches))

    def growth_for(self, task: int, free_fraction: float) -> str:
        """The criterion of `task`, given the free fraction of the backbone when the task begins."""
        if task < 0:
            raise ValueError(f"task={task} must be >= 0")
        name = next(name for first, name in reversed(self.stages) if first <= task)
        for threshold, switched in self.switches:
            if free_fraction < threshold:
                name = switched
        return name

    @property
    def names(self) -> set[str]:
        """Every criterion the schedule may use."""
        return {name for _, name in self.stages + self.switches}

    def __str__(self) -> str:
        parts = [f"{task}:{name}" for task, name in self.stages] if len(self.stages) > 1 else [self.stages[0][1]]
        return ",".join(parts + [f"free<{threshold:g}:{name}" for threshold, name in self.switches])

