"""Small-sample statistics over seeds: Student-t intervals and Welch's test, with no SciPy.

Runs are expensive, so findings rest on 3-8 seeds per side: normal approximations are too
optimistic there, Student's t is the right tool. The t distribution's CDF is the regularized
incomplete beta function, evaluated with Lentz's continued fraction (Numerical Recipes, 6.4):

    P(|T| > t) = I_x(df / 2, 1 / 2),   x = df / (df + t^2)

Accurate to ~1e-12 for the degrees of freedom that occur here (tests compare with printed tables).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x={x} must be in [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail P(|T| > |t|) of Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df={df} must be > 0")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t)."""
    tail = 0.5 * t_sf2(t, df)
    return 1.0 - tail if t >= 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (bisection on the CDF; q in (0, 1))."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q={q} must be in (0, 1)")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
    return 0.5 * (lo + hi)


def _clean(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[~np.isnan(x)]


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval (NaN bounds when it cannot be computed)."""

    estimate: float
    low: float
    high: float
    n: int  # observations behind it (per side for a difference: the smaller side)

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
    half = t_ppf(0.5 + level / 2.0, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(m, m - half, m + half, n)


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
    """Welch's test and interval for mean(a) - mean(b); needs 2+ runs per side (else NaN p and bounds).

    Two constant samples: p = 1 if their means are equal, else 0, and a zero-width interval."""
    x, y = _clean(a), _clean(b)
    nx, ny = len(x), len(y)
    diff = float(x.mean() - y.mean()) if nx and ny else math.nan
    if nx < 2 or ny < 2:
        return Welch(diff, math.nan, math.nan, math.nan, math.nan, math.nan, nx, ny)
    vx, vy = float(x.var(ddof=1)) / nx, float(y.var(ddof=1)) / ny
    se2 = vx + vy
    if se2 == 0.0:
        p = 1.0 if diff == 0.0 else 0.0
        return Welch(diff, diff, diff, math.copysign(math.inf, diff) if diff else 0.0, math.inf, p, nx, ny)
    se = math.sqrt(se2)
    df = se2**2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    t = diff / se
    half = t_ppf(0.5 + level / 2.0, df) * se
    return Welch(diff, diff - half, diff + half, t, df, t_sf2(t, df), nx, ny)
