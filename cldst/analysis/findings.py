"""The paper's findings, and two of ours, as effects with 95% confidence intervals, a test and a verdict.

Every finding is an effect in points of ACC whose sign says whether the statement holds, computed from
table cells (columns table, sparse_init, growth, sparsity, metric, mean, std, n: the format of both
`tables.all_cells()` and `paper.paper_numbers()`) or from one experiment's runs, so the same code runs on
our runs and on the paper's own tables (n = 3 seeds there). Each has a stated null hypothesis; the
verdict is `holds` or `reversed` only when its test rejects that null at the 5% level, else
`inconclusive` (or `not enough runs`). tests/test_findings_calibration.py simulates each finding with no
true effect and counts decided verdicts (at most 5% plus Monte-Carlo error), and benchmarks/
findings_power.py prints how often a paper-sized effect is found with 3 and with 6 seeds.

  I    ERK beats uniform at 80-90% sparsity. Effect: mean over paired cells of ACC(ERK) - ACC(uniform).
       H0: the mean difference is 0. Welch-Satterthwaite t interval of the contrast (cldst.stats.contrast).
  II   uniform is steadier across growth criteria at 95%. Effect: the difference in the variance of the
       true cell means across growths, ERK's minus uniform's (each estimated without bias: the variance
       of the cell means less their mean squared standard error; mean over tables), shown in points as
       its signed square root. H0: equal spread. Interval: parametric bootstrap (cell means and stds
       redrawn from their sampling distributions), percentile.
  III  the best growth depends on the init and the sparsity. Effect: the root mean square of the growth x
       (init, sparsity) interaction (points; within each table). H0: every growth's effect is the same in
       every (init, sparsity) group (the additive model), under which no group can have another best
       growth. Two-way interaction F test from the cell summaries (cldst.stats.interaction_test). No
       interval; it cannot be `reversed` (no interaction is the null, not the opposite claim).
  IV   adaptive growth (random, then gradient from task 6) beats fixed random and fixed gradient.
       Effect: ACC(adaptive) minus the better fixed criterion. H0: adaptive is not better than both.
       Intersection-union test: `holds` when adaptive beats each fixed criterion (two Welch intervals at
       97.5% both above 0); `reversed` when it is worse than either (one interval below 0).
  V    (ours) the capacity-triggered switch vs the paper's fixed switch: ACC difference; Welch. H0: equal.
  VI   (ours) one BatchNorm per task vs the authors' test-batch BatchNorm: mean over the batchnorm
       experiment's cells of ACC(bn=task) - ACC(bn=batch); H0: 0; Welch-Satterthwaite contrast.
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
from cldst.stats import contrast, interaction_test

log = logging.getLogger(__name__)

NOT_ENOUGH = "not enough runs"
CAPACITY_LABEL = f"switch at {CAPACITY_THRESHOLD:.0%} free"  # how our capacity policy reads in text
LOW_SPARSITIES = (0.8, 0.9)
HIGH_SPARSITY = 0.95
PAPER_SEEDS = 3  # "We run experiments on three different seeds and report their average."
ALPHA = 0.05  # each finding's test decides at this level
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
FINDING_COLUMNS = ["finding", "statement", "effect", "low", "high", "p", "seeds", "verdict", "evidence",
                   "paper_effect", "paper_low", "paper_high", "paper_p", "paper_verdict", "paper_evidence"]


@dataclass(frozen=True)
class Estimate:
    """An effect in points with its 95% interval (NaN where the test gives none), the test's p-value,
    the seeds behind it, the verdict of the test and what the numbers were."""

    effect: float
    low: float
    high: float
    p: float
    seeds: int  # the fewest seeds of any cell used (0: nothing to compute)
    verdict: str
    evidence: str


def by_interval(effect: float, low: float, high: float, p: float, seeds: int, evidence: str) -> Estimate:
    """The verdict of a 95% interval: holds above 0, reversed below 0, else inconclusive."""
    if seeds == 0:
        return nothing(evidence)
    decided = not (math.isnan(low) or math.isnan(high))
    verdict = "holds" if decided and low > 0 else "reversed" if decided and high < 0 else "inconclusive"
    return Estimate(effect, low, high, p, seeds, verdict, evidence)


def nothing(why: str) -> Estimate:
    return Estimate(math.nan, math.nan, math.nan, math.nan, 0, NOT_ENOUGH, why)


def _signed_root(x: float) -> float:
    return math.copysign(math.sqrt(abs(x)), x) if not math.isnan(x) else math.nan


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
    r = contrast(means, stds, ns, [1 / c] * c + [-1 / c] * c, level=1 - ALPHA)
    gaps = (paired["mean_erk"] - paired["mean_uni"]).groupby(paired["sparsity"]).mean()
    per = ", ".join(f"{_pct(s)}: {g:+.2f}" for s, g in gaps.items())
    return by_interval(r.effect, r.low, r.high, r.p, int(min(ns)), f"ERK - uniform over {c} paired cells ({per})")


def uniform_steadier(cells: pd.DataFrame, sparsity: float = HIGH_SPARSITY, draws: int = BOOTSTRAP) -> Estimate:
    """II: variance across growths of the true cell means, ERK's minus uniform's, at `sparsity`."""
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
    n = acc["n"].to_numpy(dtype=float)

    def statistic(means: np.ndarray, variances: np.ndarray) -> np.ndarray:
        """[draws, cells] -> [draws]: mean over tables of (ERK's - uniform's) unbiased between-growth variance."""
        out = 0.0
        for idx, sign in groups:
            spread = means[:, idx].var(axis=1, ddof=1) - (variances[:, idx] / n[idx]).mean(axis=1)
            out = out + sign * spread
        return out / len(tables)

    mean, std = acc["mean"].to_numpy(dtype=float), acc["std"].to_numpy(dtype=float)
    effect = float(statistic(mean[None], std[None] ** 2)[0])
    low = high = math.nan
    if np.all(n >= 2) and not np.any(np.isnan(std)):
        rng = np.random.default_rng(0)
        m_star = rng.normal(mean, std / np.sqrt(n), size=(draws, len(acc)))
        v_star = std**2 * rng.chisquare(n - 1, size=(draws, len(acc))) / (n - 1)
        low, high = np.quantile(statistic(m_star, v_star), [ALPHA / 2, 1 - ALPHA / 2])
    spread = {i: np.mean([np.std(acc.loc[idx, "mean"], ddof=1) for idx, s in groups if s == sign])
              for i, sign in (("uniform", -1.0), ("ERK", 1.0))}
    return by_interval(_signed_root(effect), _signed_root(low), _signed_root(high), math.nan, _seeds(acc),
                       f"std of the cell means across growths at {_pct(sparsity)} over {len(tables)} table(s): "
                       f"uniform {spread['uniform']:.2f} vs ERK {spread['ERK']:.2f} (effect: signed root of the "
                       "difference in true between-growth variance, ERK's minus uniform's)")


def best_growth_varies(cells: pd.DataFrame) -> Estimate:
    """III: is there a growth x (init, sparsity) interaction within the tables? F test of the additive model."""
    acc = _acc(cells)
    grouped = acc.groupby(["table", "sparse_init", "sparsity"])["growth"].nunique()
    decidable = grouped[grouped >= 2].index
    per_table = pd.Series([k[0] for k in decidable]).value_counts()
    if (per_table >= 2).sum() == 0:
        return nothing("need >= 2 (init, sparsity) groups with >= 2 growth criteria each in one table")
    acc = acc.set_index(["table", "sparse_init", "sparsity"]).loc[list(decidable)].reset_index()
    rows = list(zip(acc["table"], acc["sparse_init"], acc["sparsity"]))
    cols = list(zip(acc["table"], acc["growth"]))  # a growth's effect may differ between tables (datasets)
    test = interaction_test(acc["mean"], acc["std"], acc["n"], rows, cols)
    seeds = _seeds(acc)
    if seeds == 0:
        return nothing("no seeds")
    verdict = "holds" if test.p < ALPHA else "inconclusive"
    means = acc.groupby(["sparse_init", "sparsity", "growth"])["mean"].mean()
    winners = {key: part.droplevel([0, 1]).idxmax() for key, part in means.groupby(level=[0, 1])}
    listing = ", ".join(f"{i} {_pct(s)}: {g}" for (i, s), g in
                        sorted(winners.items(), key=lambda kv: (kv[0][0] != "uniform", kv[0][1])))
    evidence = (f"interaction F({test.df_interaction:g}, {test.df_error:g}) = {test.f:.2f}, p = {test.p:.3g}; "
                f"best growth by mean ACC: {listing} ({len(set(winners.values()))} distinct)")
    return Estimate(test.rms, math.nan, math.nan, test.p, seeds,
                    verdict if not math.isnan(test.p) else "inconclusive", evidence)


def _growth_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """ACC mean, std and n over seeds per growth (runs of one experiment)."""
    acc = pd.to_numeric(runs["acc"], errors="coerce")
    return acc.groupby(runs["growth"]).agg(["mean", "std", "count"]).rename(columns={"count": "n"})


def adaptive_beats_fixed(runs: pd.DataFrame) -> Estimate:
    """IV: ACC of the random-then-gradient schedule minus the better of fixed random and fixed gradient;
    an intersection-union test over the two comparisons (each at 97.5%)."""
    by = _growth_cells(runs) if not runs.empty else pd.DataFrame()
    absent = [g for g in (ADAPTIVE, "random", "gradient") if g not in by.index]
    if absent:
        return nothing(f"no adaptive-experiment runs with growth {', '.join(absent)}")
    pairs = {g: contrast(by.loc[[ADAPTIVE, g], "mean"], by.loc[[ADAPTIVE, g], "std"], by.loc[[ADAPTIVE, g], "n"],
                         [1, -1], level=1 - ALPHA / 2) for g in ("random", "gradient")}
    fixed = min(pairs, key=lambda g: pairs[g].effect)  # the better fixed criterion
    seeds = int(by.loc[[ADAPTIVE, "random", "gradient"], "n"].min())
    lows, highs = [c.low for c in pairs.values()], [c.high for c in pairs.values()]
    evidence = (f"ACC adaptive {by.loc[ADAPTIVE, 'mean']:.2f} vs random {by.loc['random', 'mean']:.2f}, "
                f"gradient {by.loc['gradient', 'mean']:.2f} (effect against {fixed}; 97.5% intervals each)")
    if seeds < 2 or any(math.isnan(x) for x in lows + highs):
        return Estimate(pairs[fixed].effect, math.nan, math.nan, math.nan, seeds,
                        "inconclusive" if seeds else NOT_ENOUGH, evidence)
    verdict = "holds" if min(lows) > 0 else "reversed" if min(highs) < 0 else "inconclusive"
    # the interval of min(adaptive - random, adaptive - gradient): the two bounds' minima
    return Estimate(pairs[fixed].effect, min(lows), min(highs), max(c.p for c in pairs.values()), seeds,
                    verdict, evidence)


def capacity_beats_fixed_switch(runs: pd.DataFrame) -> Estimate:
    """V (ours): ACC of the capacity-triggered switch minus the paper's fixed switch after task 5."""
    by = _growth_cells(runs) if not runs.empty else pd.DataFrame()
    absent = [g for g in (CAPACITY_POLICY, ADAPTIVE) if g not in by.index]
    if absent:
        return nothing(f"no adaptive-experiment runs with growth {', '.join(absent)}")
    pair = by.loc[[CAPACITY_POLICY, ADAPTIVE]]
    r = contrast(pair["mean"], pair["std"], pair["n"], [1, -1], level=1 - ALPHA)
    evidence = f"ACC {CAPACITY_LABEL} {pair['mean'].iloc[0]:.2f} vs fixed switch {pair['mean'].iloc[1]:.2f}"
    if "path" in runs:
        tasks = switch_tasks(runs[runs["growth"] == CAPACITY_POLICY]).get(CAPACITY_POLICY)
        evidence += f" (switched at task {', '.join(map(str, tasks))})" if tasks else " (never switched)"
    return by_interval(r.effect, r.low, r.high, r.p, int(pair["n"].min()), evidence)


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
    r = contrast(means, stds, ns, [1 / c] * c + [-1 / c] * c, level=1 - ALPHA)
    return by_interval(r.effect, r.low, r.high, r.p, int(min(ns)),
                       f"per-task BN {wide['mean']['task'].mean():.2f} vs test-batch BN "
                       f"{wide['mean']['batch'].mean():.2f} (mean over {c} init x density cells)")


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
            paper = [p.effect, p.low, p.high, p.p, p.verdict, p.evidence]
        elif key == "IV":
            paper = [math.nan] * 4 + ["stated", "the paper states it; Figure 6 has curves, no numbers"]
        else:
            paper = [math.nan] * 4 + ["n/a", "not in the paper"]
        rows.append([key, statement, o.effect, o.low, o.high, o.p, o.seeds, o.verdict, o.evidence, *paper])
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def _interval(effect: float, low: float, high: float, p: float = math.nan) -> str:
    if math.isnan(effect):
        return "—"
    text = f"{effect:+.2f}" if math.isnan(low) else f"{effect:+.2f} [{low:+.2f}, {high:+.2f}]"
    return text + (f" (p = {p:.2g})" if math.isnan(low) and not math.isnan(p) else "")


def findings_markdown(table: pd.DataFrame, profile: str) -> str:
    head = (f"**The paper's findings, and two of ours, on our runs** ({profile_note(profile)}). Effect in "
            "points of ACC with its 95% interval over seeds (III: the interaction's size and its F test's p). "
            "Each finding's test decides at the 5% level against its null (no effect): *holds* or *reversed* "
            "when it rejects, *inconclusive* when it cannot. 'paper' computes the same from the paper's "
            f"Tables 1-4 (mean ± std over {PAPER_SEEDS} seeds).")
    lines = ["| finding | statement | effect [95% CI] | seeds | verdict | evidence | paper: effect [95% CI] | paper |",
             "|:--|:--|:--|:--|:--|:--|:--|:--|"]
    lines += [f"| {r.finding} | {r.statement} | {_interval(r.effect, r.low, r.high, r.p)} | {r.seeds} | "
              f"**{r.verdict}** | {r.evidence} | {_interval(r.paper_effect, r.paper_low, r.paper_high, r.paper_p)} | "
              f"{r.paper_verdict} |" for r in table.itertuples(index=False)]
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
