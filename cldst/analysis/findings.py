"""The paper's findings, and two of ours, as effects with 95% confidence intervals and a verdict.

Every finding is an effect in points of ACC whose sign says whether the statement holds. It is
computed from table cells (columns table, sparse_init, growth, sparsity, metric, mean, std, n: the
format of both `tables.all_cells()` and `paper.paper_numbers()`) or from one experiment's runs, so the
same code runs on our runs and on the paper's own tables (n = 3 seeds there): a check that fails on
the paper's numbers is a wrong check. The verdict is the interval's: `holds` when it lies above 0,
`reversed` when below, `inconclusive` when it contains 0 (or cannot be computed: one seed per cell).

  I    ERK beats uniform at 80-90% sparsity: mean over paired cells of ACC(ERK) - ACC(uniform);
       a linear contrast of cell means, its interval from Student's t with Welch-Satterthwaite df.
  II   uniform is steadier across growth criteria at 95%: std over growths of ERK's cell means minus
       uniform's (mean over tables); interval by a parametric bootstrap of the cell means.
  III  the best growth depends on the init and the sparsity: the ACC lost, in the (init, sparsity)
       group where it costs most, by using the overall best growth instead of that group's best;
       bootstrap interval (the effect is >= 0, so it cannot be `reversed`).
  IV   adaptive growth (random, then gradient from task 6) beats fixed random and fixed gradient:
       ACC(adaptive) - ACC(the better fixed one); Welch interval.
  V    (ours) the capacity-triggered switch vs the paper's fixed switch: ACC difference; Welch.
  VI   (ours) one BatchNorm per task vs the authors' test-batch BatchNorm: mean over the batchnorm
       experiment's cells of ACC(bn=task) - ACC(bn=batch); linear contrast.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cldst.analysis.paper import ADAPTIVE_FIGURE, output_stem, paper_numbers, profile_note, select_runs
from cldst.experiments import ADAPTIVE, ARTIFACTS, CAPACITY_POLICY, CAPACITY_THRESHOLD
from cldst.paths import tables_dir
from cldst.stats import t_ppf

log = logging.getLogger(__name__)

NOT_ENOUGH = "not enough runs"
CAPACITY_LABEL = f"switch at {CAPACITY_THRESHOLD:.0%} free"  # how our capacity policy reads in text
LOW_SPARSITIES = (0.8, 0.9)
HIGH_SPARSITY = 0.95
PAPER_SEEDS = 3  # "We run experiments on three different seeds and report their average."
BOOTSTRAP = 4000  # draws of the parametric bootstrap (seeded: the same cells give the same interval)
STATEMENTS = {
    "I": "At low to moderate sparsity (80-90%), ERK initialization beats uniform.",
    "II": "At high sparsity (95%), uniform initialization is steadier across growth criteria than ERK.",
    "III": "The best growth criterion depends on the initialization and the sparsity.",
    "IV": "Adaptive growth (random for tasks 1-5, gradient after) beats fixed random and fixed gradient.",
    "V": f"(ours) Switching to gradient growth when under {CAPACITY_THRESHOLD:.0%} of the backbone is free "
         "beats the paper's switch after task 5.",
    "VI": "(ours) One BatchNorm per task beats the authors' BatchNorm with test-batch statistics.",
}
FINDING_COLUMNS = ["finding", "statement", "effect", "low", "high", "seeds", "verdict", "evidence",
                   "paper_effect", "paper_low", "paper_high", "paper_verdict", "paper_evidence"]


@dataclass(frozen=True)
class Estimate:
    """An effect in points with its 95% interval, the seeds behind it and the verdict they give."""

    effect: float
    low: float
    high: float
    seeds: int  # the fewest seeds of any cell used (0: nothing to compute)
    evidence: str

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high, self.seeds)


def verdict(low: float, high: float, seeds: int) -> str:
    """holds (interval above 0), reversed (below 0), inconclusive (contains 0, or no interval)."""
    if seeds == 0:
        return NOT_ENOUGH
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    return "holds" if low > 0 else "reversed" if high < 0 else "inconclusive"


def nothing(why: str) -> Estimate:
    return Estimate(math.nan, math.nan, math.nan, 0, why)


# ---------------------------------------------------------------------- the two interval methods
def contrast(means, stds, ns, weights, level: float = 0.95) -> tuple[float, float, float]:
    """(effect, low, high) of sum_i w_i * mean_i for independent cell means (std over n_i seeds each):
    SE^2 = sum_i w_i^2 s_i^2 / n_i, Student's t with the Welch-Satterthwaite degrees of freedom.
    NaN bounds when a cell has fewer than 2 seeds."""
    means, stds, ns, weights = (np.asarray(v, dtype=float) for v in (means, stds, ns, weights))
    effect = float(np.sum(weights * means))
    if len(ns) == 0 or np.any(ns < 2) or np.any(np.isnan(stds)):
        return effect, math.nan, math.nan
    parts = weights**2 * stds**2 / ns
    se2 = float(parts.sum())
    if se2 == 0.0:
        return effect, effect, effect
    df = se2**2 / float(np.sum(parts**2 / (ns - 1)))
    half = t_ppf(0.5 + level / 2, df) * math.sqrt(se2)
    return effect, effect - half, effect + half


def bootstrap(cells: pd.DataFrame, statistic, level: float = 0.95) -> tuple[float, float, float]:
    """(statistic of the cell means, low, high): the interval from redrawing every cell's mean from
    N(mean, std^2 / n) (a parametric bootstrap, seeded), so raw runs and published mean ± std are
    treated alike. NaN bounds when a cell has fewer than 2 seeds."""
    effect = float(statistic(cells["mean"].to_numpy(dtype=float)))
    n, std = cells["n"].to_numpy(dtype=float), cells["std"].to_numpy(dtype=float)
    if len(cells) == 0 or np.any(n < 2) or np.any(np.isnan(std)):
        return effect, math.nan, math.nan
    rng = np.random.default_rng(0)
    draws = rng.normal(cells["mean"].to_numpy(dtype=float), std / np.sqrt(n), size=(BOOTSTRAP, len(cells)))
    values = np.array([statistic(row) for row in draws])
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return effect, float(low), float(high)


# ---------------------------------------------------------------------- the findings
def _acc(cells: pd.DataFrame) -> pd.DataFrame:
    acc = cells[(cells["metric"] == "ACC") & cells["mean"].notna()].copy()
    acc["sparsity"] = acc["sparsity"].astype(float).round(4)
    if "n" not in acc:
        acc["n"] = PAPER_SEEDS
    acc["n"] = acc["n"].fillna(0).astype(int)
    return acc.reset_index(drop=True)


def _pct(s: float) -> str:
    return f"{s * 100:g}%"


def _seeds(cells: pd.DataFrame) -> int:
    return int(cells["n"].min()) if len(cells) else 0


def erk_beats_uniform(cells: pd.DataFrame, sparsities=LOW_SPARSITIES) -> Estimate:
    """I: mean over cells present for both inits (same table, growth, sparsity) of ERK - uniform."""
    acc = _acc(cells)
    acc = acc[acc["sparsity"].isin([round(s, 4) for s in sparsities])]
    keys = ["table", "growth", "sparsity"]
    paired = acc[acc["sparse_init"] == "ERK"].merge(acc[acc["sparse_init"] == "uniform"], on=keys,
                                                   suffixes=("_erk", "_uni"))
    if paired.empty:
        return nothing("no cell has both ERK and uniform runs at " + "/".join(map(_pct, sparsities)))
    c = len(paired)
    means = np.concatenate([paired["mean_erk"], paired["mean_uni"]])
    stds = np.concatenate([paired["std_erk"], paired["std_uni"]])
    ns = np.concatenate([paired["n_erk"], paired["n_uni"]])
    effect, low, high = contrast(means, stds, ns, [1 / c] * c + [-1 / c] * c)
    gaps = (paired["mean_erk"] - paired["mean_uni"]).groupby(paired["sparsity"]).mean()
    per = ", ".join(f"{_pct(s)}: {g:+.2f}" for s, g in gaps.items())
    return Estimate(effect, low, high, int(min(ns)), f"ERK - uniform over {c} paired cells ({per})")


def uniform_steadier(cells: pd.DataFrame, sparsity: float = HIGH_SPARSITY) -> Estimate:
    """II: std over growth criteria of ERK's cell means minus uniform's, at `sparsity`, mean over tables."""
    acc = _acc(cells)
    acc = acc[acc["sparsity"] == round(sparsity, 4)]
    counts = acc.groupby(["table", "sparse_init"]).size().unstack(fill_value=0)
    tables = [t for t in counts.index if {"ERK", "uniform"} <= set(counts.columns)
              and counts.loc[t, "ERK"] >= 2 and counts.loc[t, "uniform"] >= 2]
    if not tables:
        return nothing(f"need >= 2 growth criteria for both inits in one table at {_pct(sparsity)}")
    acc = acc[acc["table"].isin(tables)].reset_index(drop=True)
    groups = [(acc.index[(acc["table"] == t) & (acc["sparse_init"] == i)].to_numpy(), sign)
              for t in tables for i, sign in (("ERK", 1.0), ("uniform", -1.0))]

    def statistic(means: np.ndarray) -> float:
        return sum(sign * np.std(means[idx], ddof=1) for idx, sign in groups) / len(tables)

    effect, low, high = bootstrap(acc, statistic)
    spread = {i: np.mean([np.std(acc.loc[idx, "mean"], ddof=1) for idx, s in groups if s == sign])
              for i, sign in (("uniform", -1.0), ("ERK", 1.0))}
    return Estimate(effect, low, high, _seeds(acc),
                    f"std across growths at {_pct(sparsity)} over {len(tables)} table(s): uniform "
                    f"{spread['uniform']:.2f} vs ERK {spread['ERK']:.2f} (effect: ERK's minus uniform's)")


def best_growth_varies(cells: pd.DataFrame) -> Estimate:
    """III: the most ACC lost in any (init, sparsity) group by the one growth that is best overall."""
    acc = _acc(cells)
    grouped = acc.groupby(["sparse_init", "sparsity"])["growth"].nunique()
    decidable = grouped[grouped >= 2].index
    if len(decidable) < 2:
        return nothing("need >= 2 (init, sparsity) groups with >= 2 growth criteria each")
    acc = acc.set_index(["sparse_init", "sparsity"]).loc[list(decidable)].reset_index()
    growths = sorted(acc["growth"].unique())
    # each (group, growth) is the mean over the tables it has cells in
    groups = {key: {g: part.index[part["growth"] == g].to_numpy() for g in growths if (part["growth"] == g).any()}
              for key, part in acc.groupby(["sparse_init", "sparsity"])}

    def statistic(means: np.ndarray) -> float:
        per = {key: {g: means[idx].mean() for g, idx in gs.items()} for key, gs in groups.items()}
        overall = {g: np.mean([p[g] for p in per.values() if g in p]) for g in growths}
        best = max(overall, key=overall.get)
        return max(max(p.values()) - p.get(best, -np.inf) for p in per.values())

    effect, low, high = bootstrap(acc, statistic)
    means = {key: {g: acc.loc[idx, "mean"].mean() for g, idx in gs.items()} for key, gs in groups.items()}
    winners = {key: max(p, key=p.get) for key, p in means.items()}
    listing = ", ".join(f"{i} {_pct(s)}: {g}" for (i, s), g in sorted(winners.items(), key=lambda kv: (kv[0][0] != "uniform", kv[0][1])))
    return Estimate(effect, low, high, _seeds(acc),
                    f"best growth by mean ACC: {listing} ({len(set(winners.values()))} distinct)")


def _growth_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """ACC mean, std and n over seeds per growth (runs of one experiment)."""
    acc = pd.to_numeric(runs["acc"], errors="coerce")
    return acc.groupby(runs["growth"]).agg(["mean", "std", "count"]).rename(columns={"count": "n"})


def adaptive_beats_fixed(runs: pd.DataFrame) -> Estimate:
    """IV: ACC of the random-then-gradient schedule minus the better of fixed random and fixed gradient."""
    by = _growth_cells(runs) if not runs.empty else pd.DataFrame()
    absent = [g for g in (ADAPTIVE, "random", "gradient") if g not in by.index]
    if absent:
        return nothing(f"no adaptive-experiment runs with growth {', '.join(absent)}")
    fixed = "random" if by.loc["random", "mean"] >= by.loc["gradient", "mean"] else "gradient"
    pair = by.loc[[ADAPTIVE, fixed]]
    effect, low, high = contrast(pair["mean"], pair["std"], pair["n"], [1, -1])
    evidence = (f"ACC adaptive {by.loc[ADAPTIVE, 'mean']:.2f} vs random {by.loc['random', 'mean']:.2f}, "
                f"gradient {by.loc['gradient', 'mean']:.2f} (effect against {fixed})")
    return Estimate(effect, low, high, int(pair["n"].min()), evidence)


def capacity_beats_fixed_switch(runs: pd.DataFrame) -> Estimate:
    """V (ours): ACC of the capacity-triggered switch minus the paper's fixed switch after task 5."""
    by = _growth_cells(runs) if not runs.empty else pd.DataFrame()
    absent = [g for g in (CAPACITY_POLICY, ADAPTIVE) if g not in by.index]
    if absent:
        return nothing(f"no adaptive-experiment runs with growth {', '.join(absent)}")
    pair = by.loc[[CAPACITY_POLICY, ADAPTIVE]]
    effect, low, high = contrast(pair["mean"], pair["std"], pair["n"], [1, -1])
    evidence = f"ACC {CAPACITY_LABEL} {pair['mean'].iloc[0]:.2f} vs fixed switch {pair['mean'].iloc[1]:.2f}"
    if "path" in runs:
        tasks = switch_tasks(runs[runs["growth"] == CAPACITY_POLICY]).get(CAPACITY_POLICY)
        evidence += f" (switched at task {', '.join(map(str, tasks))})" if tasks else " (never switched)"
    return Estimate(effect, low, high, int(pair["n"].min()), evidence)


def task_bn_beats_batch_bn(runs: pd.DataFrame) -> Estimate:
    """VI (ours): mean over (init, density) cells of ACC(bn=task) - ACC(bn=batch)."""
    if runs.empty:
        return nothing("no runs of the batchnorm experiment")
    acc = pd.to_numeric(runs["acc"], errors="coerce")
    cells = acc.groupby([runs["sparse_init"], runs["density"], runs["bn"]]).agg(["mean", "std", "count"])
    wide = cells.unstack("bn")
    if "task" not in wide["mean"] or "batch" not in wide["mean"]:
        return nothing("need batchnorm runs with both bn=task and bn=batch")
    wide = wide[wide["mean"][["task", "batch"]].notna().all(axis=1)]
    if wide.empty:
        return nothing("no (init, density) cell has both BatchNorms")
    c = len(wide)
    means = np.concatenate([wide["mean"]["task"], wide["mean"]["batch"]])
    stds = np.concatenate([wide["std"]["task"], wide["std"]["batch"]])
    ns = np.concatenate([wide["count"]["task"], wide["count"]["batch"]])
    effect, low, high = contrast(means, stds, ns, [1 / c] * c + [-1 / c] * c)
    return Estimate(effect, low, high, int(min(ns)),
                    f"per-task BN {wide['mean']['task'].mean():.2f} vs test-batch BN {wide['mean']['batch'].mean():.2f} "
                    f"(mean over {c} init x density cells)")


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
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
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


# ---------------------------------------------------------------------- the table
def check_findings(cells: pd.DataFrame, adaptive_runs: pd.DataFrame, batchnorm_runs: pd.DataFrame | None = None,
                   paper_cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per finding: our effect, interval and verdict, and the same on the paper's Tables 1-4."""
    paper_cells = paper_numbers() if paper_cells is None else paper_cells
    batchnorm_runs = pd.DataFrame() if batchnorm_runs is None else batchnorm_runs
    ours = {"I": erk_beats_uniform(cells), "II": uniform_steadier(cells), "III": best_growth_varies(cells),
            "IV": adaptive_beats_fixed(adaptive_runs), "V": capacity_beats_fixed_switch(adaptive_runs),
            "VI": task_bn_beats_batch_bn(batchnorm_runs)}
    theirs = {"I": erk_beats_uniform(paper_cells), "II": uniform_steadier(paper_cells),
              "III": best_growth_varies(paper_cells)}
    rows = []
    for key, statement in STATEMENTS.items():
        o = ours[key]
        if key in theirs:
            p = theirs[key]
            paper = [p.effect, p.low, p.high, p.verdict, p.evidence]
        elif key == "IV":
            paper = [math.nan, math.nan, math.nan, "stated", "the paper states it; Figure 6 has curves, no numbers"]
        else:
            paper = [math.nan, math.nan, math.nan, "n/a", "not in the paper"]
        rows.append([key, statement, o.effect, o.low, o.high, o.seeds, o.verdict, o.evidence, *paper])
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def _interval(effect: float, low: float, high: float) -> str:
    if math.isnan(effect):
        return "—"
    if math.isnan(low):
        return f"{effect:+.2f} (no interval)"
    return f"{effect:+.2f} [{low:+.2f}, {high:+.2f}]"


def findings_markdown(table: pd.DataFrame, profile: str) -> str:
    head = (f"**The paper's findings, and two of ours, on our runs** ({profile_note(profile)}). Effect in "
            "points of ACC with its 95% interval over seeds; the verdict is the interval's: *holds* above 0, "
            "*reversed* below, *inconclusive* across 0. 'paper' computes the same from the paper's Tables 1-4 "
            f"(mean ± std over {PAPER_SEEDS} seeds).")
    lines = ["| finding | statement | effect [95% CI] | seeds | verdict | evidence | paper: effect [95% CI] | paper |",
             "|:--|:--|:--|:--|:--|:--|:--|:--|"]
    lines += [f"| {r.finding} | {r.statement} | {_interval(r.effect, r.low, r.high)} | {r.seeds} | **{r.verdict}** | "
              f"{r.evidence} | {_interval(r.paper_effect, r.paper_low, r.paper_high)} | {r.paper_verdict} |"
              for r in table.itertuples(index=False)]
    return head + "\n\n" + "\n".join(lines) + "\n"


def build_findings(cells: pd.DataFrame, runs: pd.DataFrame, profile: str = "paper",
                   out_dir: str | Path | None = None) -> pd.DataFrame:
    """Check the findings on the tables' cells and the adaptive and batchnorm runs; write findings.{csv,md}."""
    out = Path(out_dir) if out_dir is not None else tables_dir()
    out.mkdir(parents=True, exist_ok=True)
    table = check_findings(cells, select_runs(runs, ADAPTIVE_FIGURE.experiment, profile),
                           select_runs(runs, ARTIFACTS["figureBN"].experiment, profile))
    stem = output_stem(ARTIFACTS["findings"].stem, profile)
    table.to_csv(out / f"{stem}.csv", index=False)
    (out / f"{stem}.md").write_text(findings_markdown(table, profile))
    log.info("wrote %s.{csv,md} into %s", stem, out)
    return table
