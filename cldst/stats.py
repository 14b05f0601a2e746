"""Small-sample statistics over seeds, on scipy.stats: the one home of every interval and test cldst reports.

Runs are expensive, so findings rest on 3-8 seeds per cell: normal approximations are too optimistic
there; Student's t (with Welch-Satterthwaite degrees of freedom where variances differ) is the tool.
Every function takes what both our runs and a paper's tables give: raw values, or cell means with their
sample std and seed count. Each test's calibration (how often it decides on pure noise) is checked by
simulation in tests/test_findings_calibration.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with `df` degrees of freedom."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q={q} must be in (0, 1)")
    return float(sps.t.ppf(q, df))


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval (NaN bounds when it cannot be computed)."""

    estimate: float
    low: float
    high: float
    n: int  # observations behind it

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean with its Student-t interval over independent runs (NaNs dropped; one run: NaN bounds)."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if n == 1:
        return Interval(m, math.nan, math.nan, 1)
    half = t_quantile(0.5 + level / 2.0, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(m, m - half, m + half, n)


@dataclass(frozen=True)
class Contrast:
    """A linear contrast of independent group means: effect, its interval, and the two-sided t test of 0."""

    effect: float
    low: float
    high: float
    t: float
    df: float
    p: float  # two-sided


def contrast(means, stds, ns, weights, level: float = 0.95) -> Contrast:
    """sum_i w_i * mean_i for independent groups (sample std s_i over n_i runs each):
    SE^2 = sum_i w_i^2 s_i^2 / n_i, Student's t with Welch-Satterthwaite degrees of freedom
    df = SE^4 / sum_i (w_i^2 s_i^2 / n_i)^2 / (n_i - 1). With two groups and weights (1, -1) this is
    exactly Welch's test. NaN bounds and p when a group has fewer than 2 runs; zero variance: a point."""
    means, stds, ns, weights = (np.asarray(v, dtype=float) for v in (means, stds, ns, weights))
    effect = float(np.sum(weights * means))
    if len(ns) == 0 or np.any(ns < 2) or np.any(np.isnan(stds)):
        return Contrast(effect, math.nan, math.nan, math.nan, math.nan, math.nan)
    parts = weights**2 * stds**2 / ns
    se2 = float(parts.sum())
    if se2 == 0.0:
        return Contrast(effect, effect, effect, math.copysign(math.inf, effect) if effect else 0.0, math.inf,
                        0.0 if effect else 1.0)
    df = se2**2 / float(np.sum(parts**2 / (ns - 1)))
    se = math.sqrt(se2)
    t = effect / se
    half = t_quantile(0.5 + level / 2.0, df) * se
    return Contrast(effect, effect - half, effect + half, t, df, float(2.0 * sps.t.sf(abs(t), df)))


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variance t test of mean(a) - mean(b)."""

    diff: float  # mean(a) - mean(b)
    low: float  # confidence interval of the difference
    high: float
    t: float
    df: float
    p: float  # two-sided
    n_a: int
    n_b: int


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Welch:
    """Welch's test (scipy's ttest_ind, equal_var=False) and interval for mean(a) - mean(b); needs 2+ runs
    per side (else NaN p and bounds). Two constant samples: p = 1 if their means are equal, else 0."""
    x, y = _clean(a), _clean(b)
    nx, ny = len(x), len(y)
    diff = float(x.mean() - y.mean()) if nx and ny else math.nan
    if nx < 2 or ny < 2:
        return Welch(diff, math.nan, math.nan, math.nan, math.nan, math.nan, nx, ny)
    c = contrast([x.mean(), y.mean()], [x.std(ddof=1), y.std(ddof=1)], [nx, ny], [1, -1], level)
    if math.isfinite(c.df):  # some spread: scipy's test (no spread: contrast's point, p 0 or 1)
        test = sps.ttest_ind(x, y, equal_var=False)  # the same t and p, by the field's library
        return Welch(diff, c.low, c.high, float(test.statistic), c.df, float(test.pvalue), nx, ny)
    return Welch(diff, c.low, c.high, c.t, c.df, c.p, nx, ny)


@dataclass(frozen=True)
class Interaction:
    """Test of "the column effects are the same in every row" (no row x column interaction)."""

    f: float
    df_interaction: float
    df_error: float
    p: float
    rms: float  # root mean square of the interaction terms (run-weighted), in the data's units


def interaction_test(means, stds, ns, rows, cols) -> Interaction:
    """Two-way interaction F test from cell summaries (cell mean, sample std, runs), any cells present.

    The additive model mean[r, c] = a_r + b_c is fitted to the cell means by least squares weighted by
    runs; its weighted residual sum of squares is the interaction sum of squares, with (cells - rank of
    the additive design) degrees of freedom. The error mean square pools the within-cell variances
    (sum (n - 1)), so F = (SS_int / df_int) / MS_within ~ F(df_int, sum (n - 1)) when the column effects
    are the same in every row and the seed noise is normal with one variance."""
    means, stds, ns = (np.asarray(v, dtype=float) for v in (means, stds, ns))
    row_ids = {r: i for i, r in enumerate(dict.fromkeys(rows))}
    col_ids = {c: i for i, c in enumerate(dict.fromkeys(cols))}
    design = np.zeros((len(means), len(row_ids) + len(col_ids)))
    design[np.arange(len(means)), [row_ids[r] for r in rows]] = 1.0
    design[np.arange(len(means)), [len(row_ids) + col_ids[c] for c in cols]] = 1.0
    w = np.sqrt(ns)
    coef, *_ = np.linalg.lstsq(design * w[:, None], means * w, rcond=None)
    resid = means - design @ coef
    ss_int = float(np.sum(ns * resid**2))
    df_int = len(means) - int(np.linalg.matrix_rank(design))
    df_err = float(np.sum(ns - 1))
    rms = math.sqrt(ss_int / float(ns.sum())) if len(means) else math.nan
    if df_int < 1 or df_err < 1 or np.any(np.isnan(stds)):
        return Interaction(math.nan, df_int, df_err, math.nan, rms)
    ms_err = float(np.sum((ns - 1) * stds**2)) / df_err
    if ms_err == 0.0:
        return Interaction(math.inf if ss_int else math.nan, df_int, df_err, 0.0 if ss_int else 1.0, rms)
    f = (ss_int / df_int) / ms_err
    return Interaction(f, df_int, df_err, float(sps.f.sf(f, df_int, df_err)), rms)
