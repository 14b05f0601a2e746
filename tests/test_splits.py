"""Task splits: pinned class orders, complete disjoint coverage, clear errors."""

from __future__ import annotations

import pytest

from cldst.data import ORDERS, TaskSplit, make_split
from cldst.errors import ConfigError


def test_natural_order():
    split = make_split(100, 10)
    assert split.class_order == tuple(range(100)) and split.classes_per_task == 10 and split.num_classes == 100
    assert split.classes(3) == (30, 31, 32, 33, 34, 35, 36, 37, 38, 39)
    assert split.classes(0) == tuple(range(10)) and split.classes(9) == tuple(range(90, 100))


def test_random_order_is_pinned_for_seed_0():
    split = make_split(100, 10, "random", seed=0)
    assert split.classes(0) == (44, 19, 93, 90, 71, 69, 37, 95, 53, 91)
    assert split.class_order[10:12] == (81, 42)
    assert sorted(split.class_order) == list(range(100))
    assert make_split(10, 2, "random", seed=0).class_order == (4, 1, 7, 5, 3, 9, 0, 8, 6, 2)


def test_a_split_is_a_pure_function_of_its_arguments():
    assert make_split(100, 10, "random", 3) == make_split(100, 10, "random", 3)
    assert make_split(100, 10, "random", 3).class_order != make_split(100, 10, "random", 4).class_order
    assert make_split(100, 10, "natural", 3) == make_split(100, 10, "natural", 4)  # seed unused


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("num_tasks", [5, 10, 20])
def test_tasks_cover_every_class_exactly_once(order, num_tasks):
    split = make_split(100, num_tasks, order, seed=1)
    tasks = [split.classes(t) for t in range(num_tasks)]
    assert all(len(c) == 100 // num_tasks for c in tasks)
    assert sorted(c for task in tasks for c in task) == list(range(100))
    assert [c for task in tasks for c in task] == list(split.class_order)


def test_errors_name_the_field_and_what_is_allowed():
    with pytest.raises(ConfigError) as err:
        make_split(100, 7)
    assert str(err.value) == "num_tasks=7 does not divide num_classes=100 (allowed: 1, 2, 4, 5, 10, 20, 25, 50, 100)"
    with pytest.raises(ConfigError, match="num_tasks=0 does not divide num_classes=6 \\(allowed: 1, 2, 3, 6\\)"):
        make_split(6, 0)
    with pytest.raises(ConfigError, match="class_order='sorted' is not one of: natural, random"):
        make_split(100, 10, "sorted")
    split = make_split(100, 10)
    with pytest.raises(ConfigError, match="task 10 is out of range \\(allowed: 0..9\\)"):
        split.classes(10)
    with pytest.raises(ConfigError, match="task -1 is out of range"):
        split.classes(-1)
    with pytest.raises(ConfigError, match="must be an integer"):
        split.classes(1.5)
    with pytest.raises(ConfigError, match="permutation"):
        TaskSplit((0, 0, 1, 2), 2)
