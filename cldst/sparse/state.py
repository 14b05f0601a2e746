"""Per-task masks over one shared set of weights: the continual dynamic-sparse-training engine.

Representation (what keeps the hot path a plain dense step). For every maskable layer:

    param          the EFFECTIVE weight of the current task: 0 outside the task's mask, the frozen
                   value at frozen positions inside it, the trainable value at free positions inside it.
                   The forward pass is an ordinary dense conv/linear (no mask multiply) and
                   `param.grad` is the dense gradient of the effective weight, what gradient growth ranks.
    values         the bank: frozen values at frozen positions, initial random values elsewhere.
    frozen         bool, positions trained by a finished task (the union of the finished masks).
    mask           bool, the current task's mask (exactly k_l ones); after `end_task` the last mask.
    fired          bool, positions active at any time during the current task.
    zeroed         bool, frozen positions in the mask that read 0 while the task trains (reuse="authors"
                   only: a frozen position grown back during the task); empty otherwise.
    _train_mask    float (mask & ~frozen) and _frozen_part float (values where mask & frozen & ~zeroed,
                   else +0.0), refreshed only when a mask changes; `after_step` is two foreach ops with them.

How a task reuses frozen weights during topology updates (`reuse`). Every rule lets a task read
frozen weights in its forward pass and train only free ones (paper, Fig. 1); they differ in how the
drop and the growth treat frozen positions:
    static     only the free positions are dropped and regrown; the frozen positions of the initial
               draw stay, at their values, for the whole task: magnitude drop never trades the task's
               fresh free weights (grown at 0) for large frozen values, so the trainable share of the
               mask cannot shrink. (default: chosen by measurement, docs/authors_code.md)
    separate   the mask's frozen and free positions are dropped and regrown each within their own
               count, fixed when the task's mask is drawn. A grown frozen position is reused at its
               frozen value (it enters the forward pass at full strength: measured, this costs 10-12
               points of ACC against `static`).
    value      one drop and one growth over the whole mask, a grown frozen position reused at its
               value: magnitude drop prefers large frozen values to fresh free weights, so the mask
               ratchets into frozen positions and little of it stays trainable (kept to measure it).
    authors    as `value`, but a frozen position grown back during the task reads 0 (and cannot train)
               until it is dropped again, while the stored mask keeps it, so evaluation sees its frozen
               value: the evaluated subnetwork is not the trained one (the authors' code).

A training step is: forward, backward, then `step(optimizer, step)`, which is `prepare_grads()`,
`optimizer.step()`, `after_step()`, `maybe_update(step, optimizer)` in this order. `after_step` computes param * train_mask + frozen_part, which undoes
whatever the optimizer (gradient, momentum, weight decay) did to a frozen or inactive position: for a
finite x, x * 0 is ±0 and ±0 + v == v bit for bit (v != 0); inactive positions read +0.0. A frozen
value of exactly -0.0 may come back as +0.0 (equal as numbers). NaN or inf written by a diverged
optimizer survive (NaN * 0 is NaN) and the current task's weights are lost, but the bank is never
written at frozen positions, so every earlier task's subnetwork stays intact.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from cldst.errors import check_choice
from cldst.masks_file import load_masks, save_masks  # noqa: F401  (the record's masks file; re-exported)
from cldst.sparse import DROP_COUNTS, FROZEN_GRADS, NEW_WEIGHTS, REUSES, SCORE_FILLS
from cldst.sparse.criteria import GrowthContext
from cldst.sparse.density import layer_counts, layer_densities, normalize_init
from cldst.sparse.registry import get_drop, get_growth
from cldst.sparse.schedule import GrowthSchedule, check_update_schedule, drop_fraction, is_update_step

log = logging.getLogger(__name__)

STATE_FORMAT = "cldst-sparsity-v2"

Masks = dict[str, Tensor]  # layer name -> bool tensor of the layer's shape


# ---------------------------------------------------------------------- reuse rules
@dataclass(frozen=True)
class ReuseRule:
    """How topology updates treat the frozen positions of a task's mask (module docstring: `reuse`)."""

    parts: Callable[[Tensor], list[tuple[Tensor | None, bool]]]  # frozen -> [(positions | None: all, updated?)]
    zero_regrown_frozen: bool = False  # a frozen position grown back during the task reads 0 (authors)


def _whole_mask(frozen: Tensor) -> list[tuple[Tensor | None, bool]]:
    return [(None, True)]  # one drop and one growth over all positions


def _free_part_only(frozen: Tensor) -> list[tuple[Tensor | None, bool]]:
    return [(~frozen, True), (frozen, False)]  # the frozen positions of the draw stay


def _free_and_frozen_apart(frozen: Tensor) -> list[tuple[Tensor | None, bool]]:
    return [(~frozen, True), (frozen, True)]  # each part within its own count


REUSE_RULES = {
    "static": ReuseRule(_free_part_only),
    "separate": ReuseRule(_free_and_frozen_apart),
    "value": ReuseRule(_whole_mask),
    "authors": ReuseRule(_whole_mask, zero_regrown_frozen=True),
}
assert tuple(REUSE_RULES) == REUSES, "cldst.sparse.REUSES names the rules of this table, in order"


def task_seed(seed: int, task: int) -> int:
    """Seed of task `task`'s generator: a well-mixed function of (seed, task), in [0, 2**63)."""
    state = np.random.SeedSequence([seed % 2**64, task]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class ContinualSparsity:
    """Masks, frozen set and topology updates of a sequence of tasks over `params` (see module doc).

    params: the maskable weights by name (conv and linear weights, no biases), on one device.
    density, init: each task's mask holds k_l = round(d_l * numel_l) ones per layer (init: uniform | ERK).
    growth: a criterion name or a GrowthSchedule spec ("0:random,5:gradient", "random,free<0.4:gradient").
    drop: the drop criterion. update_frequency, alpha, t_end, drop_min: the topology-update schedule.
    frozen_grad: "zero" zeroes gradients (and growth scores) at frozen positions, so gradient and
        momentum growth never rank them while random growth can (the authors' code); "keep" scores them.
    new_weights: "random" starts a task's free weights at their initial values; "zero" starts them at 0
        from task 1 on (the authors' code). Grown free weights always start at 0 (RigL).
    reset_grown_moments: zero the optimizer's per-weight state (Adam moments) at newly grown positions.
    seed: with the task index, seeds every random draw (initial masks, random growth).
    reuse: how topology updates treat frozen positions (module docstring).
    drop_count: "round" drops round(f * k) of a layer's (or part's) k active positions per update,
        "ceil" drops ceil(f * k) (the authors' code).
    score_fill: when fewer candidates have a non-zero growth score than are to be grown, "random"
        fills from the zero-score candidates uniformly (exact counts), "authors" takes the top of a
        full sort of the masked scores, re-picking active positions: fewer grow and the density leaks.
    update_at_end: also update at the task's last step when it is a multiple of update_frequency.
    """

    def __init__(
        self,
        params: Mapping[str, nn.Parameter],
        *,
        density: float,
        init: str = "ERK",
        growth: str | GrowthSchedule = "random",
        drop: str = "magnitude",
        update_frequency: int = 100,
        alpha: float = 0.5,
        t_end: float = 1.0,
        drop_min: float = 0.0,
        frozen_grad: str = "zero",
        new_weights: str = "random",
        seed: int = 0,
        reset_grown_moments: bool = False,
        reuse: str = "static",
        drop_count: str = "round",
        score_fill: str = "random",
        update_at_end: bool = False,
    ) -> None:
        _check_options(update_frequency, alpha, t_end, drop_min, frozen_grad, new_weights)
        for field, value, allowed in (("reuse", reuse, REUSES), ("drop_count", drop_count, DROP_COUNTS),
                                      ("score_fill", score_fill, SCORE_FILLS)):
            check_choice(field, value, allowed)
        self.params: dict[str, nn.Parameter] = _check_params(params)
        shapes = {name: tuple(p.shape) for name, p in self.params.items()}
        self.init = normalize_init(init)
        self.density = float(density)
        self.densities = layer_densities(shapes, density, self.init)
        self.counts = layer_counts(shapes, density, self.init)  # k_l: ones in every task's mask
        self.schedule = GrowthSchedule.parse(growth)
        self.drop = drop
        self.drop_fn = get_drop(drop)
        self.update_frequency, self.alpha, self.t_end, self.drop_min = update_frequency, alpha, t_end, drop_min
        self.frozen_grad, self.new_weights, self.seed = frozen_grad, new_weights, seed
        self.reset_grown_moments = reset_grown_moments
        self.reuse, self.drop_count, self.score_fill = reuse, drop_count, score_fill
        self.update_at_end = bool(update_at_end)
        empty = [name for name, k in self.counts.items() if k == 0]
        if empty:
            log.warning("density %g (%s) leaves no weight in layers %s", density, self.init, ", ".join(empty))

        with torch.no_grad():
            self.values: dict[str, Tensor] = {name: p.detach().clone() for name, p in self.params.items()}
        self.frozen: Masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in self.params.items()}
        self.mask: Masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in self.params.items()}
        self.fired: Masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in self.params.items()}
        self.zeroed: Masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in self.params.items()}
        # Host-side active counts of the current mask per layer and part ([all] or [free, frozen]):
        # the drop counts need no device sync; exact growth keeps them, a leaky fill lowers them.
        self.active: dict[str, list[int]] = {}
        self.part_sizes: dict[str, list[int]] = {}  # positions in each part (constant within a task)
        self.masks: list[Masks] = []  # finished tasks' masks; never modified again
        self.reused: list[dict[str, int]] = []  # per finished task: positions of its mask frozen before it
        self.task: int | None = None  # the current task, or the last one begun
        self.in_task = False
        self.current_growth: str | None = None
        self.total_steps = 0
        self.generator: torch.Generator | None = None
        self._refresh_all()

    # ------------------------------------------------------------------ hot path
    def _refresh(self, name: str) -> None:
        """Rebuild the float masks of one layer after its mask or frozen set changed."""
        p, mask, frozen = self.params[name], self.mask[name], self.frozen[name]
        self._train_mask[name] = torch.empty_like(p).copy_(mask & ~frozen)  # same strides as p: fast foreach
        shown = mask & frozen & ~self.zeroed[name]
        self._frozen_part[name] = torch.empty_like(p).copy_(torch.where(shown, self.values[name], 0.0))
        self._not_frozen[name] = torch.empty_like(p).copy_(~frozen)

    def _refresh_all(self) -> None:
        self._train_mask: dict[str, Tensor] = {}
        self._frozen_part: dict[str, Tensor] = {}
        self._not_frozen: dict[str, Tensor] = {}
        for name in self.params:
            self._refresh(name)

    @torch.no_grad()
    def prepare_grads(self) -> None:
        """Before optimizer.step(): with frozen_grad="zero", zero the gradients at frozen positions."""
        if self.frozen_grad != "zero" or not self.masks:  # nothing is frozen during task 0
            return
        pairs = [(p.grad, self._not_frozen[name]) for name, p in self.params.items() if p.grad is not None]
        if pairs:
            grads, keep = zip(*pairs)
            torch._foreach_mul_(list(grads), list(keep))

    @torch.no_grad()
    def after_step(self) -> None:
        """After optimizer.step(): param = param * (mask & ~frozen) + values * (mask & frozen)."""
        params = list(self.params.values())
        torch._foreach_mul_(params, list(self._train_mask.values()))
        torch._foreach_add_(params, list(self._frozen_part.values()))

    # ------------------------------------------------------------------ task life cycle
    def begin_task(self, task: int, total_steps: int) -> None:
        """Draw task `task`'s mask (exactly k_l ones per layer, uniform over all positions, free or
        frozen) and set every param to the task's effective weight."""
        if self.in_task:
            raise RuntimeError(f"begin_task({task}) while task {self.task} is running: call end_task() first")
        if task != len(self.masks):
            raise ValueError(f"begin_task({task}): tasks run in order 0, 1, 2, ... and the next one is {len(self.masks)}")
        if total_steps < 1:
            raise ValueError(f"total_steps={total_steps} must be >= 1 (optimizer steps of the task)")
        self._follow_device()
        free = self.free_fraction()
        self.current_growth = self.schedule.growth_for(task, free)
        self._grow_fn = get_growth(self.current_growth)
        device = next(iter(self.params.values())).device
        self.generator = torch.Generator(device=device).manual_seed(task_seed(self.seed, task))
        start_free_at_zero = self.new_weights == "zero" and task > 0
        with torch.no_grad():
            for name, p in self.params.items():
                chosen = torch.randperm(p.numel(), generator=self.generator, device=device)[: self.counts[name]]
                mask = torch.zeros(p.numel(), dtype=torch.bool, device=device)
                mask[chosen] = True
                mask = mask.view(p.shape)
                keep = mask & self.frozen[name] if start_free_at_zero else mask
                p.copy_(torch.where(keep, self.values[name], 0.0))
                self.mask[name], self.fired[name] = mask, mask.clone()
                self.zeroed[name] = torch.zeros_like(mask)
                self._refresh(name)
        self.task, self.in_task, self.total_steps = task, True, total_steps
        self._count_active()
        self._check_counts(f"begin_task({task})")
        log.debug("task %d begins: growth %s, free fraction %.3f", task, self.current_growth, free)

    def step(self, optimizer: torch.optim.Optimizer, step: int, *, update: bool = True) -> dict[str, Any] | None:
        """One optimizer step of the running task, after backward(): zero the frozen gradients (if
        frozen_grad="zero"), optimizer.step(), restore frozen and inactive weights, then the topology
        update if `step` (1-based within the task) is an update step (update=False leaves it to the
        caller, as the tutorial does to show it). Returns the update's statistics or None."""
        self.prepare_grads()
        optimizer.step()
        self.after_step()
        return self.maybe_update(step, optimizer) if update else None

    def maybe_update(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any] | None:
        """The topology update, if `step` (1-based, after the step's optimizer.step) is an update step."""
        if not self.in_task:
            raise RuntimeError("maybe_update() outside a task: call begin_task() first")
        if not is_update_step(step, self.update_frequency, self.total_steps, self.t_end, self.update_at_end):
            return None
        return {"step": step, **self.update_topology(self.drop_fraction(step), optimizer)}

    def drop_fraction(self, step: int) -> float:
        """f(step) of the running task's cosine schedule (see cldst.sparse.schedule)."""
        return drop_fraction(step, self.total_steps, alpha=self.alpha, t_end=self.t_end, minimum=self.drop_min)

    def set_growth(self, growth: str) -> None:
        """Switch the running task's growth criterion (a registered name); later tasks follow the schedule."""
        if not self.in_task:
            raise RuntimeError("set_growth() outside a task: call begin_task() first")
        self._grow_fn = get_growth(growth)
        self.current_growth = growth

    @torch.no_grad()
    def planned_drop(self, step: int) -> Masks:
        """The positions the topology update at `step` would drop, per layer, as update_topology
        computes them (nothing changes; all-False where the layer is left alone)."""
        plans = self._drop_plan(self.drop_fraction(step))
        return {name: plans[name][0] if name in plans else torch.zeros_like(mask) for name, mask in self.mask.items()}

    def _drop_plan(self, fraction: float) -> dict[str, tuple[Tensor, list[tuple[Tensor | None, int]], list[Tensor]]]:
        """Per layer with something to drop: (all dropped positions, [(part, count dropped)], contract
        checks). n = round(fraction * k) (or ceil, `drop_count`) for the k active positions of the
        layer or part; a drop criterion may take the ties at its cut too (count >= n)."""
        leaky = self.score_fill == "authors"
        out = {}
        for name, p in self.params.items():
            mask = self.mask[name]
            dropped_all, plans, checks = torch.zeros_like(mask), [], []
            for (part, updated), active, size in zip(self._parts(name), self.active[name], self.part_sizes[name]):
                n = self._drop_n(fraction, active) if updated else 0
                if n == 0 or (active == size and not leaky):
                    continue  # a full layer (part) would regrow exactly what it dropped
                in_part = mask if part is None else mask & part
                dropped = self.drop_fn(n, in_part, p.detach())  # by the effective magnitude
                count = int(dropped.sum())
                checks.append((dropped & ~in_part).any() | (count < n))  # on the masks' device
                dropped_all |= dropped
                plans.append((part, count))
            if plans:
                out[name] = (dropped_all, plans, checks)
        return out

    @torch.no_grad()
    def update_topology(self, fraction: float, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
        """Drop n active positions of every layer (or of each part: see `reuse`) and grow as many.

        Candidates for growth are the positions of the layer (part) inactive after the drop (see
        _drop_plan for n). A position dropped and regrown in the same update never left the mask and
        keeps its weight (as in RigL); a newly grown free position starts at 0, a newly grown frozen
        one at its frozen value (reused, still frozen; reuse="authors": at 0); dropped positions read
        0. Returns counts summed over layers and the trainable share of the mask after the update."""
        if not self.in_task:
            raise RuntimeError("update_topology() outside a task: call begin_task() first")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction={fraction} must be in [0, 1]")
        eps_of = _adam_eps(optimizer)
        leaky = self.score_fill == "authors"
        dropped_total, tallies, broken = 0, [], []
        for name, (dropped_all, plans, checks) in self._drop_plan(fraction).items():
            p, mask, frozen = self.params[name], self.mask[name], self.frozen[name]
            broken += checks
            kept = mask & ~dropped_all
            ctx = self._context(name, p, optimizer, eps_of)
            grown = torch.zeros_like(mask)
            for part, n in plans:
                candidates = ~kept if part is None else part & ~kept
                picked = self._grow_fn(n, candidates, ctx)
                count = picked.sum()
                broken.append((picked & ~candidates).any() | ((count > n) if leaky else (count != n)))
                grown |= picked
                dropped_total += n
            added = grown & ~mask  # newly active; grown & dropped positions simply stay
            p.masked_fill_(added & ~frozen, 0.0)  # grown free weights start at 0
            new_mask = kept | grown
            if REUSE_RULES[self.reuse].zero_regrown_frozen:  # a frozen position grown back reads 0 until dropped
                self.zeroed[name] = (self.zeroed[name] & new_mask) | (added & frozen)
            self.mask[name] = new_mask
            self.fired[name] |= grown
            self._refresh(name)
            p.mul_(self._train_mask[name]).add_(self._frozen_part[name])  # removed -> 0, added frozen -> value
            if self.reset_grown_moments and optimizer is not None:
                for value in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        value.masked_fill_(added, 0.0)
            tallies.append(torch.stack([grown.sum(), (grown & dropped_all).sum(), (added & frozen).sum()]))
        if broken and bool(torch.stack(broken).any()):
            raise RuntimeError(
                f"drop {self.drop!r} / growth {self.current_growth!r} broke their contract "
                "(drop n or more active positions, grow as many among the candidates)"
            )
        if leaky:
            self._count_active()  # fewer may have grown than were dropped
        self._check_counts("update_topology")
        grown, regrown, grown_frozen = torch.stack(tallies).sum(0).tolist() if tallies else (0, 0, 0)
        return {"drop_fraction": fraction, "dropped": dropped_total, "grown": grown, "regrown": regrown,
                "grown_frozen": grown_frozen, "trainable_share": self.trainable_share()}

    def _parts(self, name: str) -> list[tuple[Tensor | None, bool]]:
        """(positions or None for the whole layer, whether updates change it): the parts of a layer
        whose active counts topology updates keep (the reuse rule's)."""
        return REUSE_RULES[self.reuse].parts(self.frozen[name])

    def _drop_n(self, fraction: float, active: int) -> int:
        if self.drop_count == "ceil":
            return min(active, math.ceil(fraction * active))
        return round(fraction * active)

    def _count_active(self) -> None:
        """Recount the active positions and the sizes of every layer's parts (one device sync). Every
        count is made on the masks' device (a whole layer's size too): tensors from torch.tensor() would
        sit on the default device, and torch.stack refuses to mix devices."""
        parts = {name: self._parts(name) for name in self.params}
        whole = {name: torch.ones_like(mask) for name, mask in self.mask.items()}
        sums = [torch.stack([(self.mask[name] & (whole[name] if part is None else part)).sum(),
                             (whole[name] if part is None else part).sum()])
                for name in self.params for part, _ in parts[name]]
        flat = iter(torch.stack(sums).tolist())
        counted = {name: [next(flat) for _ in parts[name]] for name in self.params}
        self.active = {name: [active for active, _ in pairs] for name, pairs in counted.items()}
        self.part_sizes = {name: [size for _, size in pairs] for name, pairs in counted.items()}

    def trainable_share(self) -> float:
        """Share of the current mask's positions that the task trains (free ones), over all layers."""
        trainable = torch.stack([(m & ~f).sum() for m, f in zip(self.mask.values(), self.frozen.values())]).sum()
        total = sum(sum(counts) for counts in self.active.values())
        return float(trainable) / total if total else math.nan

    def _context(self, name: str, p: Tensor, optimizer: torch.optim.Optimizer | None, eps_of: dict) -> GrowthContext:
        state = optimizer.state.get(p, {}) if optimizer is not None else {}
        grad, exp_avg, exp_avg_sq = p.grad, state.get("exp_avg"), state.get("exp_avg_sq")
        if self.frozen_grad == "zero" and self.masks:
            # Frozen positions get no score. The gradient is already zero there (prepare_grads), but
            # Adam's weight decay feeds wd * value into the moments of frozen positions in the mask.
            keep = self._not_frozen[name]
            grad = None if grad is None else grad * keep
            exp_avg = None if exp_avg is None else exp_avg * keep
        return GrowthContext(
            weight=p.detach(), grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, fired=self.fired[name],
            generator=self.generator, eps=eps_of.get(id(p), 1e-8), frozen=self.frozen[name], fill=self.score_fill,
        )

    @torch.no_grad()
    def end_task(self) -> None:
        """Store the task's mask; its free weights (as trained) go to the bank and become frozen."""
        if not self.in_task:
            raise RuntimeError("end_task() without a running task: call begin_task() first")
        self._check_counts(f"end_task() of task {self.task}")
        reused = {}
        for name, p in self.params.items():
            mask, frozen = self.mask[name], self.frozen[name]
            self.values[name].copy_(torch.where(mask & ~frozen, p, self.values[name]))
            reused[name] = (mask & frozen).sum()
            self.frozen[name] = frozen | mask
            self.zeroed[name] = torch.zeros_like(mask)
            p.copy_(torch.where(mask, self.values[name], 0.0))  # the stored subnetwork (reuse="authors": frozen values back)
            self._refresh(name)  # nothing is trainable any more; after_step keeps this task's weights
        self.masks.append({name: mask.clone() for name, mask in self.mask.items()})
        self.reused.append(dict(zip(reused, torch.stack(list(reused.values())).tolist())))
        self.in_task = False

    @contextlib.contextmanager
    def use_task(self, task: int) -> Iterator[None]:
        """Within the block the params hold task `task`'s subnetwork (values at its mask, 0 elsewhere)
        exactly as trained; the running task is left as it is. Restores the params on exit."""
        if self.in_task and task == self.task:
            yield
            return
        if not 0 <= task < len(self.masks):
            raise ValueError(f"task {task} has no finished mask (finished tasks: {len(self.masks)})")
        with torch.no_grad():
            saved = [p.detach().clone() for p in self.params.values()]
            for name, p in self.params.items():
                p.copy_(torch.where(self.masks[task][name], self.values[name], 0.0))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, old in zip(self.params.values(), saved):
                    p.copy_(old)

    # ------------------------------------------------------------------ queries
    def free_fraction(self) -> float:
        """Fraction of all maskable positions that no finished task trained."""
        used = sum(int(frozen.sum()) for frozen in self.frozen.values())
        return 1.0 - used / sum(p.numel() for p in self.params.values())

    def capacity(self) -> pd.DataFrame:
        """Per layer (and "all"): used, free, reused by the last finished task (see capacity_table)."""
        from cldst.sparse.capacity import capacity_table

        return capacity_table(self)

    def check_invariants(self) -> None:
        """Raise AssertionError unless every invariant of the representation holds (for tests; syncs)."""
        self._check_counts("check_invariants")
        for name, p in self.params.items():
            mask, frozen = self.mask[name], self.frozen[name]
            zeroed = self.zeroed[name]
            if (p[~mask] != 0).any():
                raise AssertionError(f"{name}: non-zero weight outside the mask")
            shown = mask & frozen & ~zeroed
            if not torch.equal(p[shown], self.values[name][shown]):
                raise AssertionError(f"{name}: a frozen weight in the mask differs from its frozen value")
            if (zeroed & ~(mask & frozen)).any() or (p[zeroed] != 0).any():
                raise AssertionError(f"{name}: a zeroed position is not a frozen one of the mask reading 0")
            union = torch.zeros_like(frozen)
            for finished in self.masks:
                union |= finished[name]
            if not torch.equal(union, frozen):
                raise AssertionError(f"{name}: frozen is not the union of the finished masks")
            if self.in_task and (mask & ~self.fired[name]).any():
                raise AssertionError(f"{name}: an active position is not marked fired")
            if self.in_task:
                counts = [int(mask.sum()) if part is None else int((mask & part).sum()) for part, _ in self._parts(name)]
                if counts != self.active[name]:
                    raise AssertionError(f"{name}: active counts per part {counts} != tracked {self.active[name]}")

    def _check_counts(self, where: str) -> None:
        """Exact per-layer counts of the current mask (one host sync)."""
        if self.task is None:
            return
        sums = torch.stack([mask.sum() for mask in self.mask.values()]).tolist()
        leaky = self.score_fill == "authors"  # counts may only fall
        wrong = {name: (got, self.counts[name]) for name, got in zip(self.mask, sums)
                 if (got > self.counts[name] if leaky else got != self.counts[name])}
        if wrong:
            raise AssertionError(f"{where}: mask counts (got, expected) differ: {wrong}")

    def _follow_device(self) -> None:
        """Move the bookkeeping to the params' device if the model was moved after construction."""
        device = next(iter(self.params.values())).device
        if self.values[next(iter(self.values))].device == device:
            return
        for store in (self.values, self.frozen, self.mask, self.fired, self.zeroed, *self.masks):
            for name in store:
                store[name] = store[name].to(device)
        self._refresh_all()

    def __repr__(self) -> str:
        running = f", task {self.task} running ({self.current_growth})" if self.in_task else ""
        return (
            f"ContinualSparsity({len(self.params)} layers, {self.init} density {self.density:g}, "
            f"growth {self.schedule}, {len(self.masks)} finished tasks{running})"
        )

    # ------------------------------------------------------------------ persistence
    def save_masks(self, path: str | Path) -> None:
        """Write the finished tasks' masks, bit-packed (read them back with `load_masks`)."""
        save_masks(self.masks, path)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (the params themselves belong to the model's state_dict)."""
        return {
            "format": STATE_FORMAT,
            "counts": dict(self.counts),
            "values": {name: v.clone() for name, v in self.values.items()},
            "frozen": {name: f.clone() for name, f in self.frozen.items()},
            "mask": {name: m.clone() for name, m in self.mask.items()},
            "fired": {name: f.clone() for name, f in self.fired.items()},
            "zeroed": {name: z.clone() for name, z in self.zeroed.items()},
            "active": {name: list(counts) for name, counts in self.active.items()},
            "part_sizes": {name: list(sizes) for name, sizes in self.part_sizes.items()},
            "masks": [{name: m.clone() for name, m in task.items()} for task in self.masks],
            "reused": [dict(r) for r in self.reused],
            "task": self.task,
            "in_task": self.in_task,
            "current_growth": self.current_growth,
            "total_steps": self.total_steps,
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict()` taken from a ContinualSparsity with the same layers and counts."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a ContinualSparsity state (format {state.get('format')!r}, expected {STATE_FORMAT!r})")
        if dict(state["counts"]) != self.counts:
            raise ValueError("the state was saved with other layers or per-layer counts (density/init)")
        device = next(iter(self.params.values())).device

        def load(stored: Mapping[str, Tensor]) -> Masks:
            return {name: stored[name].to(device).clone() for name in self.params}

        self.values, self.frozen, self.mask, self.fired, self.zeroed = (
            load(state[key]) for key in ("values", "frozen", "mask", "fired", "zeroed"))
        self.active = {name: list(counts) for name, counts in state["active"].items()}
        self.part_sizes = {name: list(sizes) for name, sizes in state["part_sizes"].items()}
        self.masks = [load(task) for task in state["masks"]]
        self.reused = [dict(r) for r in state["reused"]]
        self.task, self.in_task = state["task"], state["in_task"]
        self.current_growth, self.total_steps = state["current_growth"], state["total_steps"]
        self.generator = None
        if state["generator"] is not None:
            self.generator = torch.Generator(device=device)
            self.generator.set_state(state["generator"])
        if self.current_growth is not None:
            self._grow_fn = get_growth(self.current_growth)
        self._refresh_all()
        self._check_counts("load_state_dict")


# ---------------------------------------------------------------------- validation
def _check_options(update_frequency, alpha, t_end, drop_min, frozen_grad, new_weights) -> None:
    check_update_schedule(update_frequency, alpha, drop_min, t_end)
    check_choice("frozen_grad", frozen_grad, FROZEN_GRADS)
    check_choice("new_weights", new_weights, NEW_WEIGHTS)


def _check_params(params: Mapping[str, nn.Parameter]) -> dict[str, nn.Parameter]:
    params = dict(params)
    if not params:
        raise ValueError("no parameters to mask")
    if len({id(p) for p in params.values()}) != len(params):
        raise ValueError("the same tensor appears under two names")
    if len({p.device for p in params.values()}) != 1:
        raise ValueError("all masked parameters must be on one device")
    for name, p in params.items():
        if not p.is_floating_point():
            raise ValueError(f"parameter {name!r} is {p.dtype}, not floating point")
    return params


def _adam_eps(optimizer: torch.optim.Optimizer | None) -> dict[int, float]:
    """id(param) -> the eps of its param group (for the momentum score)."""
    if optimizer is None:
        return {}
    return {id(p): group.get("eps", 1e-8) for group in optimizer.param_groups for p in group["params"]}
