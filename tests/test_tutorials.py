"""Tutorial notebooks: each runs end to end on synth100 and shows the right numbers; their helpers
(cldst/tutorial.py) are exact on hand-computed cases."""

import ast
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from cldst import metrics, tutorial
from cldst.errors import ConfigError
from cldst.sparse import ContinualSparsity, drop_fraction, layer_counts, overlap_matrix
from cldst.sparse.criteria import top_n
from cldst.train import Trainer

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TUTORIALS = ("tutorial_1_sparse_init", "tutorial_2_drop_and_grow", "tutorial_3_masks_across_tasks", "tutorial_4_metrics")
# A network and data far below tutorial scale, for the helpers that need the real engine.
MICRO = dict(width=4, train_per_class=10, test_per_class=2, batch_size=16, epochs=3, update_frequency=5)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def run_tutorial(name: str, tmp_path: Path, monkeypatch) -> dict:
    """Execute a tutorial with papermill; return the value its cell tagged "checks" displayed."""
    import papermill

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one thread on the shared machine
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), kernel_name="python3",
                               progress_bar=False, cwd=str(tmp_path))  # fmt: skip
    nb = json.loads(out.read_text())
    (cell,) = [c for c in nb["cells"] if "checks" in c["metadata"].get("tags", [])]
    (shown,) = [o for o in cell["outputs"] if o["output_type"] == "execute_result"]
    return ast.literal_eval("".join(shown["data"]["text/plain"]))


def tiny_shapes() -> dict[str, tuple[int, ...]]:
    return tutorial.resnet18_shapes(width=8)


# ---------------------------------------------------------------------- the notebooks
def test_tutorials_are_committed_clean_with_a_checks_cell():
    for name in TUTORIALS:
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", name
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), name
        assert sum("checks" in c["metadata"].get("tags", []) for c in code) == 1, name


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_tutorial_1_totals_are_the_sums_of_layer_counts(tmp_path, monkeypatch):
    totals = run_tutorial(TUTORIALS[0], tmp_path, monkeypatch)
    shapes = tutorial.resnet18_shapes(width=64)
    expected = {(init, s): sum(layer_counts(shapes, round(1 - s, 10), init).values())
                for init in ("uniform", "ERK") for s in (0.8, 0.9, 0.95)}  # fmt: skip
    assert totals == expected
    total = sum(math.prod(shape) for shape in shapes.values())
    assert total == 11_210_432
    for (_, s), count in totals.items():  # each of the 21 layers rounds by at most 1/2
        assert abs(count - (1 - s) * total) <= 21 / 2


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_tutorial_2_update_counts_are_exact(tmp_path, monkeypatch):
    summary = run_tutorial(TUTORIALS[1], tmp_path, monkeypatch)
    # 300 images x 10 classes in batches of 64: 47 steps; the first update at update_frequency = 15
    assert (summary["step"], summary["total_steps"]) == (15, 47)
    fraction = drop_fraction(15, 47, alpha=0.5)
    assert summary["drop_fraction"] == fraction
    shapes = tiny_shapes()
    counts = layer_counts(shapes, 0.1, "uniform")
    n = sum(round(fraction * k) for name, k in counts.items() if k < math.prod(shapes[name]))
    growths = ["random", "unfired", "gradient", "momentum"]
    assert summary["dropped"] == {g: n for g in growths}
    assert summary["active_after"] == {g: sum(counts.values()) for g in growths} == {g: 18096 for g in growths}
    assert summary["every_layer_exact"] == {g: True for g in growths}


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_tutorial_3_task0_is_untouched_and_reuse_adds_up(tmp_path, monkeypatch):
    checks = run_tutorial(TUTORIALS[2], tmp_path, monkeypatch)
    assert checks["weights_bitwise_equal"] is True
    assert checks["acc_task0_before"] == checks["acc_task0_after"]
    assert 0 <= checks["acc_task0_before"] <= 100
    shapes = tiny_shapes()
    counts = layer_counts(shapes, 0.2, "ERK")
    size = sum(counts.values())
    assert checks["mask_size"] == [size] * 4
    assert [n + r for n, r in zip(checks["new"], checks["reused"])] == [size] * 4
    assert (checks["new"][0], checks["reused"][0]) == (size, 0)
    # ERK's dense layers are in every mask, so every later task reuses at least all of them
    dense = sum(k for name, k in counts.items() if k == math.prod(shapes[name]))
    assert all(r >= dense for r in checks["reused"][1:])


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_tutorial_4_metrics_by_hand_match_the_matrix_and_the_record(tmp_path, monkeypatch):
    checks = run_tutorial(TUTORIALS[3], tmp_path, monkeypatch)
    A = checks["acc_matrix"]
    T, images = len(A), checks["test_images_per_task"]
    assert (T, images) == (5, 400)
    for t in range(T):
        assert all(A[t][i] is None for i in range(t + 1, T))
        for i in range(t + 1):
            assert (A[t][i] * images / 100).is_integer()  # a count of correct test images
    # (that later rows equal A[i][i] is no check here: the loop copies them; tests/test_train.py evaluates
    # every task afresh at the end of a run)
    acc = sum(A[-1]) / T
    bwt = sum(A[-1][i] - A[i][i] for i in range(T - 1)) / (T - 1)
    for source in (checks["by_hand"], checks["recorded"]):
        assert math.isclose(source["acc"], acc, rel_tol=1e-12)
        assert source["bwt"] == bwt
    assert checks["by_hand"] == pytest.approx(checks["recorded"], rel=1e-12, abs=1e-9)


# ---------------------------------------------------------------------- helpers: sparse init
TWO_LAYERS = {"backbone.conv1.weight": (8, 8), "head.weight": (2, 2)}
# ERK at density 0.5: scores 16/64 and 4/4; budget 34; eps 34/20 = 1.7 makes the head dense; then
# eps = 30/16 gives conv1 0.46875, i.e. 30 of 64. Uniform: 32 and 2.


def test_short_names():
    assert tutorial.short_name("backbone.conv1.weight") == "stem"
    assert tutorial.short_name("backbone.layer2.0.shortcut.0.weight") == "layer2.0.shortcut"
    assert tutorial.short_name("backbone.layer1.1.conv2.weight") == "layer1.1.conv2"
    assert tutorial.short_name("head.weight") == "head"


def test_init_table_and_its_views_on_a_hand_computed_case():
    table = tutorial.init_table(TWO_LAYERS, sparsities=(0.5,))
    assert list(table["layer"]) == ["stem", "head", "stem", "head"]
    assert list(table["count"]) == [32, 2, 30, 4]
    assert list(table["density"]) == [0.5, 0.5, 0.46875, 1.0]
    totals = tutorial.count_totals(table)
    assert list(totals["sum of k_l"]) == [34, 34] and list(totals["difference"]) == [0.0, 0.0]
    dense = tutorial.dense_layers(table)
    assert list(dense.index) == ["head"] and dense.loc["head", "50% sparsity"] == 1.0
    per_unit = tutorial.connections_per_unit(table, 0.5).set_index("layer")
    assert list(per_unit["fan-in"]) == [8, 2]
    assert list(per_unit["uniform: kept per unit"]) == [4.0, 1.0]
    assert list(per_unit["ERK: kept per unit"]) == [3.75, 2.0]


def test_plot_init_densities_draws_one_bar_per_layer_and_init():
    table = tutorial.init_table(TWO_LAYERS, sparsities=(0.5, 0.75))
    fig = tutorial.plot_init_densities(table)
    assert len(fig.axes) == 2
    heights = [patch.get_height() for patch in fig.axes[0].patches]
    assert heights == [0.5, 0.5, 0.46875, 1.0]  # uniform stem, head, then ERK stem, head


# ---------------------------------------------------------------------- helpers: drop and grow
def hand_update(growth: str, after: list[list[int]], regrown: int) -> tutorial.UpdateDemo:
    """A 1x1 conv [2, 3, 1, 1] with k = 3: position (0, 0) dropped, then `after` active."""
    as_mask = lambda rows: torch.tensor(rows, dtype=torch.bool).view(2, 3, 1, 1)
    return tutorial.UpdateDemo(
        growth, before={"w": as_mask([[1, 1, 0], [0, 0, 1]])}, dropped={"w": as_mask([[1, 0, 0], [0, 0, 0]])},
        after={"w": as_mask(after)}, counts={"w": 3}, stats={"dropped": 1, "regrown": regrown, "drop_fraction": 1 / 3},
    )  # fmt: skip


def test_update_counts_and_drawing_on_hand_made_updates():
    updates = {
        "random": hand_update("random", [[0, 1, 1], [0, 0, 1]], regrown=0),  # grew (0, 2)
        "gradient": hand_update("gradient", [[1, 1, 0], [0, 0, 1]], regrown=1),  # grew (0, 0) straight back
        "momentum": hand_update("momentum", [[1, 1, 1], [0, 0, 1]], regrown=1),  # broken: 4 active
    }
    table = tutorial.update_counts(updates).set_index("growth")
    assert list(table["grown"]) == [1, 1, 2]
    assert list(table["grown back at once"]) == [0, 1, 1]
    assert list(table["active after"]) == [3, 3, 4]
    assert list(table["every layer exact"]) == [True, True, False]
    fig = tutorial.plot_update(updates, "w")
    images = [ax.images[0].get_array() for ax in fig.axes]
    assert len(images) == 5
    assert images[0].tolist() == [[1, 1, 0], [0, 0, 1]]  # before
    assert images[1].tolist() == [[2, 1, 0], [0, 0, 1]]  # dropped in black (2)
    assert images[2].tolist() == [[0, 1, 2], [0, 0, 1]]  # random: kept 1, grown 2
    assert images[3].tolist() == [[2, 1, 0], [0, 0, 1]]  # gradient: grew the dropped one back
    with pytest.raises(ConfigError, match="layer 'nope' is not masked"):
        tutorial.plot_update(updates, "nope")


def test_plot_drop_schedule_marks_the_update_steps():
    fig = tutorial.plot_drop_schedule(47, 15, mark=15)
    ax = fig.axes[0]
    updates, marked = (c.get_offsets() for c in ax.collections)
    assert updates[:, 0].tolist() == [15, 30, 45]
    assert updates[:, 1].tolist() == [drop_fraction(s, 47) for s in (15, 30, 45)]
    assert marked.tolist() == [[15, drop_fraction(15, 47)]]
    curve = ax.lines[0].get_ydata()
    assert len(curve) == 48 and curve[0] == 0.5


def test_one_update_per_growth_on_the_real_engine():
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="steps=7 is not a topology-update step"):
        tutorial.start_task0(steps=7, **MICRO)
    demo = tutorial.start_task0(sparse_init="uniform", density=0.1, **MICRO)
    sparsity = demo.trainer.sparsity
    assert demo.step == 5 and sparsity.total_steps == 21  # 100 images / 16 -> 7 steps x 3 epochs
    mask_before = {name: m.clone() for name, m in sparsity.mask.items()}
    weights_before = {name: p.detach().clone() for name, p in sparsity.params.items()}
    with pytest.raises(ConfigError, match="growth 'nope' is not one of"):
        tutorial.update_with_each_growth(demo, ["nope"])
    updates = tutorial.update_with_each_growth(demo)
    assert list(updates) == ["random", "unfired", "gradient", "momentum"]
    for name, p in sparsity.params.items():  # the demo itself is untouched
        assert torch.equal(sparsity.mask[name], mask_before[name]) and torch.equal(p, weights_before[name])
    fraction = drop_fraction(5, 21)
    for u in updates.values():
        assert u.stats["drop_fraction"] == fraction
        assert u.stats["regrown"] == sum(int((u.grown(n) & u.dropped[n]).sum()) for n in u.before)
        for name, k in u.counts.items():
            n = 0 if k == u.before[name].numel() else round(fraction * k)
            assert torch.equal(u.before[name], mask_before[name])
            assert int(u.dropped[name].sum()) == int(u.grown(name).sum()) == n
            assert int(u.after[name].sum()) == k
    assert updates["unfired"].stats["regrown"] == 0  # a just-dropped position has fired
    # Gradient and momentum growth in the head, recomputed from the demo's gradient and Adam state (so
    # the copies carried both): the other tasks' rows get no gradient, and with more scored candidates
    # than n the pick is the deterministic top n.
    head = demo.trainer.net.head.weight
    state = demo.optimizer.state[head]
    scores = {"gradient": head.grad.abs(), "momentum": (state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-8)).abs()}
    for growth, score in scores.items():
        u = updates[growth]
        kept = u.before["head.weight"] & ~u.dropped["head.weight"]
        scored = ~kept & (score != 0)
        n = int(u.dropped["head.weight"].sum())
        assert not scored[10:].any() and int(scored.sum()) > n > 0
        assert torch.equal(u.grown("head.weight"), top_n(score, scored, n)), growth
    summary = tutorial.update_summary(demo, updates)
    assert summary["every_layer_exact"] == {g: True for g in updates}
    assert summary["active_after"]["random"] == sum(sparsity.counts.values())


# ---------------------------------------------------------------------- helpers: masks across tasks
def test_learn_task_keeps_earlier_subnetworks_bitwise():
    trainer = Trainer(tutorial.tiny_config(sparse_init="ERK", density=0.2, **MICRO))
    acc0 = tutorial.learn_task(trainer, 0)
    weights0 = tutorial.task_weights(trainer, 0)
    tutorial.learn_task(trainer, 1)
    same = tutorial.compare_weights(weights0, tutorial.task_weights(trainer, 0), trainer.sparsity.masks[0])
    assert same["torch.equal"].all() and (same["max |change|"] == 0).all()
    assert list(same["positions"]) == list(trainer.sparsity.counts.values())
    assert trainer.evaluate_task(0) == acc0
    assert len(trainer.updates) == 2 * 4  # updates at steps 5, 10, 15, 20 of each task's 21
    outside = {name: w[~trainer.sparsity.masks[0][name]] for name, w in weights0.items()}
    assert all((w == 0).all() for w in outside.values())


def test_new_vs_reused_and_overlap_on_hand_masks():
    masks = [{"w": torch.tensor(m, dtype=torch.bool)} for m in ([1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1])]
    table = tutorial.new_vs_reused(masks)
    assert list(table["new"]) == [2, 1, 1]
    assert list(table["reused"]) == [0, 1, 1]
    assert list(table["used after the task"]) == [2, 3, 4]
    assert list(table["used fraction"]) == [0.5, 0.75, 1.0]
    fig = tutorial.plot_new_vs_reused(table)
    assert [p.get_height() for p in fig.axes[0].patches] == [2, 1, 1, 0, 1, 1]
    fig = tutorial.plot_matrix(100 * overlap_matrix(masks), "overlap")
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["0.0", "0.0", "100.0", "100.0", "100.0", "50.0", "50.0", "50.0", "50.0"]


def test_expected_overlap_of_independent_masks():
    params = {name: nn.Parameter(torch.zeros(shape)) for name, shape in TWO_LAYERS.items()}
    sparsity = ContinualSparsity(params, density=0.5, init="ERK")
    assert sparsity.counts == {"backbone.conv1.weight": 30, "head.weight": 4}
    assert tutorial.expected_overlap(sparsity) == (30 * 30 / 64 + 4 * 4 / 4) / 34 == 0.53125


# ---------------------------------------------------------------------- helpers: metrics
A_HAND = np.array([[80.0, np.nan, np.nan], [70.0, 90.0, np.nan], [60.0, 85.0, 75.0]])


def test_bwt_and_fwt_terms_on_a_hand_matrix():
    terms = tutorial.bwt_terms(A_HAND)
    assert list(terms["A[i, i]"]) == [80.0, 90.0] and list(terms["A[2, i]"]) == [60.0, 85.0]
    assert list(terms["difference"]) == [-20.0, -5.0]
    assert terms["difference"].mean() == metrics.bwt(A_HAND) == -12.5
    fwt = tutorial.fwt_terms([10.0, 12.0, 9.0], [11.0, 10.0, 10.0])
    assert list(fwt["task i"]) == [1, 2] and list(fwt["difference"]) == [2.0, -1.0]
    assert fwt["difference"].mean() == metrics.fwt_standard([10.0, 12.0, 9.0], [11.0, 10.0, 10.0]) == 0.5


def test_compare_metrics_flags_a_mismatch():
    table = tutorial.compare_metrics({"acc": 71.25, "bwt": -1.0}, {"acc": 71.25, "bwt": -0.5, "other": 3})
    assert list(table["metric"]) == ["acc", "bwt"]
    assert list(table["match"]) == [True, False]


def test_plot_matrix_and_incremental_curve():
    fig = tutorial.plot_matrix(A_HAND, "A")
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["60.0", "70.0", "75.0", "80.0", "85.0", "90.0"]
    fig = tutorial.plot_incremental(A_HAND, chance=10.0)
    task0, task1, task2, mean, chance = fig.axes[0].lines
    assert list(mean.get_ydata()) == [80.0, 80.0, 220 / 3] == list(metrics.incremental_accuracy(A_HAND))
    assert list(task0.get_ydata()) == [80.0, 70.0, 60.0] and list(task2.get_xdata()) == [2]
    assert list(chance.get_ydata()) == [10.0, 10.0]


def test_plain_gives_literals():
    value = tutorial.plain({"a": np.array([1.5, np.nan]), "b": np.int64(3), "c": np.bool_(True), 4: (np.float32(0.5),)})
    assert value == {"a": [1.5, None], "b": 3, "c": True, "4": [0.5]}
    assert ast.literal_eval(repr(value)) == value
