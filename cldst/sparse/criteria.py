"""Drop and growth criteria: small pure functions on one layer (cldst.sparse.registry names them).

    DropFn(n, active, weight) -> BoolTensor          n True (or more, for ties: magnitude_threshold), a subset of `active`
    GrowthFn(n, candidates, ctx) -> BoolTensor       exactly n True, a subset of `candidates`
                                                     (at most n with ctx.fill == "authors")

All masks have the layer's shape and live on its device. Counts are always exact: a criterion that
cannot rank enough positions fills the rest uniformly at random (the authors' code instead re-picked
already-active positions, and the density leaked). Rankings use `topk`, never a full sort; ties at
the cut are broken by the lowest flat (row-major) index, so a ranking is deterministic; NaN scores
rank last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class GrowthContext:
    """What a growth criterion may look at for one layer (all tensors of the layer's shape)."""

    weight: Tensor  # the effective weight of the current task (0 outside its mask)
    grad: Tensor | None  # dense gradient of the effective weight; None = the layer got no gradient (all 0)
    exp_avg: Tensor | None  # Adam's first moment of that gradient, None before the first step
    exp_avg_sq: Tensor | None  # Adam's second moment
    fired: Tensor  # bool: positions active at any time during the current task
    generator: torch.Generator  # the only source of randomness (random draws happen on its device)
    eps: float = 1e-8  # Adam's eps, in the momentum score m / (sqrt(v) + eps)
    frozen: Tensor | None = None  # bool: positions trained by finished tasks (for custom criteria)
    fill: str = "random"  # score shortfall: "random" fill (exact counts) | "authors" (see top_scores_then_random)


DropFn = Callable[[int, Tensor, Tensor], Tensor]
GrowthFn = Callable[[int, Tensor, GrowthContext], Tensor]


# ---------------------------------------------------------------------- exact selection helpers
def _check_available(n: int, eligible: Tensor, what: str) -> int:
    """Number of eligible positions; ValueError when fewer than n (one host sync)."""
    available = int(eligible.sum())
    if n < 0 or n > available:
        raise ValueError(f"cannot pick {n} positions: there are {available} {what}")
    return available


def top_n(scores: Tensor, eligible: Tensor, n: int, *, largest: bool = True) -> Tensor:
    """Exactly n eligible positions with the largest (or smallest) scores, as a bool mask.

    Ties at the cut go to the lowest flat indices; NaN scores rank last."""
    _check_available(n, eligible, "eligible positions")
    ok = eligible.flatten()
    if n == 0:
        return torch.zeros_like(eligible)
    flat = scores.detach().flatten()
    worst = float("-inf") if largest else float("inf")
    keyed = torch.where(ok & ~flat.isnan(), flat, worst)  # ineligible and NaN positions rank last
    top = keyed.topk(n, largest=largest, sorted=False).values
    cut = top.min() if largest else top.max()  # the n-th best key
    better = ok & ((keyed > cut) if largest else (keyed < cut))  # fewer than n of these
    tied = ok & (keyed == cut)
    need = n - better.sum()  # 0-d tensor: no host sync
    chosen = better | (tied & (tied.cumsum(0) <= need))
    return chosen.view_as(eligible)


def random_n(n: int, eligible: Tensor, generator: torch.Generator) -> Tensor:
    """Exactly n eligible positions drawn uniformly without replacement, as a bool mask."""
    available = _check_available(n, eligible, "eligible positions")
    chosen = torch.zeros(eligible.numel(), dtype=torch.bool, device=eligible.device)
    if n == 0:
        return chosen.view_as(eligible)
    index = eligible.flatten().nonzero().squeeze(1)  # [available]
    order = torch.randperm(available, generator=generator, device=generator.device)[:n]
    chosen[index[order.to(index.device)]] = True
    return chosen.view_as(eligible)


def preferred_then_random(n: int, preferred: Tensor, candidates: Tensor, generator: torch.Generator) -> Tensor:
    """n uniform picks among `preferred` (⊆ candidates); if it has fewer than n, all of it plus a
    uniform fill from the other candidates."""
    _check_available(n, candidates, "candidates")
    n_preferred = int(preferred.sum())
    if n_preferred >= n:
        return random_n(n, preferred, generator)
    return preferred | random_n(n - n_preferred, candidates & ~preferred, generator)


def top_scores_then_random(n: int, candidates: Tensor, score: Tensor | None, generator: torch.Generator,
                           fill: str = "random") -> Tensor:
    """The n candidates with the largest non-negative `score`; when fewer than n have a non-zero
    score, all of those plus a uniform fill from the zero-score candidates. `score=None` means all 0.

    fill="authors" reproduces the authors' code instead: the first n positions of a full descending
    sort of score * candidates over the whole layer. Past the non-zero scores the sort reaches zeros,
    non-candidates (active positions) among them, in torch.sort's order for ties: those picks grow
    nothing, so fewer than n positions grow and the layer's density falls (e.g. the shared head's
    rows of other tasks, which get no gradient, lose what is dropped from them)."""
    _check_available(n, candidates, "candidates")
    if fill == "authors":
        keyed = torch.where(candidates, score.abs(), 0.0) if score is not None else torch.zeros(candidates.shape, device=candidates.device)
        order = torch.sort(keyed.flatten(), descending=True).indices[:n]
        picked = torch.zeros(candidates.numel(), dtype=torch.bool, device=candidates.device)
        picked[order] = True
        return picked.view_as(candidates) & candidates
    if score is None:
        return random_n(n, candidates, generator)
    scored = candidates & (score != 0) & ~score.isnan()
    n_scored = int(scored.sum())
    if n_scored >= n:
        return top_n(score, scored, n)
    return scored | random_n(n - n_scored, candidates & ~scored, generator)


# ---------------------------------------------------------------------- drop
def magnitude_drop(n: int, active: Tensor, weight: Tensor) -> Tensor:
    """The n active positions with the smallest |weight| (ties: lowest flat index first)."""
    return top_n(weight.abs(), active, n, largest=False)


def magnitude_threshold_drop(n: int, active: Tensor, weight: Tensor) -> Tensor:
    """Every active position with |weight| at or below the n-th smallest active |weight| (the authors'
    code: it keeps |w| > threshold): n or more, as all ties at the cut go. Ties are common at 0:
    weights grown at 0 that never get a gradient (taps that only ever see padding, on small maps),
    or frozen positions that read 0 (reuse="authors"); this drops all of them at once."""
    _check_available(n, active, "active positions")
    if n == 0:
        return torch.zeros_like(active)
    magnitude = weight.detach().abs()
    cut = magnitude[active].kthvalue(n).values  # the n-th smallest active magnitude (a selection, no sort)
    return active & (magnitude <= cut)


# ---------------------------------------------------------------------- growth
def random_growth(n: int, candidates: Tensor, ctx: GrowthContext) -> Tensor:
    """Uniform over the candidates (SET)."""
    return random_n(n, candidates, ctx.generator)


def unfired_growth(n: int, candidates: Tensor, ctx: GrowthContext) -> Tensor:
    """Uniform over candidates never active during this task; when fewer than n, all of them plus
    a uniform fill from the other candidates."""
    return preferred_then_random(n, candidates & ~ctx.fired, candidates, ctx.generator)


def gradient_growth(n: int, candidates: Tensor, ctx: GrowthContext) -> Tensor:
    """Largest |dense gradient| (RigL)."""
    score = None if ctx.grad is None else ctx.grad.abs()
    return top_scores_then_random(n, candidates, score, ctx.generator, ctx.fill)


def momentum_growth(n: int, candidates: Tensor, ctx: GrowthContext) -> Tensor:
    """Largest |exp_avg / (sqrt(exp_avg_sq) + eps)| of Adam (SNFS, as ITOP computes it).

    Before the optimizer's first step there are no moments: |gradient| is used instead."""
    if ctx.exp_avg is None or ctx.exp_avg_sq is None:
        return gradient_growth(n, candidates, ctx)
    score = (ctx.exp_avg / (ctx.exp_avg_sq.sqrt() + ctx.eps)).abs()
    return top_scores_then_random(n, candidates, score, ctx.generator, ctx.fill)
