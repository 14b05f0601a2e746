"""Property tests over random shapes, densities and seeds: exact counts and the engine's invariants."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cldst.sparse import (
    ContinualSparsity,
    GrowthContext,
    capacity_over_tasks,
    get_growth,
    layer_counts,
    layer_densities,
    magnitude_drop,
)

BUILTIN_GROWTHS = ["random", "unfired", "gradient", "momentum"]
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True)

dims = st.integers(1, 12)
conv = st.tuples(dims, dims, st.sampled_from([1, 3]), st.sampled_from([1, 3]))
linear = st.tuples(dims, dims)
shape_lists = st.lists(st.one_of(conv, linear), min_size=1, max_size=5)
densities = st.floats(0.01, 1.0)


def named(shapes) -> dict[str, tuple[int, ...]]:
    return {f"layer{i}": tuple(s) for i, s in enumerate(shapes)}


def rigl_erk(shapes: dict, density: float) -> dict[str, float]:
    """RigL's own loop, written out: one highest-scoring layer (or tie) made dense per round."""
    dense: set[str] = set()
    while True:
        divisor = rhs = 0.0
        raw = {}
        for name, shape in shapes.items():
            n = math.prod(shape)
            if name in dense:
                rhs -= n * (1 - density)
            else:
                rhs += n * density
                raw[name] = sum(shape) / n
                divisor += raw[name] * n
        eps = rhs / divisor
        top = max(raw.values())
        if top * eps <= 1:
            return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}
        dense |= {name for name, score in raw.items() if score == top}


@SETTINGS
@given(shapes=shape_lists, density=densities, init=st.sampled_from(["uniform", "ERK"]))
def test_counts_are_exact_and_sum_to_the_budget(shapes, density, init):
    shapes = named(shapes)
    counts = layer_counts(shapes, density, init)
    numel = {name: math.prod(s) for name, s in shapes.items()}
    assert all(0 <= counts[n] <= numel[n] for n in shapes)
    assert abs(sum(counts.values()) - density * sum(numel.values())) <= len(shapes) / 2 + 1e-6
    found = layer_densities(shapes, density, init)
    assert all(0 < d <= 1 for d in found.values())
    assert counts == {n: round(found[n] * numel[n]) for n in shapes}
    if init == "uniform":
        assert set(found.values()) == {density}


@SETTINGS
@given(shapes=shape_lists, density=st.floats(0.01, 0.95))
def test_erk_matches_rigls_loop(shapes, density):
    shapes = named(shapes)
    ours, theirs = layer_densities(shapes, density, "ERK"), rigl_erk(shapes, density)
    assert list(ours) == list(theirs)
    for name in shapes:
        assert ours[name] == pytest.approx(theirs[name], rel=1e-9)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    active_p=st.floats(0.0, 1.0),
    drop_share=st.floats(0.0, 1.0),
    growth=st.sampled_from(BUILTIN_GROWTHS),
)
def test_criteria_pick_exactly_n_from_the_right_set(shape, seed, active_p, drop_share, growth):
    g = torch.Generator().manual_seed(seed)
    active = torch.rand(shape, generator=g) < active_p
    weight = (torch.randn(shape, generator=g) * 3).round() / 3  # coarse values: many ties
    n = int(drop_share * int(active.sum()))

    dropped = magnitude_drop(n, active, weight)
    assert dropped.shape == active.shape and int(dropped.sum()) == n
    assert not (dropped & ~active).any()
    kept = active & ~dropped
    if n and kept.any():
        cut = weight.abs()[dropped].max()
        assert cut <= weight.abs()[kept].min()
        ties_kept = (kept & (weight.abs() == cut)).flatten().nonzero()
        ties_dropped = (dropped & (weight.abs() == cut)).flatten().nonzero()
        if len(ties_kept):
            assert ties_dropped.max() < ties_kept.min()  # ties go to the lowest flat index

    candidates = ~kept
    score_source = torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.5)  # half exact zeros
    ctx = GrowthContext(
        weight=weight * active, grad=score_source, exp_avg=score_source, exp_avg_sq=torch.rand(shape, generator=g),
        fired=active | (torch.rand(shape, generator=g) < 0.3), generator=g,
    )
    grown = get_growth(growth)(n, candidates, ctx)
    assert grown.shape == active.shape and grown.dtype == torch.bool and int(grown.sum()) == n
    assert not (grown & ~candidates).any() and not (grown & kept).any()
    if growth == "gradient":
        scored = candidates & (score_source != 0)
        if int(scored.sum()) >= n:
            assert not (grown & ~scored).any()
            if n and (scored & ~grown).any():
                assert score_source.abs()[grown].min() >= score_source.abs()[scored & ~grown].max()
        else:
            assert not (scored & ~grown).any()  # every non-zero score is taken
    if growth == "unfired":
        never = candidates & ~ctx.fired
        if int(never.sum()) >= n:
            assert not (grown & ~never).any()
        else:
            assert not (never & ~grown).any()


@settings(max_examples=50, deadline=None, derandomize=True)
@given(
    shapes=st.lists(st.one_of(conv, linear), min_size=1, max_size=3),
    density=st.floats(0.05, 1.0),
    init=st.sampled_from(["uniform", "ERK"]),
    growth=st.sampled_from(BUILTIN_GROWTHS),
    frozen_grad=st.sampled_from(["zero", "keep"]),
    seed=st.integers(0, 2**16),
    tasks=st.integers(1, 3),
)
def test_engine_invariants(shapes, density, init, growth, frozen_grad, seed, tasks):
    g = torch.Generator().manual_seed(seed)
    params = {name: nn.Parameter(torch.randn(shape, generator=g)) for name, shape in named(shapes).items()}
    sp = ContinualSparsity(params, density=density, init=init, growth=growth, frozen_grad=frozen_grad, seed=seed)
    for task in range(tasks):
        bank = {name: v.clone() for name, v in sp.values.items()}
        frozen_before = {name: f.clone() for name, f in sp.frozen.items()}
        sp.begin_task(task, 100)
        for _ in range(3):  # a fake optimizer: random gradients, changes everywhere
            for p in params.values():
                p.grad = torch.randn(p.shape, generator=g)
            sp.prepare_grads()
            with torch.no_grad():
                for p in params.values():
                    p.sub_(0.1 * p.grad)
            sp.after_step()
            sp.update_topology(float(torch.rand((), generator=g)) * 0.9)
            for name, p in params.items():
                mask = sp.mask[name]
                assert mask.dtype == torch.bool and mask.shape == p.shape
                assert int(mask.sum()) == sp.counts[name]
                assert (p[~mask] == 0).all()
                inside = mask & frozen_before[name]
                assert torch.equal(p[inside], bank[name][inside])
        sp.end_task()
        for name in params:
            union = torch.zeros_like(sp.frozen[name])
            for finished in sp.masks:
                union |= finished[name]
            assert torch.equal(sp.frozen[name], union)
            assert torch.equal(sp.values[name][frozen_before[name]], bank[name][frozen_before[name]])
    table = sp.capacity()
    assert (table["used"] + table["free"] == table["numel"]).all()
    assert table["used"].iloc[-1] == sum(int(f.sum()) for f in sp.frozen.values())
    over = capacity_over_tasks(sp.masks)
    assert over.loc[over["layer"] == "all", "used"].is_monotonic_increasing
    assert over["used"].iloc[-1] == table["used"].iloc[-1]
    for task in range(tasks):
        with sp.use_task(task):
            assert all(torch.equal(p, torch.where(sp.masks[task][n], sp.values[n], 0.0)) for n, p in params.items())
