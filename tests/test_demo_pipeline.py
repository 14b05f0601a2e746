"""The demo's path at small scale: smoke-profile runs through papermill, collected, and every analysis
notebook executed on them, with tables equal to the run records."""

import json

import pandas as pd
import pytest

from cldst import analysis, experiments, records
from cldst.sweep import run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebooks")]


def test_smoke_runs_to_figures_and_tables(tmp_path, monkeypatch):
    runs_root = tmp_path / "runs"
    for var, sub in (("CLDST_RUNS", "runs"), ("CLDST_FIGURES", "figures"), ("CLDST_TABLES", "tables")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    # Figure 6 in full (4 runs); uniform and ERK, random growth, 80% sparsity of Table 4 / Figure 5 and
    # Table 3 / Figure 4 (the capacity notebook's default); one VGG-like run (Figure D, the appendix).
    def pick(name, **where):
        return [c for c in experiments.configs(name, "smoke") if all(getattr(c, k) == v for k, v in where.items())]

    cfgs = (experiments.configs("adaptive", "smoke") + pick("cifar100-5", growth="random", density=0.2)
            + pick("cifar100-10", growth="random", density=0.2)
            + pick("vgg", growth="random", density=0.2, sparse_init="ERK"))
    assert len(cfgs) == 9
    report = run_sweep(cfgs, workers=2, root=runs_root, progress=False)
    assert report.failed == {} and len(report.done) == 9

    missing = analysis.build_all("smoke")
    # what has no runs is named, not silently skipped
    assert any(line.startswith("table1") for line in missing)
    assert not any("notebook failed" in line for line in missing), missing

    tables, figures = tmp_path / "tables", tmp_path / "figures"
    for stem in ("smoke_table4_cifar100_5tasks", "smoke_table4_cifar100_5tasks_vs_paper"):
        assert (tables / f"{stem}.csv").is_file() and (tables / f"{stem}.md").is_file()
    assert (tables / "smoke_table4_cifar100_5tasks.tex").is_file()
    for stem in ("smoke_figure5_cifar100_5tasks", "smoke_figure4_cifar100_10tasks", "smoke_figure6_adaptive",
                 "smoke_figureD_vgg", "smoke_capacity_used_total"):
        assert (figures / f"{stem}.pdf").is_file() and (figures / f"{stem}.png").is_file()
    for name in analysis.NOTEBOOKS:
        assert (runs_root / "smoke" / "analysis" / f"{name}.ipynb").is_file(), name

    # the table's ACC for ERK/random/0.80 is the run record's acc (one seed: mean = the value)
    erk = next(c for c in pick("cifar100-5", growth="random", density=0.2) if c.sparse_init == "ERK")
    acc = json.loads((records.run_dir(erk, runs_root) / "metrics.json").read_text())["acc"]
    table = pd.read_csv(tables / "smoke_table4_cifar100_5tasks.csv")
    row = table[(table["sparse_init"] == "ERK") & (table["growth"] == "random")
                & (table["sparsity"].round(2) == 0.8) & (table["metric"] == "ACC")]
    assert len(row) == 1
    assert row["mean"].iloc[0] == pytest.approx(acc)
