"""How much of the backbone the tasks use, and how much they share.

"used" positions are those trained by some finished task (the union of the finished masks: frozen);
"free" ones no finished task trained; a task "reuses" the positions of its mask that an earlier task
had already frozen. Uniform init saturates the backbone after about 7 tasks at 80% sparsity, ERK later
(paper Fig. 2); ERK at density 0.2 makes the stem, the shortcuts and the classifier dense, so task 0
uses all of them and later tasks can only reuse them: both show up here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from cldst.sparse.state import ContinualSparsity

Masks = Mapping[str, Tensor]  # layer name -> bool tensor
CHUNK = 2**20  # columns per matmul in overlap_matrix: 0/1 sums stay exact in float32 (< 2**24)


def _with_total(rows: list[dict], keys: Sequence[str]) -> list[dict]:
    """Append an "all" row summing `keys` (and numel) over the layer rows."""
    total = {"layer": "all", **{key: sum(row[key] for row in rows) for key in keys}}
    return rows + [total]


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def capacity_table(sparsity: ContinualSparsity) -> pd.DataFrame:
    """Per layer and "all", after the latest finished task: numel, used, free, used_fraction,
    task_count (its mask size), reused (its positions frozen before it), reused_fraction."""
    last = sparsity.masks[-1] if sparsity.masks else None
    names = list(sparsity.params)
    used = torch.stack([sparsity.frozen[name].sum() for name in names]).tolist()
    counts = [int(last[name].sum()) for name in names] if last is not None else [0] * len(names)
    reused = [sparsity.reused[-1][name] for name in names] if last is not None else [0] * len(names)
    rows = [
        {"layer": name, "numel": sparsity.params[name].numel(), "used": u, "task_count": c, "reused": r}
        for name, u, c, r in zip(names, used, counts, reused)
    ]
    table = pd.DataFrame(_with_total(rows, ["numel", "used", "task_count", "reused"]))
    table["free"] = table["numel"] - table["used"]
    table["used_fraction"] = table["used"] / table["numel"]
    table["reused_fraction"] = [_ratio(r, c) for r, c in zip(table["reused"], table["task_count"])]
    return table[["layer", "numel", "used", "free", "used_fraction", "task_count", "reused", "reused_fraction"]]


def overlap_matrix(masks: Sequence[Masks]) -> np.ndarray:
    """[T, T] with entry (i, j) = |M_i ∩ M_j| / |M_j| over all layers: the fraction of task j's mask
    that task i also uses (the diagonal is 1; NaN for an empty mask)."""
    T = len(masks)
    shared = torch.zeros(T, T, dtype=torch.float64)
    if T == 0:
        return shared.numpy()
    for name in masks[0]:
        flat = torch.stack([task[name].flatten() for task in masks])  # [T, numel] bool
        for chunk in flat.split(CHUNK, dim=1):
            x = chunk.float()  # 0/1: the matmul counts shared positions, exactly
            shared += (x @ x.T).double().cpu()
    sizes = shared.diagonal().clone()
    return (shared / sizes[None, :]).numpy()


def capacity_over_tasks(masks: Sequence[Masks]) -> pd.DataFrame:
    """One row per (task, layer) and (task, "all") after each task t: numel, count (|M_t|), reused
    (|M_t ∩ earlier masks|), used (|M_0 ∪ ... ∪ M_t|), used_fraction. For plots of backbone saturation."""
    rows: list[dict] = []
    union: dict[str, Tensor] = {}
    for t, task in enumerate(masks):
        names = list(task)
        before = [union.get(name, torch.zeros_like(task[name])) for name in names]
        counts = torch.stack([task[name].sum() for name in names])
        reused = torch.stack([(task[name] & b).sum() for name, b in zip(names, before)])
        for name, b in zip(names, before):
            union[name] = b | task[name]
        used = torch.stack([union[name].sum() for name in names])
        layer_rows = [
            {"task": t, "layer": name, "numel": task[name].numel(), "count": c, "reused": r, "used": u}
            for name, c, r, u in zip(names, counts.tolist(), reused.tolist(), used.tolist())
        ]
        rows += _with_total(layer_rows, ["numel", "count", "reused", "used"])
        rows[-1]["task"] = t
    table = pd.DataFrame(rows, columns=["task", "layer", "numel", "count", "reused", "used"])
    table["used_fraction"] = (table["used"] / table["numel"]).astype(float)
    return table


def describe(model_or_params: nn.Module | Mapping[str, Tensor], sparsity: ContinualSparsity) -> pd.DataFrame:
    """A notebook view: one row per parameter of the model (or mapping) with layer, shape, masked,
    density (of the current mask, else the last finished one, else the target d_l), count, used, free
    and reused (positions of that mask frozen before its task). Parameters the sparsity does not mask
    (per-task heads, BatchNorm) are listed with masked=False, density 1 and no capacity figures."""
    named = dict(model_or_params.named_parameters()) if isinstance(model_or_params, nn.Module) else dict(model_or_params)
    masked_name = {id(p): name for name, p in sparsity.params.items()}
    missing = set(masked_name) - {id(p) for p in named.values()}
    if missing:
        raise ValueError(f"the sparsity masks {len(missing)} parameters that the model does not have")
    begun = sparsity.task is not None
    rows = []
    for name, p in named.items():
        if id(p) not in masked_name:
            rows.append({"layer": name, "shape": tuple(p.shape), "masked": False, "density": 1.0})
            continue
        layer = masked_name[id(p)]
        mask, frozen = sparsity.mask[layer], sparsity.frozen[layer]
        count = int(mask.sum()) if begun else sparsity.counts[layer]
        if sparsity.in_task:
            reused = int((mask & frozen).sum())
        else:
            reused = sparsity.reused[-1][layer] if sparsity.reused else 0
        used = int(frozen.sum())
        rows.append({
            "layer": layer, "shape": tuple(p.shape), "masked": True,
            "density": count / p.numel() if begun else sparsity.densities[layer],
            "count": count, "used": used, "free": p.numel() - used, "reused": reused,
        })
    table = pd.DataFrame(rows, columns=["layer", "shape", "masked", "density", "count", "used", "free", "reused"])
    for column in ("count", "used", "free", "reused"):
        table[column] = table[column].astype("Int64")  # empty for unmasked parameters
    return table
