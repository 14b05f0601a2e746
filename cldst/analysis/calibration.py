"""How often each finding's test decides: on pure seed noise (its false-decision rate) and with an effect
planted (its power). The findings' own functions run on simulated cells and runs, so what is checked is
the code that makes the README's table.

Seed noise: each run's ACC is its cell's true mean plus N(0, sigma^2); our cpu runs show a median seed
std of 1.3 points and a largest of 3.0 (README), the levels simulated. A simulated table has the shape
of our 10-task experiment (2 inits x 4 growths x 3 sparsities, one table).

Scenarios (true cell means):
  flat        every cell the same: no effect of anything.
  additive    growth and sparsity effects of the paper's size (Table 3, averaged over inits), the same
              for both inits and at every sparsity: no init effect (I), equal spread across growths (II),
              no growth x (init, sparsity) interaction (III). The null of I-III with structure.
  paper       the paper's Table 3 cell means: each of I-III at the size the paper reports (power).
For IV-VI (runs of one experiment): `flat`; `boundary` for IV (adaptive equal to the better fixed
criterion, which beats the other by 3 points); and `planted`, a 3-point effect in the statement's
direction (the paper gives no number for IV; V and VI are ours).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cldst.analysis import findings as fnd
from cldst.analysis.paper import paper_numbers
from cldst.experiments import ADAPTIVE, CAPACITY_POLICY, GROWTHS, INITS

SIGMAS = (1.3, 3.0)  # seed std of ACC, points: our runs' median and largest
SPARSITIES = (0.8, 0.9, 0.95)
PLANTED = 3.0  # points, for IV-VI
DECIDED = ("holds", "reversed")


def truth(scenario: str) -> pd.DataFrame:
    """True cell means (sparse_init, growth, sparsity, mu) of one table for scenario flat/additive/paper."""
    table3 = paper_numbers("table3")
    table3 = table3[table3["metric"] == "ACC"].set_index(["sparse_init", "growth", "sparsity"])["mean"]
    rows = []
    for init in INITS:
        for growth in GROWTHS:
            for sparsity in SPARSITIES:
                if scenario == "flat":
                    mu = 50.0
                elif scenario == "additive":  # growth effect + sparsity effect, averaged over inits
                    g = table3.xs(growth, level="growth").mean() - table3.mean()
                    s = table3.xs(sparsity, level="sparsity").mean()
                    mu = float(g + s)
                elif scenario == "paper":
                    mu = float(table3.loc[(init, growth, sparsity)])
                else:
                    raise ValueError(f"scenario={scenario!r} is not one of: flat, additive, paper")
                rows.append((init, growth, sparsity, mu))
    return pd.DataFrame(rows, columns=["sparse_init", "growth", "sparsity", "mu"])


def draw_cells(true: pd.DataFrame, sigma: float, seeds: int, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated experiment: `seeds` runs per cell -> cell mean, sample std and n (the cells format)."""
    runs = rng.normal(true["mu"].to_numpy()[:, None], sigma, size=(len(true), seeds))
    return true.drop(columns="mu").assign(table="sim", metric="ACC", mean=runs.mean(axis=1),
                                          std=runs.std(axis=1, ddof=1), n=seeds)


def draw_runs(means: dict, sigma: float, seeds: int, rng: np.random.Generator, **fields) -> pd.DataFrame:
    """Runs (one row each, column acc) of groups keyed by a tuple of `fields` values -> true mean."""
    names = list(fields)
    rows = []
    for key, mu in means.items():
        for acc in rng.normal(mu, sigma, size=seeds):
            rows.append({**dict(zip(names, key)), "acc": acc})
    return pd.DataFrame(rows)


def runs_truth(finding: str, scenario: str) -> tuple[dict, dict]:
    """(group -> true mean, the fields naming the group) of the runs finding IV, V or VI reads."""
    lift = {"flat": 0.0, "planted": PLANTED, "boundary": 0.0}[scenario]
    if finding == "IV":
        fixed = {"random": 50.0, "gradient": 50.0 - (3.0 if scenario == "boundary" else 0.0)}
        means = {(g,): m for g, m in fixed.items()} | {(ADAPTIVE,): max(fixed.values()) + lift}
        return means, {"growth": None}
    if finding == "V":
        return {(ADAPTIVE,): 50.0, (CAPACITY_POLICY,): 50.0 + lift}, {"growth": None}
    if finding == "VI":  # ERK at three densities, each its own level
        means = {}
        for density, level in ((0.2, 60.0), (0.1, 55.0), (0.05, 45.0)):
            means[("ERK", density, "batch")] = level
            means[("ERK", density, "task")] = level + lift
        return means, {"sparse_init": None, "density": None, "bn": None}
    raise ValueError(f"finding={finding!r} is not one of: IV, V, VI")


CELL_FINDINGS = {"I": fnd.erk_beats_uniform, "II": fnd.uniform_steadier, "III": fnd.best_growth_varies}
RUN_FINDINGS = {"IV": fnd.adaptive_beats_fixed, "V": fnd.capacity_beats_fixed_switch, "VI": fnd.task_bn_beats_batch_bn}


@dataclass(frozen=True)
class Rates:
    finding: str
    scenario: str
    sigma: float
    seeds: int
    trials: int
    verdicts: dict  # verdict -> count

    @property
    def decided(self) -> float:
        return sum(self.verdicts.get(v, 0) for v in DECIDED) / self.trials

    @property
    def holds(self) -> float:
        return self.verdicts.get("holds", 0) / self.trials


def simulate(finding: str, scenario: str, sigma: float, seeds: int, trials: int, seed: int = 0,
             bootstrap: int = fnd.BOOTSTRAP) -> Rates:
    """Run one finding's test on `trials` simulated experiments and count its verdicts."""
    rng = np.random.default_rng(seed)
    counts: Counter[str] = Counter()
    if finding in CELL_FINDINGS:
        true = truth(scenario)
        for _ in range(trials):
            cells = draw_cells(true, sigma, seeds, rng)
            est = (fnd.uniform_steadier(cells, draws=bootstrap) if finding == "II" else CELL_FINDINGS[finding](cells))
            counts[est.verdict] += 1
    else:
        means, fields = runs_truth(finding, scenario)
        for _ in range(trials):
            counts[RUN_FINDINGS[finding](draw_runs(means, sigma, seeds, rng, **fields)).verdict] += 1
    return Rates(finding, scenario, sigma, seeds, trials, dict(counts))


NULLS = {"I": ("flat", "additive"), "II": ("flat", "additive"), "III": ("flat", "additive"),
         "IV": ("flat", "boundary"), "V": ("flat",), "VI": ("flat",)}
POWER = {"I": "paper", "II": "paper", "III": "paper", "IV": "planted", "V": "planted", "VI": "planted"}
