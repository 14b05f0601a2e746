"""ContinualSparsity on a tiny conv net: exact counts, frozen weights bitwise unchanged, growth
semantics, evaluation of finished subnetworks, capacity accounting and persistence."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cldst.errors import ConfigError, DataError
from cldst.sparse import (
    ContinualSparsity,
    capacity_over_tasks,
    describe,
    layer_counts,
    load_masks,
    overlap_matrix,
)

GROWTHS = ["random", "unfired", "gradient", "momentum"]


def tiny_net(seed: int = 0, bn: bool = False) -> nn.Sequential:
    """2x6x6 input -> conv 4x4x4 -> conv 4x2x2 -> 6 logits; 72 + 144 + 96 maskable weights."""
    torch.manual_seed(seed)
    norm = [nn.BatchNorm2d(4)] if bn else []
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, bias=False), *norm, nn.ReLU(),
        nn.Conv2d(4, 4, 3, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(16, 6, bias=False),
    )


def maskable(net: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in net.named_parameters() if p.dim() > 1}


def engine(net: nn.Module, **options) -> ContinualSparsity:
    return ContinualSparsity(maskable(net), **{"density": 0.3, "update_frequency": 3, **options})


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().view(torch.int32)  # float32 as raw bits: equality is bitwise


def assert_exact_counts(sp: ContinualSparsity) -> None:
    assert {name: int(m.sum()) for name, m in sp.mask.items()} == sp.counts


def batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(8, 2, 6, 6, generator=generator), torch.randint(0, 6, (8,), generator=generator)


def backward(net: nn.Module, generator: torch.Generator) -> None:
    x, y = batch(generator)
    F.cross_entropy(net(x), y).backward()


def train_task(net, sp, task, steps=12, *, weight_decay=0.1, each_step=None, begin=True):
    """The training loop: backward, then sparsity.step (prepare_grads, optimizer step, after_step, maybe_update)."""
    generator = torch.Generator().manual_seed(100 + task)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05, weight_decay=weight_decay)
    if begin:
        sp.begin_task(task, steps)
    assert_exact_counts(sp)
    updates = []
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        backward(net, generator)
        stats = sp.step(optimizer, step)
        if stats is not None:
            assert_exact_counts(sp)
            updates.append(stats)
        if each_step is not None:
            each_step(step)
    return updates


# ---------------------------------------------------------------------- the core invariant
@pytest.mark.parametrize("growth", GROWTHS)
def test_frozen_weights_are_bitwise_unchanged_through_training(growth):
    net = tiny_net()
    sp = engine(net, growth=growth)
    initial = {name: p.detach().clone() for name, p in maskable(net).items()}
    reused_in_mask = 0
    for task in range(3):
        frozen = {name: f.clone() for name, f in sp.frozen.items()}
        bank = {name: v.clone() for name, v in sp.values.items()}

        def check(step, frozen=frozen, bank=bank):
            nonlocal reused_in_mask
            for name, p in maskable(net).items():
                mask = sp.mask[name]
                inside = frozen[name] & mask  # frozen positions this task reads
                assert torch.equal(bits(p)[inside], bits(bank[name])[inside])
                assert (bits(p)[~mask] == 0).all()  # inactive weights are exactly +0.0
                reused_in_mask += int(inside.sum())

        updates = train_task(net, sp, task, steps=24, each_step=check)
        assert [u["step"] for u in updates] == [3, 6, 9, 12, 15, 18, 21]
        sp.end_task()
        for name in frozen:  # the bank never changes at positions frozen before the task
            assert torch.equal(bits(sp.values[name])[frozen[name]], bits(bank[name])[frozen[name]])
    assert reused_in_mask > 0  # the check covered frozen positions inside the current mask
    trained = sum(int((sp.values[n] != initial[n]).sum()) for n in initial)
    assert trained > 50  # training did move free weights (so it could have moved frozen ones)


def test_after_step_undoes_any_change_to_frozen_and_inactive_positions():
    net = tiny_net()
    sp = engine(net, density=0.5, init="uniform")
    train_task(net, sp, 0, steps=2)
    sp.end_task()
    sp.begin_task(1, 10)
    params = maskable(net)
    before = {name: p.detach().clone() for name, p in params.items()}
    with torch.no_grad():
        for p in params.values():
            p.add_(0.25)  # what an optimizer step with weight decay might do anywhere
    sp.after_step()
    for name, p in params.items():
        mask, frozen = sp.mask[name], sp.frozen[name]
        assert torch.equal(bits(p)[mask & frozen], bits(sp.values[name])[mask & frozen])
        assert torch.equal(bits(p)[mask & ~frozen], bits(before[name] + 0.25)[mask & ~frozen])
        assert (bits(p)[~mask] == 0).all()


def test_prepare_grads_zeroes_exactly_the_frozen_positions():
    net = tiny_net()
    sp = engine(net)
    train_task(net, sp, 0, steps=2)
    sp.end_task()
    sp.begin_task(1, 10)
    backward(net, torch.Generator().manual_seed(7))
    params = maskable(net)
    grads = {name: p.grad.clone() for name, p in params.items()}
    sp.prepare_grads()
    for name, p in params.items():
        frozen = sp.frozen[name]
        assert (p.grad[frozen] == 0).all() and frozen.any()  # +0.0 or -0.0 (a negative gradient times 0)
        assert torch.equal(bits(p.grad)[~frozen], bits(grads[name])[~frozen])

    keep = engine(net, frozen_grad="keep")
    keep.frozen = sp.frozen
    keep.masks = sp.masks
    keep._refresh_all()
    before = {name: p.grad.clone() for name, p in params.items()}
    keep.prepare_grads()
    assert all(torch.equal(p.grad, before[name]) for name, p in params.items())


# ---------------------------------------------------------------------- masks and growth
def test_initial_masks_have_exact_counts_and_depend_on_seed_and_task():
    net = tiny_net()
    sp = engine(net, seed=3)
    assert sp.counts == layer_counts({n: tuple(p.shape) for n, p in maskable(net).items()}, 0.3, "ERK")
    assert sp.counts == {"0.weight": 23, "2.weight": 27, "5.weight": 43}  # eps = 93.6 / 48 ones per dim
    sp.begin_task(0, 10)
    assert_exact_counts(sp)
    first = {name: m.clone() for name, m in sp.mask.items()}
    again = engine(tiny_net(), seed=3)
    again.begin_task(0, 10)
    assert all(torch.equal(first[n], again.mask[n]) for n in first)
    other = engine(tiny_net(), seed=4)
    other.begin_task(0, 10)
    assert not all(torch.equal(first[n], other.mask[n]) for n in first)
    sp.end_task()
    sp.begin_task(1, 10)
    assert_exact_counts(sp)
    assert not all(torch.equal(first[n], sp.mask[n]) for n in first)
    assert all(torch.equal(sp.fired[n], sp.mask[n]) for n in first)


@pytest.mark.parametrize("reuse", ["separate", "value"])
def test_grown_free_weights_start_at_zero_and_grown_frozen_keep_their_value(reuse):
    net = tiny_net()
    sp = engine(net, density=0.5, init="uniform", growth="random", reuse=reuse)
    train_task(net, sp, 0, steps=4)
    sp.end_task()
    sp.begin_task(1, 100)
    params = maskable(net)
    old_mask = {name: m.clone() for name, m in sp.mask.items()}
    old = {name: p.detach().clone() for name, p in params.items()}
    stats = sp.maybe_update(3)  # f = 0.5/2 (1 + cos(3 pi / 100))
    added_free = added_frozen = 0
    for name, p in params.items():
        mask, frozen = sp.mask[name], sp.frozen[name]
        added, stayed = mask & ~old_mask[name], mask & old_mask[name]
        assert (bits(p)[added & ~frozen] == 0).all()
        assert torch.equal(bits(p)[added & frozen], bits(sp.values[name])[added & frozen])
        assert torch.equal(bits(p)[stayed], bits(old[name])[stayed])  # kept (or dropped and regrown)
        assert (bits(p)[~mask] == 0).all()
        assert not (sp.fired[name] != (mask | old_mask[name])).any()
        added_free += int((added & ~frozen).sum())
        added_frozen += int((added & frozen).sum())
    assert added_free > 0 and added_frozen > 0
    assert stats["grown_frozen"] == added_frozen
    # per layer (value) or per free/frozen part (separate): round(f * active)
    assert stats["dropped"] == sum(round(stats["drop_fraction"] * a) for counts in sp.active.values() for a in counts)
    assert stats["dropped"] == added_free + added_frozen + stats["regrown"] == stats["grown"]
    assert_exact_counts(sp)


# ---------------------------------------------------------------------- reuse rules
REUSES = ["separate", "static", "value", "authors"]


def frozen_free_counts(sp: ContinualSparsity) -> dict[str, tuple[int, int]]:
    return {n: (int((m & sp.frozen[n]).sum()), int((m & ~sp.frozen[n]).sum())) for n, m in sp.mask.items()}


@pytest.mark.parametrize("growth", ["random", "gradient"])
@pytest.mark.parametrize("reuse", REUSES)
def test_every_reuse_rule_keeps_frozen_weights_and_invariants(reuse, growth):
    net = tiny_net()
    sp = engine(net, density=0.5, init="uniform", growth=growth, reuse=reuse)
    for task in range(3):
        bank = {name: v.clone() for name, v in sp.values.items()}
        frozen = {name: f.clone() for name, f in sp.frozen.items()}
        train_task(net, sp, task, steps=12, each_step=lambda step: sp.check_invariants())
        sp.end_task()
        for name in frozen:
            assert torch.equal(bits(sp.values[name])[frozen[name]], bits(bank[name])[frozen[name]])
        with sp.use_task(task):  # the stored subnetwork: values at the mask, exactly
            for name, p in maskable(net).items():
                assert torch.equal(bits(p), bits(torch.where(sp.masks[task][name], sp.values[name], 0.0)))


def test_separate_keeps_the_frozen_and_free_counts_of_the_draw_and_static_keeps_the_frozen_set():
    for reuse in ("separate", "static"):
        net = tiny_net()
        sp = engine(net, density=0.5, init="uniform", growth="random", reuse=reuse)
        train_task(net, sp, 0, steps=6)
        sp.end_task()
        sp.begin_task(1, 100)
        drawn, drawn_frozen = frozen_free_counts(sp), {n: m & sp.frozen[n] for n, m in sp.mask.items()}
        for step in (3, 6, 9):
            stats = sp.maybe_update(step)
            assert frozen_free_counts(sp) == drawn
            sp.check_invariants()
            same_frozen = all(torch.equal(m & sp.frozen[n], drawn_frozen[n]) for n, m in sp.mask.items())
            assert same_frozen == (reuse == "static")
            if reuse == "static":
                assert stats["grown_frozen"] == 0
        total = sum(a + b for a, b in drawn.values())
        assert stats["trainable_share"] == sum(free for _, free in drawn.values()) / total


def test_value_rule_ratchets_into_frozen_positions_and_separate_does_not():
    """Frozen values are large, the task's free weights tiny (as when just grown at 0): magnitude drop
    over the whole mask removes free weights and random growth brings back frozen ones at their
    value, so the frozen share of the mask climbs; `separate` holds it at the initial draw."""
    def frozen_share_after_updates(reuse: str) -> list[float]:
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(40, 40))
        sp = ContinualSparsity({"w": w}, density=0.25, init="uniform", growth="random", reuse=reuse,
                               update_frequency=1)
        sp.begin_task(0, 100)
        sp.end_task()
        sp.begin_task(1, 100)
        shares = []
        for _ in range(6):
            with torch.no_grad():  # the task's free weights stay tiny next to the frozen ones
                free = sp.mask["w"] & ~sp.frozen["w"]
                w[free] = 1e-3
            sp.update_topology(0.3)
            shares.append(1 - sp.trainable_share())
        return shares

    value, separate = frozen_share_after_updates("value"), frozen_share_after_updates("separate")
    assert all(b > a for a, b in zip(value, value[1:])) and value[-1] > 0.6
    assert len(set(separate)) == 1 and separate[0] < 0.35  # ~ the frozen quarter of the layer


def test_authors_reuse_reads_zero_at_regrown_frozen_positions_and_evaluates_their_values():
    net = tiny_net()
    sp = engine(net, density=0.5, init="uniform", growth="random", reuse="authors")
    train_task(net, sp, 0, steps=4)
    sp.end_task()
    sp.begin_task(1, 100)
    params = maskable(net)
    old_mask = {name: m.clone() for name, m in sp.mask.items()}
    stats = sp.update_topology(0.5)
    assert stats["grown_frozen"] > 0
    for name, p in params.items():
        added_frozen = sp.mask[name] & ~old_mask[name] & sp.frozen[name]
        assert torch.equal(sp.zeroed[name], added_frozen)  # only the newly grown frozen positions
        assert (bits(p)[added_frozen] == 0).all()  # they read 0 while the task trains
        drawn_frozen = old_mask[name] & sp.mask[name] & sp.frozen[name]
        assert torch.equal(bits(p)[drawn_frozen], bits(sp.values[name])[drawn_frozen])  # the draw keeps values
    trainable = sum(int((m & ~sp.frozen[n]).sum()) for n, m in sp.mask.items())
    assert stats["trainable_share"] == trainable / sum(int(m.sum()) for m in sp.mask.values())
    zeroed = {name: z.clone() for name, z in sp.zeroed.items()}
    sp.end_task()
    with sp.use_task(1):  # evaluation restores the frozen values the task trained against as 0
        for name, p in params.items():
            assert torch.equal(bits(p)[zeroed[name]], bits(sp.values[name])[zeroed[name]])
            assert (p[zeroed[name]] != 0).all()


def test_ceil_drop_count_drops_at_least_one_where_round_drops_none():
    def dropped(drop_count: str, fraction: float) -> int:
        torch.manual_seed(0)
        sp = ContinualSparsity({"w": nn.Parameter(torch.randn(10, 10))}, density=0.1, init="uniform",
                               drop_count=drop_count)
        sp.begin_task(0, 100)
        return sp.update_topology(fraction)["dropped"]

    assert (dropped("round", 0.04), dropped("ceil", 0.04)) == (0, 1)  # 0.4 of 10 active
    assert (dropped("round", 0.26), dropped("ceil", 0.26)) == (3, 3)  # 2.6
    assert (dropped("round", 0.21), dropped("ceil", 0.21)) == (2, 3)  # 2.1


def test_authors_score_fill_leaks_density_where_scores_run_out():
    """A dense shared head during task 0: only the task's rows get a gradient. Gradient growth must
    regrow what was dropped from the other rows too; the authors' fill (the top of a full sort of
    score * inactive) runs into zero scores of active positions and grows fewer: the count falls."""
    def head_count(fill: str) -> int:
        torch.manual_seed(0)
        head = nn.Parameter(torch.randn(20, 16))
        sp = ContinualSparsity({"head": head}, density=1.0, init="uniform", growth="gradient", score_fill=fill)
        sp.begin_task(0, 100)
        grad = torch.zeros(20, 16)
        grad[:5] = torch.randn(5, 16)  # rows 0-4: the task's classes; the other rows get no gradient
        head.grad = grad
        stats = sp.update_topology(0.5)
        assert int(sp.mask["head"].sum()) == 320 - stats["dropped"] + stats["grown"]
        return stats["dropped"], int(sp.mask["head"].sum())

    assert head_count("random") == (0, 320)  # exact growth would regrow what it drops: skipped
    dropped, count = head_count("authors")
    assert dropped == 160 and count < 320


def test_dense_layers_are_left_alone_by_updates():
    torch.manual_seed(0)
    params = {"big": nn.Parameter(torch.randn(16, 16)), "small": nn.Parameter(torch.randn(2, 2))}
    # ERK 0.2: budget 52, eps 52/36 makes "small" (score 1) dense; "big" gets (52 - 4) ones
    sp = ContinualSparsity(params, density=0.2, init="ERK")
    assert sp.counts == {"big": 48, "small": 4}
    sp.begin_task(0, 10)
    small = params["small"].detach().clone()
    stats = sp.update_topology(0.5)
    assert stats["dropped"] == 24
    assert sp.mask["small"].all() and torch.equal(bits(params["small"]), bits(small))


def test_frozen_grad_zero_keeps_gradient_growth_off_frozen_positions():
    # reuse="value": one growth over all inactive positions, so the scores alone decide
    def grown_frozen(growth: str, frozen_grad: str, prepare: bool = True) -> int:
        net = tiny_net()
        sp = engine(net, density=0.4, init="uniform", growth=growth, frozen_grad=frozen_grad, reuse="value")
        train_task(net, sp, 0, steps=3)
        sp.end_task()
        sp.begin_task(1, 100)
        backward(net, torch.Generator().manual_seed(11))
        if prepare:
            sp.prepare_grads()
        old_mask = {name: m.clone() for name, m in sp.mask.items()}
        stats = sp.update_topology(0.5)
        added = {name: sp.mask[name] & ~old_mask[name] for name in old_mask}
        count = sum(int((added[name] & sp.frozen[name]).sum()) for name in added)
        assert count == stats["grown_frozen"]
        return count

    assert grown_frozen("gradient", "zero") == 0
    assert grown_frozen("gradient", "zero", prepare=False) == 0  # scores are masked at the update too
    assert grown_frozen("momentum", "zero") == 0
    assert grown_frozen("random", "zero") > 0
    assert grown_frozen("gradient", "keep") > 0


def test_momentum_growth_ignores_moments_of_frozen_positions():
    # Adam's L2 weight decay feeds wd * value into the moments of frozen positions in the mask; once
    # dropped they keep those moments. With frozen_grad="zero" momentum growth must still skip them.
    def grown_frozen(frozen_grad: str) -> int:
        net = tiny_net()
        sp = engine(net, density=0.4, init="uniform", growth="momentum", frozen_grad=frozen_grad, reuse="value")
        train_task(net, sp, 0, steps=2)
        sp.end_task()
        sp.begin_task(1, 100)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=0.5)
        backward(net, torch.Generator().manual_seed(3))
        sp.prepare_grads()
        optimizer.step()
        sp.after_step()
        for name, p in maskable(net).items():  # large moments at frozen positions outside the mask
            lingering = sp.frozen[name] & ~sp.mask[name]
            optimizer.state[p]["exp_avg"][lingering] = 1.0
            optimizer.state[p]["exp_avg_sq"][lingering] = 1e-4
        return sp.update_topology(0.5, optimizer)["grown_frozen"]

    assert grown_frozen("zero") == 0
    assert grown_frozen("keep") > 0


def test_reset_grown_moments_zeroes_adam_state_of_new_positions():
    def moments_at_added(reset: bool) -> tuple[float, float]:
        net = tiny_net()
        sp = engine(net, growth="random", reset_grown_moments=reset)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        sp.begin_task(0, 100)
        generator = torch.Generator().manual_seed(5)
        for _ in range(2):
            optimizer.zero_grad()
            backward(net, generator)
            optimizer.step()
            sp.after_step()
        old_mask = {name: m.clone() for name, m in sp.mask.items()}
        sp.update_topology(0.5, optimizer)
        total_m = total_v = 0.0
        for name, p in maskable(net).items():
            added = sp.mask[name] & ~old_mask[name]
            state = optimizer.state[p]
            total_m += float(state["exp_avg"][added].abs().sum())
            total_v += float(state["exp_avg_sq"][added].sum())
            assert (state["exp_avg"][~added] != 0).any()
        return total_m, total_v

    assert moments_at_added(True) == (0.0, 0.0)
    assert min(moments_at_added(False)) > 0


def test_new_weights_random_and_zero():
    for mode in ("random", "zero"):
        net = tiny_net()
        params = maskable(net)
        initial = {name: p.detach().clone() for name, p in params.items()}
        sp = engine(net, new_weights=mode)
        sp.begin_task(0, 4)
        for name, p in params.items():  # task 0 always starts from the initial random values
            assert torch.equal(bits(p)[sp.mask[name]], bits(initial[name])[sp.mask[name]])
        train_task(net, sp, 0, steps=4, begin=False)
        sp.end_task()
        sp.begin_task(1, 10)
        for name, p in params.items():
            mask, frozen = sp.mask[name], sp.frozen[name]
            assert torch.equal(bits(p)[mask & frozen], bits(sp.values[name])[mask & frozen])
            expected = initial[name] if mode == "random" else torch.zeros_like(p)
            assert torch.equal(bits(p)[mask & ~frozen], bits(expected)[mask & ~frozen])
            assert (bits(p)[~mask] == 0).all()


# ---------------------------------------------------------------------- finished tasks
def test_finished_masks_never_change_and_use_task_restores_the_trained_subnetwork():
    net = tiny_net()
    sp = engine(net, growth="gradient")
    params = maskable(net)
    trained, stored = [], []
    for task in range(3):
        train_task(net, sp, task)
        trained.append({name: p.detach().clone() for name, p in params.items()})  # 0 outside the mask
        sp.end_task()
        stored.append({name: m.clone() for name, m in sp.masks[-1].items()})
    sp.begin_task(3, 12)
    train_task_steps = {name: p.detach().clone() for name, p in params.items()}
    for task in range(3):
        assert all(torch.equal(sp.masks[task][n], stored[task][n]) for n in params)
        assert all(int(sp.masks[task][n].sum()) == sp.counts[n] for n in params)
        with sp.use_task(task):
            for name, p in params.items():
                assert torch.equal(bits(p), bits(trained[task][name]))
        for name, p in params.items():  # the running task's weights are back
            assert torch.equal(bits(p), bits(train_task_steps[name]))
    with sp.use_task(3):  # the running task: nothing changes
        assert all(torch.equal(bits(p), bits(train_task_steps[n])) for n, p in params.items())
    with pytest.raises(ValueError, match="task 4 has no finished mask"):
        with sp.use_task(4):
            pass
    frozen_union = {n: stored[0][n] | stored[1][n] | stored[2][n] for n in params}
    assert all(torch.equal(sp.frozen[n], frozen_union[n]) for n in params)


def test_use_task_restores_params_after_an_exception():
    net = tiny_net()
    sp = engine(net)
    train_task(net, sp, 0, steps=2)
    sp.end_task()
    sp.begin_task(1, 10)
    before = {n: p.detach().clone() for n, p in maskable(net).items()}
    with pytest.raises(KeyError):
        with sp.use_task(0):
            raise KeyError("boom")
    assert all(torch.equal(bits(p), bits(before[n])) for n, p in maskable(net).items())


# ---------------------------------------------------------------------- schedules in the engine
def test_growth_schedules_pick_the_criterion_per_task():
    net = tiny_net()
    sp = engine(net, growth="0:random,1:gradient")
    growths = []
    for task in range(3):
        train_task(net, sp, task, steps=3)
        growths.append(sp.current_growth)
        sp.end_task()
    assert growths == ["random", "gradient", "gradient"]

    net = tiny_net()
    sp = engine(net, growth="random,free<0.8:momentum")  # task 0 uses 93 of 312: free 0.70 after it
    train_task(net, sp, 0, steps=3)
    assert sp.current_growth == "random"
    sp.end_task()
    assert sp.free_fraction() == pytest.approx(1 - 93 / 312)
    sp.begin_task(1, 3)
    assert sp.current_growth == "momentum"


def test_maybe_update_follows_the_schedule():
    net = tiny_net()
    sp = engine(net, update_frequency=4, t_end=0.5)
    sp.begin_task(0, 20)  # T_end = 10: updates at 4 and 8
    results = {step: sp.maybe_update(step) for step in range(0, 21)}
    assert [s for s, r in results.items() if r is not None] == [4, 8]
    assert results[4]["drop_fraction"] == pytest.approx(0.25 * (1 + 0.30901699437494745))  # cos(0.4 pi)


# ---------------------------------------------------------------------- capacity
def hand_masks():
    B = lambda rows: torch.tensor(rows, dtype=torch.bool)  # noqa: E731
    return [
        {"a": B([[1, 1], [0, 0]]), "b": B([1, 0, 0])},
        {"a": B([[0, 1], [1, 0]]), "b": B([1, 1, 0])},
        {"a": B([[1, 1], [0, 0]]), "b": B([0, 0, 1])},
    ]


def test_overlap_matrix_by_hand():
    # sizes 3, 4, 3; shared: (0,1) 2, (0,2) 2, (1,2) 1; entry (i, j) divides by |M_j|
    expected = [[1, 2 / 4, 2 / 3], [2 / 3, 1, 1 / 3], [2 / 3, 1 / 4, 1]]
    np.testing.assert_allclose(overlap_matrix(hand_masks()), expected, rtol=1e-15)
    assert overlap_matrix([]).shape == (0, 0)


def test_capacity_over_tasks_by_hand():
    table = capacity_over_tasks(hand_masks())
    assert list(table.columns) == ["task", "layer", "numel", "count", "reused", "used", "used_fraction"]
    rows = table[["task", "layer", "numel", "count", "reused", "used"]].values.tolist()
    assert rows == [
        [0, "a", 4, 2, 0, 2], [0, "b", 3, 1, 0, 1], [0, "all", 7, 3, 0, 3],
        [1, "a", 4, 2, 1, 3], [1, "b", 3, 2, 1, 2], [1, "all", 7, 4, 2, 5],
        [2, "a", 4, 2, 2, 3], [2, "b", 3, 1, 0, 3], [2, "all", 7, 3, 2, 6],
    ]
    assert table.loc[table["layer"] == "all", "used_fraction"].tolist() == [3 / 7, 5 / 7, 6 / 7]


def test_capacity_table_and_describe_after_training():
    net = tiny_net(bn=True)
    sp = engine(net, growth="random")
    for task in range(2):
        train_task(net, sp, task, steps=6)
        sp.end_task()
    table = sp.capacity()
    over = capacity_over_tasks(sp.masks)
    last = over[over["task"] == 1].reset_index(drop=True)
    assert table["layer"].tolist() == ["0.weight", "3.weight", "6.weight", "all"]
    assert table["used"].tolist() == last["used"].tolist()
    assert table["reused"].tolist() == last["reused"].tolist()
    assert table["task_count"].tolist() == [23, 27, 43, 93]
    assert (table["used"] + table["free"] == table["numel"]).all()
    assert table["numel"].tolist() == [72, 144, 96, 312]
    assert table["reused_fraction"].tolist() == pytest.approx((table["reused"] / table["task_count"]).tolist())
    assert table["used"].iloc[-1] == 2 * 93 - table["reused"].iloc[-1]

    view = describe(net, sp)
    assert list(view.columns) == ["layer", "shape", "masked", "density", "count", "used", "free", "reused"]
    assert view["masked"].tolist() == [True, False, False, True, True]  # BatchNorm weight and bias
    masked = view[view["masked"]]
    assert masked["count"].tolist() == [23, 27, 43]
    assert masked["density"].tolist() == pytest.approx([23 / 72, 27 / 144, 43 / 96])
    assert masked["used"].tolist() == table["used"].tolist()[:3]
    assert masked["reused"].tolist() == table["reused"].tolist()[:3]
    assert view.loc[~view["masked"], "used"].isna().all()


# ---------------------------------------------------------------------- persistence
def test_masks_round_trip_bit_packed(tmp_path):
    net = tiny_net()
    sp = engine(net)
    for task in range(2):
        train_task(net, sp, task, steps=3)
        sp.end_task()
    sp.save_masks(tmp_path / "masks.pt")
    loaded = load_masks(tmp_path / "masks.pt")
    assert len(loaded) == 2
    for stored, original in zip(loaded, sp.masks):
        assert list(stored) == list(original)
        assert all(stored[n].dtype == torch.bool and torch.equal(stored[n], original[n]) for n in original)
    raw = torch.load(tmp_path / "masks.pt", weights_only=True)
    assert raw["tasks"][0]["0.weight"].dtype == torch.uint8 and raw["tasks"][0]["0.weight"].numel() == 9  # 72 bits
    # the bytes do not depend on the file's name (records are written to a temporary name, then renamed)
    sp.save_masks(tmp_path / ".masks.pt.x1y2.tmp")
    assert (tmp_path / ".masks.pt.x1y2.tmp").read_bytes() == (tmp_path / "masks.pt").read_bytes()

    with pytest.raises(DataError, match="no such masks file"):
        load_masks(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a torch file")
    with pytest.raises(DataError, match="junk.pt: not a readable masks file"):
        load_masks(tmp_path / "junk.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a cldst masks file"):
        load_masks(tmp_path / "other.pt")


def test_state_dict_resumes_exactly():
    net = tiny_net()
    sp = engine(net, growth="random")
    train_task(net, sp, 0, steps=4)
    sp.end_task()
    sp.begin_task(1, 50)
    twin_net = copy.deepcopy(net)
    twin = engine(twin_net, growth="random")
    twin.load_state_dict(sp.state_dict())
    for s in (sp, twin):
        s.update_topology(0.4)
        s.end_task()
    a, b = maskable(net), maskable(twin_net)
    for name in a:
        assert torch.equal(sp.mask[name], twin.mask[name])
        assert torch.equal(bits(a[name]), bits(b[name]))
        assert torch.equal(bits(sp.values[name]), bits(twin.values[name]))
    with pytest.raises(ValueError, match="other layers or per-layer counts"):
        engine(tiny_net(), density=0.5).load_state_dict(sp.state_dict())


# ---------------------------------------------------------------------- misuse
def test_task_order_is_enforced():
    sp = engine(tiny_net())
    with pytest.raises(RuntimeError, match="outside a task"):
        sp.maybe_update(3)
    with pytest.raises(ValueError, match="the next one is 0"):
        sp.begin_task(1, 10)
    sp.begin_task(0, 10)
    with pytest.raises(RuntimeError, match="while task 0 is running"):
        sp.begin_task(1, 10)
    sp.end_task()
    with pytest.raises(RuntimeError, match="without a running task"):
        sp.end_task()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"frozen_grad": "drop"}, r"^frozen_grad='drop' is not one of: zero, keep$"),
        ({"new_weights": "ones"}, r"^new_weights='ones' is not one of: random, zero$"),
        ({"update_frequency": 0}, r"^update_frequency=0 must be a positive integer"),
        # alpha and drop_min are Config's drop_fraction and drop_fraction_min: errors use those names
        ({"alpha": 1.0}, r"^drop_fraction=1.0, drop_fraction_min=0.0: need 0 <= drop_fraction_min <= drop_fraction < 1"),
        ({"drop_min": 0.6}, r"drop_fraction_min=0.6"),
        ({"t_end": 0.0}, r"^t_end=0.0 must be in \(0, 1\]"),
        ({"growth": "magic"}, r"^growth 'magic' is not one of"),
        ({"drop": "random"}, r"^drop 'random' is not one of: magnitude, magnitude_threshold$"),
        ({"init": "dense"}, r"^sparse_init='dense' is not one of: uniform, ERK$"),
        ({"density": 0}, r"^density=0 must be in \(0, 1\]"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        engine(tiny_net(), **options)


def run_two_tasks_of_every_kind(net: nn.Module, reuse: str, move=lambda t: t, engine_device=None) -> ContinualSparsity:
    """Two tasks (the second reuses frozen weights) with topology updates, invariants after each step.
    engine_device: torch's default device while the engine's own code runs (not the forward/backward)."""
    extra = {"drop": "magnitude_threshold", "score_fill": "authors", "drop_count": "ceil"} if reuse == "authors" else {}
    inside = (lambda: torch.device(engine_device)) if engine_device else contextlib.nullcontext
    with inside():
        sp = engine(net, growth="gradient", reuse=reuse, **extra)
    for task in range(2):
        with inside():
            sp.begin_task(task, 9)
        generator = torch.Generator().manual_seed(task)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05, weight_decay=0.1)
        for step in range(1, 10):
            x, y = batch(generator)
            optimizer.zero_grad()
            F.cross_entropy(net(move(x)), move(y)).backward()
            with inside():
                sp.step(optimizer, step)  # updates at steps 3, 6, 9
                sp.check_invariants()
        with inside():
            sp.end_task()
    sp.check_invariants()
    assert_exact_counts(sp)
    return sp


@pytest.mark.parametrize("reuse", REUSES)
def test_every_reuse_rule_keeps_its_tensors_on_the_parameters_device(reuse):
    """The engine's tensors live on the parameters' device, never on torch's default device: with the
    default device set to `meta` (where no value exists) while the engine runs, and the network on the
    CPU, a tensor made without device= lands on meta and mixing it with the masks fails (as a CPU tensor
    did with CUDA masks in _count_active, reuse value/authors)."""
    sp = run_two_tasks_of_every_kind(tiny_net(), reuse, engine_device="meta")
    assert sp.mask["0.weight"].device.type == "cpu" and len(sp.masks) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("reuse", REUSES)
def test_on_cuda_the_invariants_hold(reuse):
    run_two_tasks_of_every_kind(tiny_net().cuda(), reuse, move=lambda t: t.cuda())
