"""cldst.stats against printed tables of Student's t and hand-computed Welch tests."""

import math

import pytest

from cldst import stats


@pytest.mark.parametrize("df, quantile", [(1, 12.706205), (2, 4.302653), (3, 3.182446), (4, 2.776445),
                                          (10, 2.228139), (30, 2.042272), (1e6, 1.959966)])
def test_t_quantiles_match_the_tables(df, quantile):
    assert stats.t_ppf(0.975, df) == pytest.approx(quantile, abs=1e-5)
    assert stats.t_ppf(0.025, df) == pytest.approx(-quantile, abs=1e-5)
    assert stats.t_cdf(quantile, df) == pytest.approx(0.975, abs=1e-6)  # the quantile is rounded to 1e-6


def test_t_tails_and_the_incomplete_beta():
    assert stats.t_sf2(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| > 1) = 1/2
    assert stats.t_sf2(2.0, 5) == pytest.approx(0.101939, abs=1e-6)
    assert stats.t_sf2(0.0, 7) == 1.0 and stats.t_sf2(math.inf, 3) == 0.0
    assert stats.betainc(2, 3, 0.4) == pytest.approx(0.5248)  # sum_{j=2}^{4} C(4, j) 0.4^j 0.6^(4-j)
    assert stats.betainc(1, 1, 0.3) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        stats.t_ppf(1.0, 3)


def test_mean_ci_by_hand():
    ci = stats.mean_ci([1.0, 2.0, 3.0])  # mean 2, s 1, n 3: 2 +- 4.302653 / sqrt(3)
    assert ci.estimate == 2.0 and ci.n == 3
    assert (ci.low, ci.high) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), abs=1e-6)
    one = stats.mean_ci([5.0, float("nan")])
    assert one.estimate == 5.0 and one.n == 1 and math.isnan(one.low)


def test_welch_by_hand():
    a, b = [30.0, 32.0, 34.0], [20.0, 21.0, 22.0, 23.0]
    w = stats.welch(a, b)
    # mean 32 vs 21.5; s^2 = 4 and 5/3: SE^2 = 4/3 + 5/12 = 1.75; df = 1.75^2 / ((4/3)^2 / 2 + (5/12)^2 / 3)
    se2 = 4 / 3 + 5 / 12
    df = se2**2 / ((4 / 3) ** 2 / 2 + (5 / 12) ** 2 / 3)
    assert w.diff == 10.5 and w.df == pytest.approx(df) and w.t == pytest.approx(10.5 / math.sqrt(se2))
    half = stats.t_ppf(0.975, df) * math.sqrt(se2)
    assert (w.low, w.high) == pytest.approx((10.5 - half, 10.5 + half))
    assert w.p == pytest.approx(stats.t_sf2(10.5 / math.sqrt(se2), df)) and w.p < 0.01
    assert stats.welch([1.0, 2.0], [1.0, 2.0]).p == pytest.approx(1.0)
    same = stats.welch([3.0, 3.0], [3.0, 3.0])
    assert (same.diff, same.p) == (0.0, 1.0)
    assert math.isnan(stats.welch([1.0], [1.0, 2.0]).p)
