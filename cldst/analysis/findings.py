"""The paper's four findings, each a computed check on numbers rather than a sentence to believe.

Each check takes tidy ACC cells (columns table, sparse_init, growth, sparsity, metric, mean, std: the
format of both `tables.all_cells()` and `paper.paper_numbers()`), so the same code runs on our runs
and on the paper's own tables: a check that fails on the paper's numbers is a wrong check.
Every check returns `Check(holds, evidence)`; holds is True, False, or NOT_ENOUGH when the cells
needed to decide are missing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cldst.analysis.paper import ADAPTIVE_FIGURE, output_stem, paper_numbers, profile_note, select_runs
from cldst.experiments import ADAPTIVE, ARTIFACTS, CAPACITY_POLICY, CAPACITY_THRESHOLD
from cldst.paths import tables_dir

log = logging.getLogger(__name__)

NOT_ENOUGH = "not enough runs"
CAPACITY_LABEL = f"switch at {CAPACITY_THRESHOLD:.0%} free"  # how our capacity policy reads in text
LOW_SPARSITIES = (0.8, 0.9)
HIGH_SPARSITY = 0.95
STATEMENTS = {
    "I": "At low to moderate sparsity (80-90%), ERK initialization beats uniform.",
    "II": "At high sparsity (95%), uniform initialization is steadier across growth criteria than ERK.",
    "III": "The best growth criterion depends on the initialization and the sparsity.",
    "IV": "Adaptive growth (random for tasks 1-5, gradient after) beats fixed random and fixed gradient.",
}
FINDING_COLUMNS = ["finding", "statement", "evidence", "holds", "paper_evidence", "paper"]


@dataclass(frozen=True)
class Check:
    holds: bool | str  # True, False or NOT_ENOUGH
    evidence: str


def _acc(cells: pd.DataFrame) -> pd.DataFrame:
    acc = cells[(cells["metric"] == "ACC") & cells["mean"].notna()].copy()
    acc["sparsity"] = acc["sparsity"].astype(float).round(4)
    return acc


def _pct(s: float) -> str:
    return f"{s * 100:g}%"


def erk_beats_uniform(cells: pd.DataFrame, sparsities=LOW_SPARSITIES) -> Check:
    """Finding I: mean ACC of ERK minus uniform over cells present for both (same table, growth, sparsity)."""
    acc = _acc(cells)
    acc = acc[acc["sparsity"].isin([round(s, 4) for s in sparsities])]
    paired = acc.pivot_table(index=["table", "growth", "sparsity"], columns="sparse_init", values="mean")
    if not {"ERK", "uniform"} <= set(paired.columns):
        return Check(NOT_ENOUGH, "no cell has both ERK and uniform runs at " + "/".join(map(_pct, sparsities)))
    gap = (paired["ERK"] - paired["uniform"]).dropna()
    if gap.empty:
        return Check(NOT_ENOUGH, "no cell has both ERK and uniform runs at " + "/".join(map(_pct, sparsities)))
    per = ", ".join(f"{_pct(s)}: {g:+.2f}" for s, g in gap.groupby(level="sparsity").mean().items())
    mean = float(gap.mean())
    return Check(mean > 0, f"mean ACC ERK - uniform over {len(gap)} paired cells: {mean:+.2f} pp ({per})")


def uniform_steadier(cells: pd.DataFrame, sparsity: float = HIGH_SPARSITY) -> Check:
    """Finding II: std of ACC across growth criteria at `sparsity`, uniform vs ERK (mean over tables)."""
    acc = _acc(cells)
    acc = acc[acc["sparsity"] == round(sparsity, 4)]
    groups = acc.groupby(["table", "sparse_init"])["mean"]
    spread = groups.std()[groups.count() >= 2].unstack("sparse_init")  # ddof=1 over growths
    if not {"ERK", "uniform"} <= set(spread.columns) or spread[["ERK", "uniform"]].dropna().empty:
        return Check(NOT_ENOUGH, f"need >= 2 growth criteria for both inits in one table at {_pct(sparsity)}")
    both = spread[["ERK", "uniform"]].dropna()
    uni, erk = float(both["uniform"].mean()), float(both["ERK"].mean())
    evidence = (f"std of ACC across growths at {_pct(sparsity)}, mean over {len(both)} table(s): "
                f"uniform {uni:.2f} vs ERK {erk:.2f}")
    seeds = acc.groupby("sparse_init")["std"].mean() if "std" in acc else pd.Series(dtype=float)
    if {"ERK", "uniform"} <= set(seeds.dropna().index):
        evidence += f"; mean std over seeds: uniform {seeds['uniform']:.2f} vs ERK {seeds['ERK']:.2f}"
    return Check(uni < erk, evidence)


def best_growth_varies(cells: pd.DataFrame) -> Check:
    """Finding III: the growth with the highest mean ACC (over tables) per (init, sparsity) is not one constant."""
    acc = _acc(cells)
    means = acc.groupby(["sparse_init", "sparsity", "growth"])["mean"].mean()
    counts = means.groupby(level=["sparse_init", "sparsity"]).size()
    decidable = counts[counts >= 2].index
    if len(decidable) < 2:
        return Check(NOT_ENOUGH, "need >= 2 (init, sparsity) groups with >= 2 growth criteria each")
    best = {key: means.loc[key].idxmax() for key in decidable}
    winners = sorted(set(best.values()))
    listing = ", ".join(f"{init} {_pct(s)}: {g}" for (init, s), g in sorted(best.items(), key=lambda kv: (kv[0][0] != "uniform", kv[0][1])))
    return Check(len(winners) > 1, f"best growth by mean ACC: {listing} ({len(winners)} distinct)")


def adaptive_beats_fixed(runs: pd.DataFrame) -> Check:
    """Finding IV: final ACC (mean over seeds) of the random-then-gradient switch vs fixed random and gradient."""
    acc = pd.to_numeric(runs["acc"], errors="coerce").groupby(runs["growth"]).mean() if not runs.empty else pd.Series(dtype=float)
    need = [ADAPTIVE, "random", "gradient"]
    absent = [g for g in need if pd.isna(acc.get(g))]
    if absent:
        return Check(NOT_ENOUGH, f"no adaptive-experiment runs with growth {', '.join(absent)}")
    evidence = f"ACC adaptive {acc[ADAPTIVE]:.2f} vs random {acc['random']:.2f}, gradient {acc['gradient']:.2f}"
    if not pd.isna(acc.get(CAPACITY_POLICY)):
        evidence += f"; {CAPACITY_LABEL}: {acc[CAPACITY_POLICY]:.2f}"
        if "path" in runs:
            tasks = switch_tasks(runs[runs["growth"] == CAPACITY_POLICY]).get(CAPACITY_POLICY)
            evidence += f" (switched at task {', '.join(map(str, tasks))})" if tasks else " (never switched)"
    return Check(bool(acc[ADAPTIVE] > max(acc["random"], acc["gradient"])), evidence)


def first_switch(growth_per_task: list[str]) -> int | None:
    """1-based task at which the growth criterion first differs from task 1's; None if it never does."""
    for t, g in enumerate(growth_per_task):
        if g != growth_per_task[0]:
            return t + 1
    return None


def switch_tasks(runs: pd.DataFrame) -> dict[str, list[int]]:
    """Per growth schedule, the distinct switch tasks its runs recorded (metrics.json growth_per_task);
    a schedule none of whose runs switched is absent."""
    out: dict[str, set[int]] = {}
    for growth, path in zip(runs["growth"], runs["path"]):
        try:
            per_task = json.loads((Path(path) / "metrics.json").read_text()).get("growth_per_task") or []
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("no growth_per_task for %s: %s", path, exc)
            continue
        task = first_switch(per_task) if per_task else None
        if task is not None:
            out.setdefault(growth, set()).add(task)
    return {g: sorted(ts) for g, ts in out.items()}


def adaptive_summary(runs: pd.DataFrame, profile: str = "paper") -> pd.DataFrame:
    """Final ACC of each growth of the adaptive experiment: mean, sample std and n over seeds."""
    sel = select_runs(runs, ADAPTIVE_FIGURE.experiment, profile)
    if sel.empty:
        return pd.DataFrame(columns=["growth", "acc_mean", "acc_std", "n"])
    stats = pd.to_numeric(sel["acc"], errors="coerce").groupby(sel["growth"]).agg(["mean", "std", "count"])
    order = [ADAPTIVE, CAPACITY_POLICY, "random", "gradient"]  # the schedules first, then the fixed baselines
    stats = stats.reindex(sorted(stats.index, key=lambda g: (order.index(g) if g in order else len(order), g)))
    return stats.set_axis(["acc_mean", "acc_std", "n"], axis=1).reset_index()


def check_findings(cells: pd.DataFrame, adaptive_runs: pd.DataFrame, paper_cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per finding: our evidence and verdict, and the same check on the paper's Tables 1-4."""
    paper_cells = paper_numbers() if paper_cells is None else paper_cells
    ours = {"I": erk_beats_uniform(cells), "II": uniform_steadier(cells), "III": best_growth_varies(cells),
            "IV": adaptive_beats_fixed(adaptive_runs)}
    theirs = {"I": erk_beats_uniform(paper_cells), "II": uniform_steadier(paper_cells),
              "III": best_growth_varies(paper_cells),
              "IV": Check("n/a", "Figure 6 has curves only, no numbers to check")}
    rows = [[k, STATEMENTS[k], ours[k].evidence, ours[k].holds, theirs[k].evidence, theirs[k].holds] for k in STATEMENTS]
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def findings_markdown(table: pd.DataFrame, profile: str) -> str:
    head = (f"**The paper's findings checked on our runs** ({profile_note(profile)}). "
            "'paper' applies the same check to the paper's Tables 1-4.")
    lines = ["| finding | statement | our evidence | holds | paper's numbers | holds on paper |", "|:--|:--|:--|:--|:--|:--|"]
    lines += [f"| {r.finding} | {r.statement} | {r.evidence} | {r.holds} | {r.paper_evidence} | {r.paper} |"
              for r in table.itertuples(index=False)]
    return head + "\n\n" + "\n".join(lines) + "\n"


def build_findings(cells: pd.DataFrame, runs: pd.DataFrame, profile: str = "paper",
                   out_dir: str | Path | None = None) -> pd.DataFrame:
    """Check the findings on the tables' cells and the adaptive runs; write findings.{csv,md}."""
    out = Path(out_dir) if out_dir is not None else tables_dir()
    out.mkdir(parents=True, exist_ok=True)
    table = check_findings(cells, select_runs(runs, ADAPTIVE_FIGURE.experiment, profile))
    stem = output_stem(ARTIFACTS["findings"].stem, profile)
    table.to_csv(out / f"{stem}.csv", index=False)
    (out / f"{stem}.md").write_text(findings_markdown(table, profile))
    log.info("wrote %s.{csv,md} into %s", stem, out)
    return table
