"""cldst.stats against printed tables (Student's t, F) and computations written out by hand.

Expected values never come from the functions under test: quantiles are those of printed tables, and
where a p-value is checked the data are built so that the statistic equals a printed critical value
(p = 0.05 by definition) or the tail is integrated here from the density."""

import math

import pytest

from cldst import stats

# two-sided 95% critical values of Student's t (printed tables)
T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445, 8: 2.306004, 10: 2.228139, 30: 2.042272}


@pytest.mark.parametrize("df, quantile", sorted(T_975.items()))
def test_t_quantiles_match_the_tables(df, quantile):
    assert stats.t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-5)
    assert stats.t_quantile(0.025, df) == pytest.approx(-quantile, abs=1e-5)
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, df)


def test_mean_ci_by_hand():
    ci = stats.mean_ci([1.0, 2.0, 3.0])  # mean 2, s 1, n 3: 2 +- 4.302653 / sqrt(3)
    assert ci.estimate == 2.0 and ci.n == 3
    assert (ci.low, ci.high) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), abs=1e-6)
    one = stats.mean_ci([5.0, float("nan")])
    assert one.estimate == 5.0 and one.n == 1 and math.isnan(one.low)


def test_contrast_by_hand():
    # 70 - 60, each group std 2 over 3 runs: SE^2 = 4/3 + 4/3 = 8/3, df = (8/3)^2 / (2 (4/3)^2 / 2) = 4:
    # half-width 2.776445 * sqrt(8/3) = 4.533916
    c = stats.contrast([70, 60], [2, 2], [3, 3], [1, -1])
    assert c.effect == 10 and c.df == pytest.approx(4.0)
    assert (c.low, c.high) == pytest.approx((5.466084, 14.533916), abs=1e-5)
    assert c.t == pytest.approx(10 / math.sqrt(8 / 3))
    # an effect exactly at the critical value: t = 2.776445 on 4 df has p = 0.05 and the interval touches 0
    edge = stats.contrast([2.776445 * math.sqrt(8 / 3), 0], [2, 2], [3, 3], [1, -1])
    assert edge.p == pytest.approx(0.05, abs=1e-6) and edge.low == pytest.approx(0.0, abs=1e-5)
    # unequal variances: Welch-Satterthwaite df = (1/3 + 3)^2 / ((1/3)^2 / 2 + 3^2 / 2) = 1.2195...
    uneq = stats.contrast([5, 0], [1, 3], [3, 3], [1, -1])
    assert uneq.df == pytest.approx((1 / 3 + 3) ** 2 / ((1 / 3) ** 2 / 2 + 3**2 / 2))
    one_seed = stats.contrast([70, 60], [float("nan"), float("nan")], [1, 1], [1, -1])
    assert one_seed.effect == 10 and math.isnan(one_seed.low) and math.isnan(one_seed.p)
    point = stats.contrast([7, 5], [0, 0], [3, 3], [1, -1])
    assert (point.low, point.high, point.p) == (2, 2, 0.0)


def t_two_sided_tail(t: float, df: float, steps: int = 200_000) -> float:
    """P(|T| > t) by Simpson's rule on the density, over x = t .. t + 2000 (the rest is < 1e-9 here)."""
    const = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))

    def pdf(x):
        return const * (1 + x * x / df) ** (-(df + 1) / 2)

    a, b = t, t + 2000.0
    h = (b - a) / steps
    total = pdf(a) + pdf(b) + sum((4 if i % 2 else 2) * pdf(a + i * h) for i in range(1, steps))
    return 2 * total * h / 3


def test_welch_by_hand():
    a, b = [30.0, 32.0, 34.0], [20.0, 21.0, 22.0, 23.0]
    w = stats.welch(a, b)
    # mean 32 vs 21.5; s^2 = 4 and 5/3: SE^2 = 4/3 + 5/12 = 1.75; df = 1.75^2 / ((4/3)^2 / 2 + (5/12)^2 / 3)
    se2 = 4 / 3 + 5 / 12
    df = se2**2 / ((4 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    assert w.diff == 10.5 and w.df == pytest.approx(df) and w.t == pytest.approx(10.5 / math.sqrt(se2))
    assert w.p == pytest.approx(t_two_sided_tail(10.5 / math.sqrt(se2), df), rel=1e-4)
    assert stats.welch([1.0, 2.0], [1.0, 2.0]).p == pytest.approx(1.0)
    same = stats.welch([3.0, 3.0], [3.0, 3.0])
    assert (same.diff, same.p) == (0.0, 1.0)
    assert math.isnan(stats.welch([1.0], [1.0, 2.0]).p)


def test_interaction_by_hand():
    # 2 x 2 cells, 3 runs each: interaction (70 - 60 - 62 + 70) / 4 = 4.5 in every cell, SS = 3 * 4 * 4.5^2 = 243
    # on 1 df; error df 4 * 2 = 8. With s^2 = 243 / 5.317655 (F(1, 8; 0.95) = 2.306004^2): F at its 95% point.
    means, rows, cols = [70, 60, 62, 70], ["u", "u", "e", "e"], ["r", "g", "r", "g"]
    s = math.sqrt(243 / 2.306004**2)
    test = stats.interaction_test(means, [s] * 4, [3] * 4, rows, cols)
    assert (test.df_interaction, test.df_error) == (1, 8)
    assert test.f == pytest.approx(2.306004**2) and test.p == pytest.approx(0.05, abs=1e-5)
    assert test.rms == pytest.approx(4.5)
    # additive cells: no interaction at all
    flat = stats.interaction_test([70, 60, 75, 65], [1] * 4, [3] * 4, rows, cols)
    assert flat.f == pytest.approx(0.0, abs=1e-9) and flat.p == pytest.approx(1.0)
    # 2 x 3 with one cell missing: 5 cells, additive rank 2 + 3 - 1 = 4: 1 df
    five = stats.interaction_test([1, 2, 3, 4, 5], [1] * 5, [2] * 5, ["a", "a", "a", "b", "b"], [1, 2, 3, 1, 2])
    assert five.df_interaction == 1 and five.df_error == 5
    # 2 x 3 complete: (2 - 1) (3 - 1) = 2 df
    six = stats.interaction_test(range(6), [1] * 6, [2] * 6, ["a"] * 3 + ["b"] * 3, [1, 2, 3] * 2)
    assert six.df_interaction == 2
