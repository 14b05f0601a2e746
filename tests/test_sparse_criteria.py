"""Drop and growth criteria on hand-built tensors; the drop-fraction schedule; growth schedules."""

from __future__ import annotations

import math

import pytest
import torch

from cldst.errors import ConfigError
from cldst.sparse import (
    GROWTH,
    GrowthContext,
    GrowthSchedule,
    drop_fraction,
    get_drop,
    get_growth,
    gradient_growth,
    is_update_step,
    magnitude_drop,
    momentum_growth,
    random_growth,
    register_growth,
    unfired_growth,
)

T, F = True, False


def B(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def ctx(shape, *, grad=None, exp_avg=None, exp_avg_sq=None, fired=None, seed=0) -> GrowthContext:
    return GrowthContext(
        weight=torch.zeros(shape),
        grad=grad,
        exp_avg=exp_avg,
        exp_avg_sq=exp_avg_sq,
        fired=torch.zeros(shape, dtype=torch.bool) if fired is None else fired,
        generator=torch.Generator().manual_seed(seed),
    )


def positions(mask: torch.Tensor) -> list[int]:
    return mask.flatten().nonzero().flatten().tolist()


# ---------------------------------------------------------------------- drop
def test_magnitude_drop_picks_smallest_among_active_only():
    weight = torch.tensor([[0.5, -0.1, 0.3], [0.05, -0.7, 0.2]])
    active = B([[T, T, T], [F, T, T]])  # 0.05 is the smallest weight but inactive
    assert positions(magnitude_drop(2, active, weight)) == [1, 5]  # |-0.1|, |0.2|
    assert positions(magnitude_drop(0, active, weight)) == []
    assert positions(magnitude_drop(5, active, weight)) == [0, 1, 2, 4, 5]


def test_magnitude_drop_breaks_ties_by_lowest_flat_index():
    weight = torch.tensor([0.3, 0.1, -0.1, 0.1, 0.0, 0.1])
    active = B([T, T, T, T, F, T])
    assert positions(magnitude_drop(2, active, weight)) == [1, 2]
    assert positions(magnitude_drop(3, active, weight)) == [1, 2, 3]
    assert positions(magnitude_drop(4, active, weight)) == [1, 2, 3, 5]


def test_magnitude_drop_ranks_nan_last_and_counts_exactly():
    weight = torch.tensor([float("nan"), 0.2, 0.1, float("nan")])
    active = torch.ones(4, dtype=torch.bool)
    assert positions(magnitude_drop(2, active, weight)) == [1, 2]
    assert positions(magnitude_drop(3, active, weight)) == [0, 1, 2]


def test_magnitude_drop_rejects_more_than_active():
    with pytest.raises(ValueError, match="cannot pick 3 positions: there are 2"):
        magnitude_drop(3, B([T, F, T]), torch.ones(3))


# ---------------------------------------------------------------------- growth
def test_random_growth_is_exact_subset_and_seeded():
    candidates = B([[T, F, T, T], [F, T, T, F]])
    a = random_growth(3, candidates, ctx((2, 4), seed=1))
    b = random_growth(3, candidates, ctx((2, 4), seed=1))
    assert a.shape == (2, 4) and a.dtype == torch.bool
    assert int(a.sum()) == 3 and not (a & ~candidates).any()
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="cannot pick 6"):
        random_growth(6, candidates, ctx((2, 4)))


def test_random_growth_is_uniform_over_candidates():
    torch.manual_seed(0)
    candidates = B([T, F, T, T, F, T])
    c = ctx((6,), seed=3)
    hits = torch.zeros(6)
    for _ in range(2000):
        hits += random_growth(1, candidates, c).float()
    assert hits[1] == 0 and hits[4] == 0
    assert all(420 <= h <= 580 for h in hits[[0, 2, 3, 5]].tolist())  # 500 expected each


def test_unfired_growth_prefers_never_fired():
    candidates = B([T, T, T, T, T, T, F])
    fired = B([T, F, T, F, T, T, T])  # never fired among candidates: 1 and 3
    assert positions(unfired_growth(2, candidates, ctx((7,), fired=fired))) == [1, 3]
    one = unfired_growth(1, candidates, ctx((7,), fired=fired))
    assert positions(one) in ([1], [3])
    four = unfired_growth(4, candidates, ctx((7,), fired=fired))
    assert int(four.sum()) == 4 and four[1] and four[3] and not four[6]


def test_gradient_growth_takes_largest_abs_gradient_among_candidates():
    grad = torch.tensor([[0.9, -0.5, 0.1], [-0.3, 0.2, 0.0]])
    candidates = B([[F, T, T], [T, T, T]])  # 0.9 is the largest but active
    assert positions(gradient_growth(2, candidates, ctx((2, 3), grad=grad))) == [1, 3]  # |-0.5|, |-0.3|
    assert positions(gradient_growth(4, candidates, ctx((2, 3), grad=grad))) == [1, 2, 3, 4]


def test_gradient_growth_ties_go_to_lowest_index():
    grad = torch.tensor([0.2, 0.5, -0.5, 0.5, 0.1])
    assert positions(gradient_growth(2, torch.ones(5, dtype=torch.bool), ctx((5,), grad=grad))) == [1, 2]


def test_gradient_growth_with_fewer_nonzero_scores_than_n_fills_randomly_and_exactly():
    grad = torch.tensor([0.0, 0.4, 0.0, 0.0, -0.2, 0.0, 0.0, 0.7])
    candidates = B([T, T, T, T, T, T, F, F])  # non-zero scores among candidates: 1 and 4
    fills = set()
    for seed in range(6):
        grown = gradient_growth(4, candidates, ctx((8,), grad=grad, seed=seed))
        assert int(grown.sum()) == 4
        assert grown[1] and grown[4]  # every non-zero score is taken
        assert not (grown & ~candidates).any()  # never an active position (the authors' leak)
        fills.add(tuple(positions(grown & ~B([F, T, F, F, T, F, F, F]))))
    assert len(fills) > 1  # the rest is drawn at random among 0, 2, 3, 5, not by index


def test_gradient_growth_without_gradient_is_random():
    candidates = B([T, F, T, T])
    grown = gradient_growth(2, candidates, ctx((4,), seed=5))
    assert torch.equal(grown, random_growth(2, candidates, ctx((4,), seed=5)))


def test_momentum_growth_ranks_by_first_over_root_second_moment():
    exp_avg = torch.tensor([0.1, 0.2, 0.3, -0.01])
    exp_avg_sq = torch.tensor([1e-4, 4e-2, 0.36, 1e-6])  # m / sqrt(v) ~ 10, 1, 0.5, -10
    grad = torch.tensor([0.0, 0.0, 9.0, 0.0])  # the gradient alone would pick 2
    c = ctx((4,), grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq)
    everywhere = torch.ones(4, dtype=torch.bool)
    assert positions(momentum_growth(1, everywhere, c)) == [0]  # 10 / (1 + 1e-6) > 10 / (1 + 1e-5)
    assert positions(momentum_growth(2, everywhere, c)) == [0, 3]
    assert positions(momentum_growth(3, everywhere, c)) == [0, 1, 3]
    assert positions(momentum_growth(1, B([F, T, T, F]), c)) == [1]  # |m| alone would pick 2


def test_momentum_growth_falls_back_to_gradient_before_the_first_step():
    grad = torch.tensor([0.1, -0.8, 0.3])
    assert positions(momentum_growth(1, torch.ones(3, dtype=torch.bool), ctx((3,), grad=grad))) == [1]


def test_score_growth_ranks_nan_as_zero_score():
    grad = torch.tensor([float("nan"), 0.3, 0.1])
    assert positions(gradient_growth(2, torch.ones(3, dtype=torch.bool), ctx((3,), grad=grad))) == [1, 2]


# ---------------------------------------------------------------------- registries
def test_unknown_names_list_the_registry():
    with pytest.raises(ConfigError, match=r"^growth 'foo' is not one of: random, unfired, gradient, momentum$"):
        get_growth("foo")
    with pytest.raises(ConfigError, match=r"^drop 'foo' is not one of: magnitude, magnitude_threshold$"):
        get_drop("foo")
    assert get_drop("magnitude") is magnitude_drop
    assert get_growth("momentum") is momentum_growth


def test_register_growth_adds_a_usable_criterion():
    try:

        @register_growth("first_free")
        def first_free(n, candidates, ctx):  # a user criterion, here delegating to gradient growth
            return gradient_growth(n, candidates, ctx)

        assert get_growth("first_free") is first_free
        assert GrowthSchedule.parse("random,free<0.5:first_free").names == {"random", "first_free"}
    finally:
        GROWTH.pop("first_free", None)
    with pytest.raises(ConfigError, match="must be an identifier"):
        register_growth("a,b")


# ---------------------------------------------------------------------- drop-fraction schedule
def test_drop_fraction_is_cosine_from_alpha_to_minimum():
    assert drop_fraction(0, 100) == 0.5
    assert drop_fraction(50, 100) == pytest.approx(0.25)
    assert drop_fraction(25, 100) == pytest.approx(0.25 * (1 + math.cos(math.pi / 4)))
    assert drop_fraction(100, 100) == 0.0
    assert drop_fraction(50, 100, minimum=0.005) == pytest.approx(0.005 + 0.495 / 2)
    assert drop_fraction(99, 100, minimum=0.005) == pytest.approx(0.005 + 0.2475 * (1 + math.cos(math.pi * 0.99)))
    assert drop_fraction(25, 100, t_end=0.5) == pytest.approx(0.25)
    assert drop_fraction(50, 100, t_end=0.5) == 0.0
    assert drop_fraction(0, 10, alpha=0.3) == pytest.approx(0.3)


def test_update_steps():
    assert [s for s in range(0, 13) if is_update_step(s, 3, 10)] == [3, 6, 9]
    assert [s for s in range(0, 13) if is_update_step(s, 3, 9)] == [3, 6]  # never at T_end
    assert [s for s in range(0, 13) if is_update_step(s, 3, 12, t_end=0.5)] == [3]
    # at_end (the authors' code): also at the last step when it is a multiple of update_frequency
    assert [s for s in range(0, 13) if is_update_step(s, 3, 9, at_end=True)] == [3, 6, 9]
    assert [s for s in range(0, 13) if is_update_step(s, 3, 10, at_end=True)] == [3, 6, 9]
    assert [s for s in range(0, 13) if is_update_step(s, 3, 12, t_end=0.5, at_end=True)] == [3, 6]
    assert drop_fraction(9, 9, minimum=0.005) == 0.005  # the update at T_end drops the floor's share


# ---------------------------------------------------------------------- growth schedules
def test_single_criterion_schedule():
    schedule = GrowthSchedule.parse("random")
    assert [schedule.growth_for(t, 0.01) for t in (0, 7)] == ["random", "random"]
    assert schedule.names == {"random"} and str(schedule) == "random"


def test_per_task_schedule():
    schedule = GrowthSchedule.parse("0:random, 5:gradient")
    assert [schedule.growth_for(t, 1.0) for t in range(7)] == ["random"] * 5 + ["gradient"] * 2
    assert schedule.names == {"random", "gradient"} and str(schedule) == "0:random,5:gradient"
    assert GrowthSchedule.parse(schedule) is schedule


def test_capacity_triggered_schedule():
    schedule = GrowthSchedule.parse("random,free<0.4:gradient")
    assert schedule.growth_for(3, 0.5) == "random"
    assert schedule.growth_for(3, 0.4) == "random"  # not below the threshold
    assert schedule.growth_for(3, 0.39) == "gradient"
    assert schedule.growth_for(0, 0.0) == "gradient"
    two = GrowthSchedule.parse("0:random,2:unfired,free<0.6:momentum,free<.3:gradient")
    assert [two.growth_for(t, f) for t, f in [(1, 0.9), (2, 0.7), (2, 0.5), (9, 0.2)]] == [
        "random", "unfired", "momentum", "gradient",
    ]
    assert str(two) == "0:random,2:unfired,free<0.6:momentum,free<0.3:gradient"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("magic", r"^growth 'magic' is not one of: random, unfired, gradient, momentum$"),
        ("0:random,5:magic", r"^growth 'magic' is not one of"),
        ("5:gradient", r"^growth='5:gradient': per-task stages must start at task 0"),
        ("0:random,0:gradient", r"must increase"),
        ("random,free<1.5:gradient", r"threshold must be in \(0, 1\]"),
        ("random,free<0.2:gradient,free<0.4:momentum", r"must decrease"),
        ("random,:gradient", r"^growth='random,:gradient' is not valid .*per-task stages \('0:random,5:gradient'\)"),
        ("random,free<0.4:gradient,7:momentum", r"is not valid \(at '7:momentum'\)"),
        ("random,gradient", r"is not valid \(at 'gradient'\)"),
        ("", r"^growth='' is not valid: use a criterion \('random'\)"),
    ],
)
def test_bad_growth_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        GrowthSchedule.parse(spec)


def test_magnitude_threshold_drops_every_tie_at_the_cut():
    weight = torch.tensor([[0.0, 0.5, 0.0, 0.2], [0.0, 0.9, 0.2, 0.0]])
    active = torch.tensor([[True, True, True, True], [True, True, True, False]])
    # active magnitudes sorted: 0, 0, 0, .2, .2, .5, .9; the 2nd smallest is 0, so all three zeros go
    dropped = get_drop("magnitude_threshold")(2, active, weight)
    assert dropped.tolist() == [[True, False, True, False], [True, False, False, False]]
    # the 4th smallest is .2: both .2 go with the zeros (5 >= 4); the inactive 0 never counts
    dropped = get_drop("magnitude_threshold")(4, active, weight)
    assert dropped.tolist() == [[True, False, True, True], [True, False, True, False]]
    assert not get_drop("magnitude_threshold")(0, active, weight).any()
    assert get_drop("magnitude")(2, active, weight).sum() == 2  # the plain criterion takes exactly n
