"""Helpers of the tutorial notebooks (notebooks/tutorial_*.ipynb): tiny demos and the plots they show.

The tutorials step through continual dynamic sparse training (Yildirim et al., CPAL 2024) on the
embedded synth100 dataset at tutorial scale (a width-8 ResNet-18 at 16 px, a few images per class),
so each runs in about a minute on a laptop CPU. Every function here either builds one of those small
demos from the real package pieces (Config, Trainer, ContinualSparsity, metrics) or turns their state
into a table or a figure; the notebooks hold one-line calls and the explanations.

    1 sparse init        resnet18_shapes, init_table, plot_init_densities, dense_layers, count_totals,
                         connections_per_unit
    2 drop and grow      start_task0, update_with_each_growth, update_counts, update_summary,
                         plot_update, plot_drop_schedule
    3 masks over tasks   learn_task, task_weights, compare_weights, new_vs_reused, plot_new_vs_reused,
                         expected_overlap, short_names (overlaps: cldst.sparse.overlap_matrix, plot_matrix)
    4 metrics            plot_matrix, bwt_terms, fwt_terms, compare_metrics, plot_incremental
    all                  tiny_config (the tutorial-scale Config), plain (values a test can read back)
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import Tensor

from cldst.config import Config
from cldst.data import train_batches
from cldst.errors import ConfigError
from cldst.experiments import GROWTHS
from cldst.models import build_model, param_shapes
from cldst.plotting import INIT_COLORS, growth_color
from cldst.sparse import (
    INITS,
    ContinualSparsity,
    capacity_over_tasks,
    density_table,
    drop_fraction,
    is_update_step,
)
from cldst.sparse.registry import check_name
from cldst.train import Trainer

# Tutorial scale: ~50 steps per task, about a minute per notebook on a 2-core CPU. With so few steps the
# paper's lr 1e-3 learns too little; 3e-3 gets the tiny network well above chance in that budget.
TINY: dict[str, Any] = dict(
    dataset="synth100", image_size=16, width=8, train_per_class=300, test_per_class=20, batch_size=64,
    epochs=1, lr=0.003, update_frequency=15, variant="cifar", device="cpu", progress=False,
)  # fmt: skip
SPARSITIES = (0.8, 0.9, 0.95)  # the paper's three levels (density 0.2, 0.1, 0.05)


def tiny_config(**overrides: Any) -> Config:
    """A validated Config at tutorial scale (TINY), with `overrides` applied."""
    return Config(**{**TINY, **overrides}).validate()


def short_name(name: str) -> str:
    """'backbone.layer2.0.shortcut.0.weight' -> 'layer2.0.shortcut'; the first conv is 'stem'."""
    name = name.removeprefix("backbone.").removesuffix(".weight").replace("shortcut.0", "shortcut")
    return "stem" if name == "conv1" else name


def short_names(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of `table` with its `layer` column shortened (see short_name)."""
    return table.assign(layer=[short_name(str(name)) for name in table["layer"]])


# ====================================================================== 1. sparse init
def resnet18_shapes(width: int = 64, num_classes: int = 100, num_tasks: int = 10) -> dict[str, tuple[int, ...]]:
    """Shapes of the maskable weights (convs and the shared head) of the CIFAR ResNet-18."""
    return param_shapes(build_model("resnet18", num_classes=num_classes, num_tasks=num_tasks, width=width))


def init_table(
    shapes: Mapping[str, Sequence[int]], sparsities: Iterable[float] = SPARSITIES, inits: Iterable[str] = INITS
) -> pd.DataFrame:
    """Long table, one row per (init, sparsity, layer): shape, numel, density d_l, count k_l, dense."""
    parts = []
    for init, sparsity in itertools.product(inits, sparsities):
        table = short_names(density_table(shapes, round(1.0 - sparsity, 10), init))
        parts.append(table.assign(init=init, sparsity=sparsity))
    table = pd.concat(parts, ignore_index=True)
    return table[["init", "sparsity", "layer", "shape", "numel", "density", "count", "dense"]]


def plot_init_densities(table: pd.DataFrame) -> Figure:
    """One panel per sparsity: per-layer density of uniform and ERK side by side (from init_table)."""
    sparsities = sorted(table["sparsity"].unique())
    inits = list(dict.fromkeys(table["init"]))
    layers = list(dict.fromkeys(table["layer"]))
    fig, axes = plt.subplots(len(sparsities), 1, figsize=(12, 2.6 * len(sparsities)), sharex=True,
                             constrained_layout=True, squeeze=False)  # fmt: skip
    x, width = np.arange(len(layers)), 0.8 / len(inits)
    for ax, sparsity in zip(axes[:, 0], sparsities):
        for i, init in enumerate(inits):
            rows = table[(table["sparsity"] == sparsity) & (table["init"] == init)].set_index("layer")
            ax.bar(x + (i - (len(inits) - 1) / 2) * width, rows.loc[layers, "density"], width,
                   label=init, color=INIT_COLORS.get(init))  # fmt: skip
        ax.axhline(1.0 - sparsity, color="black", linestyle="--", linewidth=0.8)
        ax.set(ylabel="layer density", ylim=(0, 1.3), yticks=[0, 0.25, 0.5, 0.75, 1.0],
               title=f"{sparsity:.0%} sparsity (density {1 - sparsity:.2f}, dashed)")  # fmt: skip
        ax.legend(loc="upper center", ncol=len(inits))
    axes[-1, 0].set_xticks(x, layers, rotation=60, ha="right")
    return fig


def dense_layers(table: pd.DataFrame, init: str = "ERK") -> pd.DataFrame:
    """The layers `init` makes dense at some sparsity of `table`, with their density at each (1 = dense)."""
    part = table[table["init"] == init]
    names = list(dict.fromkeys(part.loc[part["dense"], "layer"]))
    wide = part[part["layer"].isin(names)].pivot_table(index="layer", columns="sparsity", values="density")
    wide.columns = [f"{sparsity:.0%} sparsity" for sparsity in wide.columns]
    return wide.loc[names]


def count_totals(table: pd.DataFrame) -> pd.DataFrame:
    """Per (init, sparsity): d * (all weights), the sum of the k_l, and the difference (rounding only)."""
    rows = []
    for (init, sparsity), part in table.groupby(["init", "sparsity"], sort=False):
        target = (1.0 - sparsity) * part["numel"].sum()
        total = int(part["count"].sum())
        rows.append({"init": init, "sparsity": sparsity, "d * total": target, "sum of k_l": total,
                     "difference": total - target, "layers": len(part)})  # fmt: skip
    return pd.DataFrame(rows)


def connections_per_unit(table: pd.DataFrame, sparsity: float) -> pd.DataFrame:
    """Per layer at one sparsity: fan-in (inputs of one output unit) and the mean number of them a
    task's mask keeps per output unit, k_l / c_out, under each init."""
    part = table[table["sparsity"] == sparsity]
    wide = part.pivot_table(index="layer", columns="init", values="count", sort=False)
    shapes = part.drop_duplicates("layer").set_index("layer")["shape"]
    out = pd.DataFrame({"fan-in": [math.prod(shapes[layer][1:]) for layer in wide.index]}, index=wide.index)
    for init in wide.columns:
        out[f"{init}: kept per unit"] = [wide.loc[layer, init] / shapes[layer][0] for layer in wide.index]
    return out.reset_index()


# ====================================================================== 2. one drop-and-grow update
@dataclass
class Task0Demo:
    """A network part-way through task 0: the real Trainer pieces plus the task's optimizer."""

    trainer: Trainer
    optimizer: torch.optim.Adam
    step: int  # optimizer steps taken in task 0 (the next topology update happens at this step)


def _train_steps(trainer: Trainer, optimizer: torch.optim.Optimizer, task: int, steps: int) -> None:
    """`steps` optimizer steps on `task`, as the Trainer takes them, but for the topology update at the
    last step: that one is left to the caller."""
    cfg, data, sparsity = trainer.cfg, trainer.tasks[task], trainer.sparsity
    epochs = (train_batches(data.train_x, data.train_y, cfg.batch_size, mean=trainer.data.mean,
                            std=trainer.data.std, generator=trainer.generator) for _ in range(cfg.epochs))  # fmt: skip
    for step, (x, y) in enumerate(itertools.islice(itertools.chain.from_iterable(epochs), steps), start=1):
        loss = F.cross_entropy(trainer.net(x, task), y)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        sparsity.step(optimizer, step, update=step < steps)  # the update at `steps` is what the tutorial shows


def start_task0(steps: int | None = None, **overrides: Any) -> Task0Demo:
    """Begin task 0 of a tutorial-scale run and train it up to (not including) its topology update at
    `steps` (default: the first one, at step update_frequency)."""
    trainer = Trainer(tiny_config(**overrides))
    total = trainer.steps_per_task(0)
    steps = trainer.cfg.update_frequency if steps is None else steps
    if not is_update_step(steps, trainer.cfg.update_frequency, total, trainer.cfg.t_end):
        raise ConfigError(
            f"steps={steps} is not a topology-update step: use a multiple of update_frequency="
            f"{trainer.cfg.update_frequency} below {trainer.cfg.t_end * total:g} (this task has {total} steps)"
        )
    trainer.sparsity.begin_task(0, total)
    optimizer = torch.optim.Adam(trainer.net.task_parameters(0), lr=trainer.cfg.lr)
    _train_steps(trainer, optimizer, 0, steps)
    return Task0Demo(trainer, optimizer, steps)


@dataclass
class UpdateDemo:
    """One topology update of a copy of a Task0Demo, with one growth criterion."""

    growth: str
    before: dict[str, Tensor]  # bool mask of every layer before the update
    dropped: dict[str, Tensor]  # bool, the n_l positions the drop criterion removes
    after: dict[str, Tensor]  # bool mask after the update
    counts: dict[str, int]  # k_l, what every mask of the layer must hold
    stats: dict[str, Any]  # maybe_update's statistics (step, drop_fraction, dropped, regrown, grown_frozen)

    def grown(self, layer: str) -> Tensor:
        """The n_l positions the growth criterion picked: active after, not kept through the drop
        (a dropped position may be grown straight back)."""
        return self.after[layer] & ~(self.before[layer] & ~self.dropped[layer])


def update_with_each_growth(demo: Task0Demo, growths: Iterable[str] = GROWTHS) -> dict[str, UpdateDemo]:
    """For each growth criterion: copy the network, its sparsity state and its optimizer, and perform
    the scheduled topology update at demo.step on the copy (the demo itself is left unchanged)."""
    out = {}
    for growth in growths:
        check_name("growth", growth)
        # One deepcopy call keeps the links: sparsity.params and the optimizer state point at the copied net.
        net, sparsity, optimizer = copy.deepcopy((demo.trainer.net, demo.trainer.sparsity, demo.optimizer))
        for copied, original in zip(net.parameters(), demo.trainer.net.parameters()):
            copied.grad = None if original.grad is None else original.grad.clone()  # gradient growth ranks it
        sparsity.set_growth(growth)
        before = {name: mask.clone() for name, mask in sparsity.mask.items()}
        dropped = sparsity.planned_drop(demo.step)
        stats = sparsity.maybe_update(demo.step, optimizer)
        if stats is None:  # start_task0 only stops at update steps
            raise RuntimeError(f"step {demo.step} is not a topology-update step")
        after = {name: mask.clone() for name, mask in sparsity.mask.items()}
        out[growth] = UpdateDemo(growth, before, dropped, after, dict(sparsity.counts), stats)
    return out


def update_counts(updates: Mapping[str, UpdateDemo]) -> pd.DataFrame:
    """One row per growth criterion, summed over layers: active positions before and after the update
    (both must be sum k_l), dropped and grown (n_l per layer each), those grown straight back, and
    whether every single layer held exactly k_l before and after with as many grown as dropped."""
    rows = []
    for growth, u in updates.items():
        layers = list(u.before)
        before = {n: int(u.before[n].sum()) for n in layers}
        after = {n: int(u.after[n].sum()) for n in layers}
        dropped = {n: int(u.dropped[n].sum()) for n in layers}
        grown = {n: int(u.grown(n).sum()) for n in layers}
        exact = all(before[n] == after[n] == u.counts[n] and dropped[n] == grown[n] for n in layers)
        rows.append({
            "growth": growth, "sum k_l": sum(u.counts.values()), "active before": sum(before.values()),
            "dropped": sum(dropped.values()), "grown": sum(grown.values()),
            "grown back at once": sum(int((u.grown(n) & u.dropped[n]).sum()) for n in layers),
            "active after": sum(after.values()), "every layer exact": exact,
        })  # fmt: skip
    return pd.DataFrame(rows)


def update_summary(demo: Task0Demo, updates: Mapping[str, UpdateDemo]) -> dict[str, Any]:
    """Plain numbers of the update: its step, the task's steps, f(step), and per growth criterion the
    positions dropped (= grown), the active positions after it, and whether every layer is exact."""
    first = next(iter(updates.values()))
    exact = update_counts(updates).set_index("growth")["every layer exact"]
    return plain({
        "step": demo.step, "total_steps": demo.trainer.sparsity.total_steps,
        "drop_fraction": first.stats["drop_fraction"],
        "dropped": {growth: u.stats["dropped"] for growth, u in updates.items()},
        "active_after": {growth: sum(int(m.sum()) for m in u.after.values()) for growth, u in updates.items()},
        "every_layer_exact": {growth: exact[growth] for growth in updates},
    })  # fmt: skip


def as_2d(t: Tensor) -> Tensor:
    """A layer's tensor as [out, everything else]: a 1x1 conv [C_out, C_in, 1, 1] becomes [C_out, C_in]."""
    return t.detach().cpu().reshape(t.shape[0], -1)


def plot_update(updates: Mapping[str, UpdateDemo], layer: str) -> Figure:
    """For one layer (flattened to [out, in]): the mask before the update, the positions magnitude
    drop removes, and, per growth criterion, the positions it grows (in the criterion's color)."""
    first = next(iter(updates.values()))
    if layer not in first.before:
        raise ConfigError(f"layer {layer!r} is not masked; masked layers: {', '.join(first.before)}")
    before, dropped = as_2d(first.before[layer]).int(), as_2d(first.dropped[layer]).int()
    kept = before - dropped  # 0/1: active positions the drop leaves
    panels = [("mask before", before, ["white", "#404040"]),
              ("dropped (smallest |w|)", before + dropped, ["white", "#c8c8c8", "black"])]  # fmt: skip
    for growth, u in updates.items():
        color = growth_color(growth)
        panels.append((f"grown: {growth}", kept + 2 * as_2d(u.grown(layer)).int(), ["white", "#c8c8c8", color]))
    rows, cols = before.shape
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 0.9 + 2.6 * rows / max(rows, cols)),
                             constrained_layout=True, squeeze=False)  # fmt: skip
    for ax, (title, image, colors) in zip(axes[0], panels):
        ax.imshow(image.numpy(), cmap=ListedColormap(colors), vmin=0, vmax=len(colors) - 1, interpolation="nearest",
                  aspect="auto")  # fmt: skip
        ax.set(title=title, xticks=[], yticks=[])
    axes[0, 0].set(ylabel=f"{short_name(layer)}: output unit", xlabel="input")
    return fig


def plot_drop_schedule(total_steps: int, update_frequency: int, *, alpha: float = 0.5, t_end: float = 1.0,
                       minimum: float = 0.0, mark: int | None = None) -> Figure:  # fmt: skip
    """The cosine drop fraction over one task's steps, the update steps on it, and optionally one marked."""
    steps = np.arange(total_steps + 1)
    curve = [drop_fraction(int(s), total_steps, alpha=alpha, t_end=t_end, minimum=minimum) for s in steps]
    updates = [s for s in steps if is_update_step(int(s), update_frequency, total_steps, t_end)]
    fig, ax = plt.subplots(figsize=(6, 3), constrained_layout=True)
    ax.plot(steps, curve, color="#404040", label="f(step) = α/2 (1 + cos(π step / T_end))")
    ax.scatter(updates, [curve[s] for s in updates], color="black", zorder=3, label=f"updates (every {update_frequency})")
    if mark is not None:
        ax.scatter([mark], [curve[mark]], s=120, facecolors="none", edgecolors="red", zorder=4, label=f"step {mark}")
    ax.set(xlabel="optimizer step in the task", ylabel="drop fraction", ylim=(0, alpha * 1.05))
    ax.legend(fontsize=8)
    return fig


# ====================================================================== 3. masks across tasks
def learn_task(trainer: Trainer, t: int) -> float:
    """Task t as Trainer.run takes it (draw its mask, train, freeze); returns its test accuracy (%)."""
    trainer.sparsity.begin_task(t, trainer.steps_per_task(t))
    trainer.train_task(t)
    trainer.sparsity.end_task()
    return trainer.evaluate_task(t)


def task_weights(trainer: Trainer, t: int) -> dict[str, Tensor]:
    """Clones of every maskable weight as task t's subnetwork sees them (its values in its mask, 0 elsewhere)."""
    with trainer.sparsity.use_task(t):
        return {name: p.detach().clone() for name, p in trainer.sparsity.params.items()}


def compare_weights(before: Mapping[str, Tensor], after: Mapping[str, Tensor], mask: Mapping[str, Tensor]) -> pd.DataFrame:
    """Per layer: the mask's size, whether the two weight sets are bitwise equal, the largest change."""
    rows = [
        {"layer": short_name(name), "positions": int(mask[name].sum()),
         "torch.equal": torch.equal(before[name], after[name]),
         "max |change|": float((before[name] - after[name]).abs().max())}  # fmt: skip
        for name in before
    ]
    return pd.DataFrame(rows)


def new_vs_reused(masks: Sequence[Mapping[str, Tensor]]) -> pd.DataFrame:
    """Per finished task, over all layers: mask size, positions new to it (free before the task) and
    reused (frozen by an earlier task), and the backbone's used fraction after it."""
    table = capacity_over_tasks(masks)
    table = table[table["layer"] == "all"].reset_index(drop=True)
    return pd.DataFrame({
        "task": table["task"], "mask size": table["count"], "new": table["count"] - table["reused"],
        "reused": table["reused"], "reused share": table["reused"] / table["count"],
        "used after the task": table["used"], "used fraction": table["used_fraction"],
    })  # fmt: skip


def plot_new_vs_reused(table: pd.DataFrame) -> Figure:
    """Stacked bars of new and reused positions per task (from new_vs_reused), with the used fraction."""
    fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
    tasks = table["task"].to_numpy()
    ax.bar(tasks, table["new"], color="#2ca02c", label="new (free before the task)")
    ax.bar(tasks, table["reused"], bottom=table["new"], color="#9e9e9e", label="reused (frozen, read only)")
    ax.set(xlabel="task", ylabel="positions in the task's mask", xticks=tasks)
    used = ax.twinx()
    used.plot(tasks, table["used fraction"], color="black", marker="o", label="backbone used")
    used.set(ylabel="used fraction of all weights", ylim=(0, 1))
    handles = ax.get_legend_handles_labels()[0] + used.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside upper center", ncol=3, fontsize=8)
    return fig


def expected_overlap(sparsity: ContinualSparsity) -> float:
    """The overlap two independent uniformly drawn masks would have: sum_l k_l * d_l / sum_l k_l (a dense
    layer contributes its whole count), the baseline for the entries of overlap_matrix."""
    shared = sum(k * k / sparsity.params[name].numel() for name, k in sparsity.counts.items())
    return shared / sum(sparsity.counts.values())


# ====================================================================== 4. metrics
def plot_matrix(M: np.ndarray, title: str, *, xlabel: str = "evaluated task i", ylabel: str = "after training task t",
                vmax: float = 100.0, fmt: str = "{:.1f}") -> Figure:  # fmt: skip
    """An annotated heatmap of a [T, T] matrix (NaN cells left blank), tasks numbered from 0."""
    M = np.asarray(M, dtype=float)
    T = M.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * T, 0.6 + 0.7 * T), constrained_layout=True)
    im = ax.imshow(M, vmin=0, vmax=vmax, cmap="viridis")
    for (t, i), value in np.ndenumerate(M):
        if not math.isnan(value):
            ax.text(i, t, fmt.format(value), ha="center", va="center", fontsize=8,
                    color="black" if value > 0.6 * vmax else "white")  # fmt: skip
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xticks=range(T), yticks=range(T))
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def bwt_terms(A: np.ndarray) -> pd.DataFrame:
    """The terms of BWT: for every task i but the last, A[i, i] (just learned), A[T-1, i] (at the end)."""
    A = np.asarray(A, dtype=float)
    last = A.shape[0] - 1
    return pd.DataFrame({"task i": range(last), "A[i, i]": np.diag(A)[:last], f"A[{last}, i]": A[last, :last],
                         "difference": A[last, :last] - np.diag(A)[:last]})  # fmt: skip


def fwt_terms(pre: np.ndarray, baseline: np.ndarray) -> pd.DataFrame:
    """The terms of the standard FWT: for every task i >= 1, its accuracy just before training it
    (mask drawn, untrained) and the random network's accuracy on it."""
    pre, baseline = np.asarray(pre, dtype=float), np.asarray(baseline, dtype=float)
    return pd.DataFrame({"task i": range(1, len(pre)), "before training": pre[1:], "random network": baseline[1:],
                         "difference": pre[1:] - baseline[1:]})  # fmt: skip


def compare_metrics(by_hand: Mapping[str, float], recorded: Mapping[str, Any]) -> pd.DataFrame:
    """Side by side: the metrics computed step by step and the run's result.metrics()."""
    rows = [{"metric": name, "by hand": float(value), "result.metrics()": float(recorded[name]),
             "match": math.isclose(value, recorded[name], rel_tol=1e-12, abs_tol=1e-9)}  # fmt: skip
            for name, value in by_hand.items()]
    return pd.DataFrame(rows)


def plot_incremental(A: np.ndarray, chance: float | None = None) -> Figure:
    """Mean accuracy over the tasks seen so far after each task (the paper's curves), and each task's
    own accuracy from the moment it is learned (flat lines: no forgetting); `chance` as a dashed line."""
    A = np.asarray(A, dtype=float)
    T = A.shape[0]
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    for i in range(T):
        ax.plot(range(i, T), A[i:, i], color="#b0b0b0", linewidth=1, marker=".", label="task i over time" if i == 0 else None)
    incremental = [np.mean(A[t, : t + 1]) for t in range(T)]
    ax.plot(range(T), incremental, color="black", marker="o", label="mean over tasks seen")
    if chance is not None:
        ax.axhline(chance, color="black", linestyle="--", linewidth=0.8, label=f"chance ({chance:g}%)")
    ax.set(xlabel="after training task t", ylabel="top-1 accuracy (%)", xticks=range(T), ylim=(0, 100))
    ax.legend(fontsize=8)
    return fig


def plain(value: Any) -> Any:
    """Python floats/ints/lists (NaN -> None) of numpy values: a dict of them prints as a literal."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, pd.Series, list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value
