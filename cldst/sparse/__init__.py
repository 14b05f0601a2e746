"""Continual dynamic sparse training: per-task masks over one shared set of weights.

    density    how many weights each layer gives a task: uniform or ERK, exact per-layer counts
    criteria   drop (magnitude) and growth (random, unfired, gradient, momentum) criteria, registries
    schedule   when and how much to update the topology; which growth each task uses
    state      ContinualSparsity: masks, frozen set, drop/grow, evaluation of a task's subnetwork
    capacity   how much of the backbone the tasks use and share
"""

from __future__ import annotations

from cldst.sparse.capacity import capacity_over_tasks, capacity_table, describe, overlap_matrix
from cldst.sparse.criteria import (
    DROP,
    GROWTH,
    DropFn,
    GrowthContext,
    GrowthFn,
    get_drop,
    get_growth,
    gradient_growth,
    magnitude_drop,
    momentum_growth,
    random_growth,
    register_drop,
    register_growth,
    unfired_growth,
)
from cldst.sparse.density import INITS, density_table, layer_counts, layer_densities
from cldst.sparse.schedule import GrowthSchedule, drop_fraction, is_update_step
from cldst.sparse.state import (
    DROP_COUNTS,
    FROZEN_GRADS,
    NEW_WEIGHTS,
    REUSES,
    SCORE_FILLS,
    ContinualSparsity,
    load_masks,
    save_masks,
)

__all__ = [
    "DROP",
    "DROP_COUNTS",
    "REUSES",
    "SCORE_FILLS",
    "FROZEN_GRADS",
    "GROWTH",
    "INITS",
    "NEW_WEIGHTS",
    "ContinualSparsity",
    "DropFn",
    "GrowthContext",
    "GrowthFn",
    "GrowthSchedule",
    "capacity_over_tasks",
    "capacity_table",
    "density_table",
    "describe",
    "drop_fraction",
    "get_drop",
    "get_growth",
    "gradient_growth",
    "is_update_step",
    "layer_counts",
    "layer_densities",
    "load_masks",
    "magnitude_drop",
    "momentum_growth",
    "overlap_matrix",
    "random_growth",
    "register_drop",
    "register_growth",
    "save_masks",
    "unfired_growth",
]
