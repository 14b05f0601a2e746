"""Analysis: tables, comparison with the paper, findings, figures and build_all, on tiny fake run records.

The records are written in the real format (config.json = Config(...).to_dict(), metrics.json with the
run's metrics) and read back with cldst.collect.collect, so the whole path from records to files is
exercised. Expected values are computed by hand in the comments.
"""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cldst import analysis  # noqa: E402
from cldst.analysis import findings as fnd  # noqa: E402
from cldst.analysis.figures import load_capacity, saturation  # noqa: E402
from cldst.analysis.findings import first_switch  # noqa: E402
from cldst.collect import collect  # noqa: E402
from cldst.config import Config  # noqa: E402
from cldst.errors import ConfigError  # noqa: E402
from cldst.plotting import GROWTH_COLORS  # noqa: E402

T = 10


def write_record(root: Path, cfg: Config, *, acc, bwt=0.0, fwt_authors=9.0, fwt_standard=1.0,
                 growth_per_task=None, capacity: dict[str, list[float]] | None = None) -> Path:
    path = root / cfg.experiment / cfg.run_id()
    path.mkdir(parents=True)
    # metrics only: a record without masks says so (save_masks is bookkeeping, not part of the run id)
    (path / "config.json").write_text(json.dumps({**cfg.to_dict(), "save_masks": False}))
    metrics = {
        "run_id": cfg.run_id(), "experiment": cfg.experiment, "acc": acc, "bwt": bwt,
        "fwt_authors": fwt_authors, "fwt_standard": fwt_standard,
        "incremental_acc": [acc + t for t in range(cfg.num_tasks)],  # mean over seeds = mean(acc) + t
        "used_fraction": [min(1.0, 0.1 * (t + 1)) for t in range(cfg.num_tasks)],
        "acc_matrix": [[acc] * (t + 1) + [None] * (cfg.num_tasks - t - 1) for t in range(cfg.num_tasks)],
        "growth_per_task": growth_per_task or [cfg.growth] * cfg.num_tasks,
        "train_seconds": 1.0, "eval_seconds": 0.5, "topology_updates": 4,
    }
    (path / "metrics.json").write_text(json.dumps(metrics))
    if capacity:
        rows = [{"task": t, "layer": layer, "used_fraction": used[t], "free": 1 - used[t]}
                for layer, used in capacity.items() for t in range(len(used))]
        pd.DataFrame(rows).to_csv(path / "capacity.csv", index=False)
    return path


def main_cfg(init, growth, density, seed, experiment="smoke/cifar100-10") -> Config:
    return Config(experiment=experiment, num_tasks=T, sparse_init=init, growth=growth, density=density, seed=seed)


# Capacity of the 80%-sparsity runs, per layer and task (0-based in the csv, 1-based once loaded).
UNIFORM_CAPACITY = {"conv1.weight": [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # >= 0.95 at task 5
                    "fc.weight": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.96],  # at task 10
                    "all": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9]}  # never
ERK_CAPACITY = {"conv1.weight": [1.0] * T,  # dense from task 1
                "fc.weight": [0.05 * (t + 1) for t in range(T)],  # never
                "all": [0.1 * (t + 1) for t in range(T)]}  # 1.0 at task 10


def write_table3_runs(root: Path) -> None:
    """A partial grid of the smoke 10-task CIFAR-100 experiment (4 of its 24 grid points)."""
    for seed, acc, bwt, fwt in [(0, 50.0, 1.0, 9.0), (1, 52.0, 2.0, 9.5), (2, 57.0, 3.0, 10.0)]:
        write_record(root, main_cfg("uniform", "random", 0.2, seed), acc=acc, bwt=bwt, fwt_authors=fwt,
                     capacity=UNIFORM_CAPACITY)
    for seed, acc, bwt in [(0, 60.0, -1.0), (1, 64.0, 0.0)]:
        write_record(root, main_cfg("ERK", "random", 0.2, seed), acc=acc, bwt=bwt, fwt_authors=8.0,
                     capacity=ERK_CAPACITY)
    write_record(root, main_cfg("uniform", "gradient", 0.1, 0), acc=70.0)
    write_record(root, main_cfg("ERK", "unfired", 0.05, 0), acc=40.0, fwt_standard=None)
    # Another profile's run of the same experiment: must not leak into the smoke tables.
    write_record(root, main_cfg("uniform", "random", 0.2, 0, experiment="paper/cifar100-10"), acc=99.0)


def write_adaptive_runs(root: Path) -> None:
    for growth, acc, per_task in [
        ("random", 70.0, None),
        ("gradient", 72.0, None),
        ("0:random,5:gradient", 75.0, ["random"] * 5 + ["gradient"] * 5),  # switches at task 6
        (fnd.CAPACITY_POLICY, 74.0, ["random"] * 3 + ["gradient"] * 7),  # switches at task 4
    ]:
        cfg = Config(experiment="smoke/adaptive", num_tasks=T, sparse_init="ERK", density=0.1, growth=growth)
        write_record(root, cfg, acc=acc, growth_per_task=per_task)


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_table3_runs(root)
    write_adaptive_runs(root)
    runs, curves = collect(root)
    return root, runs, curves


@pytest.fixture(scope="module")
def built_tables(collected, tmp_path_factory):
    _, runs, _ = collected
    out = tmp_path_factory.mktemp("tables")
    tables, notes = analysis.build_tables(runs, "smoke", out)
    return out, tables, notes


def cell(cells: pd.DataFrame, init, growth, sparsity, metric) -> pd.Series:
    row = cells[(cells.sparse_init == init) & (cells.growth == growth) & (cells.sparsity == sparsity)
                & (cells.metric == metric)]
    assert len(row) == 1
    return row.iloc[0]


# ---------------------------------------------------------------- tables
def test_table_files_and_missing_lines(built_tables):
    out, tables, notes = built_tables
    assert list(tables) == ["table3"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"smoke_table3_cifar100_10tasks{suffix}" for suffix in
        [".csv", ".md", ".tex", "_vs_paper.csv", "_vs_paper.md"])
    assert notes[:2] == ["table1: no runs of experiment cifar100-20 (profile smoke)",
                         "table2: no runs of experiment miniimagenet-10 (profile smoke)"]
    assert notes[2].startswith("table3: partial, 4 of 24 grid points of cifar100-10 have runs; missing "
                               "(sparse_init/growth/density): uniform/random/0.1, uniform/random/0.05,")
    assert notes[3] == "table4: no runs of experiment cifar100-5 (profile smoke)"


def test_table_values_are_the_mean_and_sample_std_over_seeds(built_tables):
    _, tables, _ = built_tables
    cells = tables["table3"].cells
    assert len(cells) == 2 * 4 * 3 * 4  # inits x growths x sparsities x (ACC, BWT, FWT, FWT_standard)
    acc = cell(cells, "uniform", "random", 0.8, "ACC")  # 50, 52, 57 (the paper-profile 99 left out)
    assert (acc["mean"], acc["n"]) == (53.0, 3)
    assert math.isclose(acc["std"], math.sqrt((9 + 1 + 16) / 2), rel_tol=1e-12)
    bwt = cell(cells, "uniform", "random", 0.8, "BWT")  # 1, 2, 3
    assert (bwt["mean"], bwt["std"]) == (2.0, 1.0)
    erk = cell(cells, "ERK", "random", 0.8, "ACC")  # 60, 64
    assert erk["mean"] == 62.0 and math.isclose(erk["std"], math.sqrt(8), rel_tol=1e-12)
    single = cell(cells, "uniform", "gradient", 0.9, "ACC")
    assert single["mean"] == 70.0 and single["n"] == 1 and math.isnan(single["std"])
    null = cell(cells, "ERK", "unfired", 0.95, "FWT_standard")  # metrics.json had null: not counted
    assert null["n"] == 0 and math.isnan(null["mean"])
    absent = cell(cells, "uniform", "momentum", 0.95, "ACC")
    assert absent["n"] == 0 and math.isnan(absent["mean"]) and not absent["best"]


def test_best_per_column_is_marked_in_csv_md_and_tex(built_tables):
    out, tables, _ = built_tables
    csv = pd.read_csv(out / "smoke_table3_cifar100_10tasks.csv")
    best = csv[csv["best"]]
    marked = {(r.sparsity, r.metric): (r.sparse_init, r.growth) for r in best.itertuples()}
    assert marked[(0.8, "ACC")] == ("ERK", "random")  # 62 > 53
    assert marked[(0.8, "BWT")] == ("uniform", "random")  # 2 > -0.5
    assert marked[(0.8, "FWT")] == ("uniform", "random")  # 9.5 > 8
    assert marked[(0.9, "ACC")] == ("uniform", "gradient")  # the only run
    assert len(best[(best.sparsity == 0.8) & (best.metric == "ACC")]) == 1
    assert csv.loc[(csv.sparse_init == "uniform") & (csv.growth == "random") & (csv.sparsity == 0.8)
                   & (csv.metric == "ACC"), "mean"].item() == 53.0
    md = (out / "smoke_table3_cifar100_10tasks.md").read_text()
    assert "| uniform | random | 53.00 ± 3.61 | **2.00 ± 1.00** | **9.50 ± 0.50** | – | – | – | – | – | – |" in md
    assert "| ERK | random | **62.00 ± 2.83** | -0.50 ± 0.71 | 8.00 ± 0.00 |" in md
    assert "SMOKE PROFILE" in md
    tex = (out / "smoke_table3_cifar100_10tasks.tex").read_text()
    assert r"ERK & random & \textbf{62.00 $\pm$ 2.83} & -0.50 $\pm$ 0.71" in tex
    assert r"\multicolumn{3}{c}{80\% sparsity}" in tex


def test_vs_paper_diff_is_ours_minus_paper(built_tables):
    out, tables, _ = built_tables
    comparison = tables["table3"].comparison
    assert list(comparison.columns) == ["init", "growth", "sparsity", "metric", "ours_mean", "ours_std",
                                        "paper_mean", "paper_std", "diff"]
    assert len(comparison) == 72  # every cell of the paper's Table 3
    row = comparison[(comparison.init == "uniform") & (comparison.growth == "random")
                     & (comparison.sparsity == 0.8) & (comparison.metric == "ACC")].iloc[0]
    assert (row.paper_mean, row.paper_std, row.ours_mean) == (58.04, 1.96, 53.0)
    assert row["diff"] == 53.0 - 58.04
    assert comparison["ours_mean"].notna().sum() == 4 * 3  # 4 grid points with runs x ACC/BWT/FWT
    saved = pd.read_csv(out / "smoke_table3_cifar100_10tasks_vs_paper.csv")
    assert saved["diff"].notna().sum() == 12
    assert (out / "smoke_table3_cifar100_10tasks_vs_paper.md").read_text().startswith("**NOT COMPARABLE")


def test_paper_profile_outputs_are_unprefixed_and_comparable(collected, tmp_path):
    _, runs, _ = collected
    result = analysis.build_table(runs[runs.experiment == "paper/cifar100-10"], analysis.TABLES["table3"], "paper",
                                  tmp_path)
    assert {p.name for p in result.paths} == {f"table3_cifar100_10tasks{s}" for s in
                                              [".csv", ".md", ".tex", "_vs_paper.csv", "_vs_paper.md"]}
    assert "NOT COMPARABLE" not in (tmp_path / "table3_cifar100_10tasks_vs_paper.md").read_text()
    assert cell(result.cells, "uniform", "random", 0.8, "ACC")["mean"] == 99.0


def test_paper_numbers_and_unknown_table():
    table3 = analysis.paper_numbers("table3")
    assert len(table3) == 72 and set(table3.sparse_init) == {"uniform", "ERK"}
    with pytest.raises(ConfigError, match="table 'table9' is not one of: table1, table2, table3, table4"):
        analysis.paper_numbers("table9")


# ---------------------------------------------------------------- findings
def acc_cells(rows, std=1.0, n=3) -> pd.DataFrame:
    return pd.DataFrame([{"table": t, "sparse_init": i, "growth": g, "sparsity": s, "metric": "ACC", "mean": m,
                          "std": std, "n": n} for t, i, g, s, m in rows])


def test_finding_I_effect_and_interval_by_hand():
    erk_wins = acc_cells([("t", "ERK", "random", 0.8, 70), ("t", "ERK", "gradient", 0.8, 72),
                          ("t", "uniform", "random", 0.8, 60), ("t", "uniform", "gradient", 0.8, 61)])
    est = fnd.erk_beats_uniform(erk_wins)
    # (10 + 11) / 2; SE^2 = 4 * (1/2)^2 * 1/3 = 1/3, df = (1/3)^2 / (4 (1/12)^2 / 2) = 8, t = 2.306004
    assert est.effect == 10.5 and est.seeds == 3
    assert (est.low, est.high) == pytest.approx((10.5 - 2.306004 / math.sqrt(3), 10.5 + 2.306004 / math.sqrt(3)), abs=1e-5)
    assert est.verdict == "holds" and "2 paired cells (80%: +10.50)" in est.evidence
    swapped = erk_wins.assign(sparse_init=erk_wins.sparse_init.map({"ERK": "uniform", "uniform": "ERK"}))
    assert fnd.erk_beats_uniform(swapped).verdict == "reversed"
    assert fnd.erk_beats_uniform(erk_wins.assign(std=20.0)).verdict == "inconclusive"
    assert fnd.erk_beats_uniform(erk_wins[erk_wins.sparse_init == "ERK"]).verdict == fnd.NOT_ENOUGH
    assert fnd.erk_beats_uniform(erk_wins.assign(sparsity=0.95)).verdict == fnd.NOT_ENOUGH  # not a low sparsity


def test_findings_II_and_III_verdicts_flip_with_the_data():
    steady = acc_cells([("t", "uniform", g, 0.95, m) for g, m in [("random", 70), ("gradient", 71), ("momentum", 72)]]
                       + [("t", "ERK", g, 0.95, m) for g, m in [("random", 60), ("gradient", 70), ("momentum", 80)]],
                       std=0.0)
    est = fnd.uniform_steadier(steady)
    # variances across growths (no seed noise): ERK 100, uniform 1; effect sqrt(100 - 1)
    assert est.effect == pytest.approx(math.sqrt(99)) and est.verdict == "holds"
    assert est.low == pytest.approx(math.sqrt(99)) and est.high == pytest.approx(math.sqrt(99))
    assert "uniform 1.00 vs ERK 10.00" in est.evidence
    swapped = steady.assign(sparse_init=steady.sparse_init.map({"ERK": "uniform", "uniform": "ERK"}))
    assert fnd.uniform_steadier(swapped).verdict == "reversed"
    # seed noise of 3 points over 3 seeds: each cell mean's variance is 3, so 1 + 3 = 4 of ERK's observed
    # spread 100 is noise; with noise this large the bootstrap interval reaches below 0 for a smaller gap
    assert fnd.uniform_steadier(steady.assign(std=3.0)).effect == pytest.approx(math.sqrt(99))
    small = steady.assign(mean=[70, 71, 72, 69, 71, 73], std=3.0)  # variances 1 and 4
    assert fnd.uniform_steadier(small).verdict == "inconclusive"

    varies = acc_cells([("t", "uniform", "random", 0.8, 70), ("t", "uniform", "gradient", 0.8, 60),
                        ("t", "ERK", "random", 0.8, 62), ("t", "ERK", "gradient", 0.8, 70)], std=0.0)
    est = fnd.best_growth_varies(varies)
    # interaction (70 - 60 - 62 + 70) / 4 = 4.5 in every cell: RMS 4.5; no seed noise: p = 0
    assert est.effect == pytest.approx(4.5) and est.p == 0.0 and est.verdict == "holds"
    assert "uniform 80%: random, ERK 80%: gradient (2 distinct)" in est.evidence
    additive = varies.assign(mean=[70, 60, 75, 65])  # gradient costs 10 in both groups
    assert fnd.best_growth_varies(additive).effect == pytest.approx(0.0, abs=1e-9)
    assert fnd.best_growth_varies(additive.assign(std=1.0)).verdict == "inconclusive"
    # SS_int = 3 * 4 * 4.5^2 = 243 on 1 df; std 8: MS_err 64, F = 3.80 < F(1, 8; 0.95) = 5.3177
    assert fnd.best_growth_varies(varies.assign(std=8.0)).verdict == "inconclusive"
    assert fnd.best_growth_varies(varies.assign(std=6.5)).verdict == "holds"  # F = 5.75
    assert fnd.best_growth_varies(varies[varies.sparse_init == "ERK"]).verdict == fnd.NOT_ENOUGH


def adaptive_runs(accs: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"growth": g, "acc": a, "seed": s} for g, values in accs.items() for s, a in enumerate(values)])


def test_findings_IV_V_VI_from_runs():
    runs = adaptive_runs({"random": [70, 71, 72], "gradient": [74, 75, 76], fnd.ADAPTIVE: [80, 81, 82],
                          fnd.CAPACITY_POLICY: [79, 81, 83]})
    iv = fnd.adaptive_beats_fixed(runs)
    # against the better fixed one (gradient, 75): 81 - 75 = 6, both std 1 over 3: SE^2 = 2/3, df 4; each
    # comparison's interval at 97.5%: t(0.9875, 4) = 3.4954 (printed tables); against random: 81 - 71 = 10
    assert iv.effect == 6 and iv.verdict == "holds" and "(effect against gradient;" in iv.evidence
    assert iv.low == pytest.approx(6 - 3.4954 * math.sqrt(2 / 3), abs=1e-3)
    assert iv.high == pytest.approx(6 + 3.4954 * math.sqrt(2 / 3), abs=1e-3)
    assert fnd.adaptive_beats_fixed(runs.assign(acc=runs.acc.where(runs.growth != fnd.ADAPTIVE, 60))).verdict == "reversed"
    # beating random (10 points) but not gradient (77 - 75 = 2, within 2.85): not "holds"
    near = runs.assign(acc=runs.acc.where(runs.growth != fnd.ADAPTIVE, runs.acc - 4))
    assert fnd.adaptive_beats_fixed(near).verdict == "inconclusive"
    assert fnd.adaptive_beats_fixed(runs[runs.growth != "random"]).verdict == fnd.NOT_ENOUGH
    v = fnd.capacity_beats_fixed_switch(runs)
    assert v.effect == 0 and v.verdict == "inconclusive"
    bn = pd.DataFrame([{"sparse_init": i, "density": d, "bn": b, "acc": a + {"task": 3, "batch": 0}[b] + e, "seed": k}
                       for i, d, a in [("ERK", 0.1, 50), ("uniform", 0.2, 40)] for b in ("task", "batch")
                       for k, e in enumerate([-1, 0, 1])])
    vi = fnd.task_bn_beats_batch_bn(bn)
    assert vi.effect == pytest.approx(3.0) and vi.verdict == "holds" and vi.seeds == 3
    assert fnd.task_bn_beats_batch_bn(bn[bn.bn == "task"]).verdict == fnd.NOT_ENOUGH


def test_the_paper_verdicts_come_from_its_tables():
    est = fnd.erk_beats_uniform(analysis.paper_numbers("table3"), sparsities=(0.8,))
    # ERK: 74.61, 74.86, 70.63, 69.51 (mean 72.4025); uniform: 58.04, 56.03, 63.29, 62.92 (mean 60.07)
    assert est.effect == pytest.approx(12.3325) and est.seeds == fnd.PAPER_SEEDS and est.verdict == "holds"
    empty = pd.DataFrame(columns=["table", "sparse_init", "growth", "sparsity", "metric", "mean", "std", "n"])
    table = fnd.check_findings(empty, pd.DataFrame())
    assert list(table.columns) == fnd.FINDING_COLUMNS
    # III on the paper's own tables: interaction F test p = 0.074 (the old statistic said "holds")
    assert list(table["paper_verdict"]) == ["holds", "holds", "inconclusive", "stated", "n/a", "n/a"]
    assert list(table["verdict"]) == [fnd.NOT_ENOUGH] * 6


def test_build_findings_on_collected_runs(collected, built_tables, tmp_path):
    _, runs, _ = collected
    _, tables, _ = built_tables
    table = analysis.build_findings(analysis.all_cells(tables), runs, "smoke", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke_findings.csv", "smoke_findings.md"]
    by = table.set_index("finding")
    # ERK random 62 (2 seeds) vs uniform random 53 (3 seeds) at 80%: the only paired cell
    assert by.loc["I", "effect"] == 9.0 and by.loc["I", "seeds"] == 2
    assert by.loc["II", "verdict"] == fnd.NOT_ENOUGH  # one growth per init at 95%
    assert by.loc["IV", "effect"] == 3.0 and by.loc["IV", "verdict"] == "inconclusive"  # one seed each
    assert by.loc["V", "evidence"] == "ACC switch at 60% free 74.00 vs fixed switch 75.00 (switched at task 4)"
    assert len(pd.read_csv(tmp_path / "smoke_findings.csv")) == 6
    assert "**inconclusive**" in (tmp_path / "smoke_findings.md").read_text()


def test_a_capacity_policy_that_never_switched_says_so(tmp_path):
    """Its curve then coincides with fixed random growth; the evidence and Figure 6's legend name why."""
    for growth, acc in [("random", 70.0), ("gradient", 72.0), (fnd.ADAPTIVE, 75.0), (fnd.CAPACITY_POLICY, 70.0)]:
        per_task = ["random"] * 5 + ["gradient"] * 5 if growth == fnd.ADAPTIVE else None
        cfg = Config(experiment="smoke/adaptive", num_tasks=T, sparse_init="ERK", density=0.1, growth=growth)
        write_record(tmp_path / "runs", cfg, acc=acc,
                     growth_per_task=per_task or (["random"] * T if growth == fnd.CAPACITY_POLICY else None))
    runs, curves = collect(tmp_path / "runs")
    assert fnd.capacity_beats_fixed_switch(runs).evidence.endswith("(never switched)")
    fig, _ = analysis.build_adaptive_figure(curves, runs, "smoke", tmp_path)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[-1] == "switch at 60% free (never switched)"
    verticals = [line.get_xdata()[0] for line in fig.axes[0].get_lines() if line.get_gid() == "switch"]
    assert verticals == [6]  # the paper's switch only
    plt.close("all")


# ---------------------------------------------------------------- figures
def test_figure4_panels_lines_and_bands(collected, tmp_path):
    _, _, curves = collected
    figs, notes = analysis.build_main_figures(curves, "smoke", tmp_path)
    assert list(figs) == ["figure4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke_figure4_cifar100_10tasks.pdf",
                                                          "smoke_figure4_cifar100_10tasks.png"]
    assert [n.split(":")[0] for n in notes] == ["figure2", "figure3", "figure4", "figure5"]
    fig = figs["figure4"]
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [f"{i}, {s}% sparsity" for i in ("uniform", "ERK") for s in (80, 90, 95)]
    (line,) = axes[0].get_lines()  # uniform, 80%: only random growth has runs
    assert line.get_label() == "random" and line.get_color() == GROWTH_COLORS["random"]
    assert list(line.get_xdata()) == list(range(1, T + 1))
    assert list(line.get_ydata()) == [53.0 + t for t in range(T)]  # mean over the three seeds
    assert len(axes[0].collections) == 1  # a ±std band: three seeds
    assert len(axes[5].collections) == 0  # ERK 95%: one seed, no band
    assert [t.get_text() for t in axes[2].texts] == ["no runs"]
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["random", "unfired", "gradient"]
    assert "SMOKE PROFILE" in fig.get_suptitle()
    plt.close("all")


def test_figure6_marks_each_switch(collected, tmp_path):
    _, runs, curves = collected
    fig, notes = analysis.build_adaptive_figure(curves, runs, "smoke", tmp_path)
    assert notes == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke_figure6_adaptive.pdf", "smoke_figure6_adaptive.png"]
    ax = fig.axes[0]
    verticals = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_gid() == "switch")
    assert verticals == [4, 6]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["random", "gradient", "adaptive (random → gradient at task 6)", "switch at 60% free"]
    assert first_switch(["random"] * 3) is None and first_switch(["random", "gradient"]) == 2
    plt.close("all")


def test_figure_bn_has_a_line_per_batchnorm(tmp_path):
    """Ours beyond the paper: lines are the BatchNorm kinds, panels init x sparsity, like Figures 2-5."""
    for bn, acc in [("batch", 60.0), ("task", 64.0)]:
        cfg = Config(experiment="smoke/batchnorm", num_tasks=T, sparse_init="ERK", density=0.1, bn=bn)
        write_record(tmp_path / "runs", cfg, acc=acc)
    _, curves = collect(tmp_path / "runs")
    figs, notes = analysis.build_appendix_figures(curves, "smoke", tmp_path)
    assert list(figs) == ["figureBN"]
    assert notes[-1].startswith("figureBN: partial, 2 of 6 grid points of batchnorm have runs")
    assert (tmp_path / "smoke_figureBN_batchnorm.png").is_file()
    fig = figs["figureBN"]
    panel = next(ax for ax in fig.axes if ax.get_title() == "ERK, 90% sparsity")
    lines = {line.get_label(): list(line.get_ydata()) for line in panel.get_lines()}
    assert lines == {"test-batch statistics (authors)": [60.0 + t for t in range(T)],
                     "one BN per task": [64.0 + t for t in range(T)]}
    assert fig.get_suptitle().startswith("Figure BN: beyond the paper")
    plt.close("all")


def test_capacity_saturation_and_figures(collected, tmp_path):
    _, runs, curves = collected
    sel = runs[(runs.experiment == "smoke/cifar100-10") & (runs.density == 0.2)]
    capacity = load_capacity(sel)
    assert len(capacity) == 5 * 3 * T and capacity["task"].min() == 1
    sat = saturation(capacity)
    assert sat.loc["conv1.weight"].tolist() == [5, 1]  # uniform, ERK
    assert sat.loc["fc.weight", "uniform"] == 10 and math.isnan(sat.loc["fc.weight", "ERK"])
    assert math.isnan(sat.loc["all", "uniform"]) and sat.loc["all", "ERK"] == 10
    figs, notes = analysis.build_capacity(runs, curves, "smoke", out_dir=tmp_path)
    assert sorted(figs) == ["capacity_used_layers", "capacity_used_total"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"smoke_capacity_used_{w}.{e}" for w in ("layers", "total") for e in ("pdf", "png")]
    assert len(notes) == 2 and all("no masks.pt" in n for n in notes)
    _, none = analysis.build_capacity(runs, curves, "smoke", density=0.3, out_dir=tmp_path)
    assert none == ["capacity: no runs of experiment cifar100-10 at density 0.3 (profile smoke)"]
    plt.close("all")


def test_mask_overlap_figure_from_masks_pt(tmp_path):
    import torch

    from cldst.sparse import save_masks

    root = tmp_path / "runs"
    for init, second in [("uniform", [0, 1, 1, 0]), ("ERK", [1, 1, 0, 0])]:
        path = write_record(root, main_cfg(init, "random", 0.2, 0), acc=50.0)
        masks = [{"w": torch.tensor([True, True, False, False])}, {"w": torch.tensor(second, dtype=torch.bool)}]
        save_masks(masks, path / "masks.pt")
    runs, curves = collect(root)
    figs, notes = analysis.build_capacity(runs, curves, "smoke", out_dir=tmp_path / "figures")
    assert "capacity_overlap" in figs and notes == ["capacity per layer: no capacity.csv in the runs of cifar100-10"]
    assert (tmp_path / "figures" / "smoke_capacity_overlap.png").is_file()
    overlap = [ax for ax in figs["capacity_overlap"].axes if ax.get_title()]
    assert [ax.get_title() for ax in overlap] == ["uniform (random, seed 0)", "ERK (random, seed 0)"]
    # (i, j) = |M_i & M_j| / |M_j|: uniform shares 1 of 2 positions, ERK's two masks are equal
    assert overlap[0].images[0].get_array().tolist() == [[1.0, 0.5], [0.5, 1.0]]
    assert overlap[1].images[0].get_array().tolist() == [[1.0, 1.0], [1.0, 1.0]]
    plt.close("all")


# ---------------------------------------------------------------- build_all and notebooks
def test_build_all_on_an_empty_root_names_everything_missing(tmp_path, monkeypatch):
    for var, sub in [("CLDST_RUNS", "runs"), ("CLDST_FIGURES", "figures"), ("CLDST_TABLES", "tables")]:
        monkeypatch.setenv(var, str(tmp_path / sub))
    empty = tmp_path / "empty"
    lines = analysis.build_all("smoke", root=empty)
    assert len(lines) == 4 + 4 + 1 + 5 + 2  # tables, figures 2-5, figure 6, figures A-D and BN, capacity + findings
    assert f"table2: no runs of experiment miniimagenet-10 (profile smoke) under {empty}" in lines
    assert lines[-1] == f"findings: no runs of the main experiments or of adaptive (profile smoke) under {empty}"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "figures").exists()
    with pytest.raises(ConfigError, match="profile 'nope' is not one of"):
        analysis.build_all("nope", root=empty)


def test_analysis_notebooks_are_clean_and_parameterized():
    import papermill

    root = Path(__file__).resolve().parent.parent / "notebooks"
    for name in analysis.NOTEBOOKS:
        nb = json.loads((root / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), name
        params = papermill.inspect_notebook(str(root / f"{name}.ipynb"))
        assert params["profile"]["default"] == '"paper"' and params["runs_root"]["default"] == '""', name


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
def test_adaptive_notebook_executes_on_fake_records(tmp_path, monkeypatch):
    import papermill

    root = tmp_path / "runs" / "smoke"
    write_adaptive_runs(root)
    monkeypatch.setenv("CLDST_FIGURES", str(tmp_path / "figures"))  # the kernel inherits the environment
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "analysis_adaptive.ipynb"
    papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), progress_bar=False,
                               parameters={"profile": "smoke", "runs_root": str(root)})
    assert (tmp_path / "figures" / "smoke_figure6_adaptive.png").is_file()
