"""Per-layer densities of a task's mask: how many weights of each layer one task may use.

`uniform` gives every layer the global density d. `ERK` (Erdős–Rényi-Kernel, Evci et al. 2020, RigL)
gives layer l a density proportional to sum(shape_l) / prod(shape_l), i.e. for a conv
(c_out, c_in, kh, kw): (c_out + c_in + kh + kw) / (c_out * c_in * kh * kw), scaled by one ε so that
the layers hold d * (all weights) in total. Small layers (the stem, 1x1 shortcuts, the classifier)
get high densities; when ε * score_l would exceed 1 the layer is made dense and ε is recomputed over
the remaining layers from the remaining budget, until no layer exceeds 1.

Counts are `k_l = round(d_l * numel_l)` (Python's round: half to even). Each layer's rounding moves
the total by at most 1/2, so sum_l k_l differs from d * total by less than the number of layers
(at most half of it); this is the exact count every task's mask of that layer has.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cldst.errors import ConfigError
from cldst.sparse import INITS

if TYPE_CHECKING:
    import pandas as pd


def normalize_init(init: str) -> str:
    """The canonical name of a sparse init ("erk" -> "ERK"); ConfigError listing INITS otherwise."""
    for name in INITS:
        if str(init).lower() == name.lower():
            return name
    raise ConfigError(f"sparse_init={init!r} is not one of: {', '.join(INITS)}")


def _check(shapes: Mapping[str, Sequence[int]], density: float) -> None:
    if not shapes:
        raise ValueError("no layers to mask: the shapes mapping is empty")
    for name, shape in shapes.items():
        if math.prod(shape) <= 0:
            raise ValueError(f"layer {name!r} has shape {tuple(shape)} with no weights")
    if isinstance(density, bool) or not isinstance(density, numbers.Real) or not 0.0 < density <= 1.0:
        raise ConfigError(f"density={density} must be in (0, 1] (it is 1 - sparsity; e.g. 0.1 for 90% sparsity)")


def erk_score(shape: Sequence[int]) -> float:
    """ERK's raw (unscaled) density of a layer: sum of its dimensions over their product."""
    return sum(shape) / math.prod(shape)


def _erk(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    numel = {name: math.prod(shape) for name, shape in shapes.items()}
    total_budget = density * sum(numel.values())  # ones the whole network may hold
    dense: set[str] = set()
    while True:
        scaled = [name for name in shapes if name not in dense]
        if not scaled:  # only reachable for density ~ 1 through float error
            break
        budget = total_budget - sum(numel[name] for name in dense)
        # score_l * numel_l == sum(shape_l): the ones layer l gets per unit of ε
        epsilon = budget / sum(erk_score(shapes[name]) * numel[name] for name in scaled)
        too_dense = {name for name in scaled if epsilon * erk_score(shapes[name]) > 1.0}
        if not too_dense:
            break
        # RigL makes only the highest-scoring layer dense per round; ε only grows as layers leave the
        # scaled set, so every layer above 1 now stays above 1 later: both loops end in the same set.
        dense |= too_dense
    return {name: 1.0 if name in dense else epsilon * erk_score(shapes[name]) for name in shapes}


def layer_densities(shapes: Mapping[str, Sequence[int]], density: float, init: str) -> dict[str, float]:
    """Density d_l in (0, 1] of every layer, in the order of `shapes`."""
    init = normalize_init(init)
    _check(shapes, density)
    if init == "uniform" or density == 1.0:
        return {name: float(density) for name in shapes}
    return _erk(shapes, density)


def layer_counts(shapes: Mapping[str, Sequence[int]], density: float, init: str) -> dict[str, int]:
    """Exact number of ones k_l = round(d_l * numel_l) of every layer's mask (may be 0 for a tiny layer)."""
    densities = layer_densities(shapes, density, init)
    return {name: int(round(densities[name] * math.prod(shapes[name]))) for name in shapes}


def density_table(shapes: Mapping[str, Sequence[int]], density: float, init: str) -> pd.DataFrame:
    """One row per layer: layer, shape, numel, density (d_l), count (k_l), dense (k_l == numel)."""
    import pandas as pd  # here: cldst.config imports this module and must not import pandas
    densities = layer_densities(shapes, density, init)
    counts = layer_counts(shapes, density, init)
    rows = [
        {
            "layer": name,
            "shape": tuple(shape),
            "numel": math.prod(shape),
            "density": densities[name],
            "count": counts[name],
            "dense": counts[name] == math.prod(shape),
        }
        for name, shape in shapes.items()
    ]
    return pd.DataFrame(rows, columns=["layer", "shape", "numel", "density", "count", "dense"])
