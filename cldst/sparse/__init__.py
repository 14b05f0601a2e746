"""Continual dynamic sparse training: per-task masks over one shared set of weights.

    density    how many weights each layer gives a task: uniform or ERK, exact per-layer counts
    registry   the drop and growth criteria by name (register_drop / register_growth add one)
    criteria   drop (magnitude) and growth (random, unfired, gradient, momentum) criteria
    schedule   when and how much to update the topology; which growth each task uses
    state      ContinualSparsity: masks, frozen set, drop/grow, evaluation of a task's subnetwork
    capacity   how much of the backbone the tasks use and share

This module holds the names of the engine's options (torch-free, so `cldst.config` validates without
importing torch); everything else loads on first use (cldst.lazy).
"""

from __future__ import annotations

from cldst.lazy import exports

INITS = ("uniform", "ERK")  # per-layer densities of a task's mask (cldst.sparse.density)
FROZEN_GRADS = ("zero", "keep")  # zero: frozen positions get no growth score (authors) | keep: their dense gradient
NEW_WEIGHTS = ("random", "zero")  # a task's free weights start at their initial values | at 0 (authors, tasks >= 1)
REUSES = ("static", "separate", "value", "authors")  # how updates treat frozen positions (cldst.sparse.state)
DROP_COUNTS = ("round", "ceil")  # n = round(f * k) | ceil(f * k) (authors)
SCORE_FILLS = ("random", "authors")  # cldst.sparse.criteria.top_scores_then_random

__getattr__, __dir__ = exports(__name__, {
    **dict.fromkeys(["DROP", "GROWTH", "GROWTH_ALIASES", "get_drop", "get_growth", "register_drop",
                     "register_growth"], ".registry"),
    **dict.fromkeys(["DropFn", "GrowthContext", "GrowthFn", "gradient_growth", "magnitude_drop",
                     "magnitude_threshold_drop", "momentum_growth", "random_growth", "unfired_growth"], ".criteria"),
    **dict.fromkeys(["density_table", "layer_counts", "layer_densities", "normalize_init"], ".density"),
    **dict.fromkeys(["GrowthSchedule", "drop_fraction", "is_update_step"], ".schedule"),
    **dict.fromkeys(["ContinualSparsity", "load_masks", "save_masks"], ".state"),  # the masks file: cldst.masks_file
    **dict.fromkeys(["capacity_over_tasks", "capacity_table", "describe", "overlap_matrix"], ".capacity"),
})
