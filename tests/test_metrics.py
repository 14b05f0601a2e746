"""Metrics on hand-computed accuracy matrices."""

import math

import numpy as np
import pytest

from cldst import metrics

NAN = float("nan")
A3 = np.array([[90.0, NAN, NAN], [85.0, 80.0, NAN], [84.0, 78.0, 70.0]])


def test_acc_is_mean_of_last_row():
    assert metrics.acc(A3) == pytest.approx((84 + 78 + 70) / 3)


def test_bwt_compares_final_row_with_diagonal():
    # (84 - 90) + (78 - 80) = -8 over T-1 = 2 tasks; the last task does not count
    assert metrics.bwt(A3) == pytest.approx(-4.0)


def test_bwt_positive_and_single_task():
    A = np.array([[50.0, NAN], [60.0, 40.0]])
    assert metrics.bwt(A) == pytest.approx(10.0)
    assert metrics.bwt(np.array([[70.0]])) == 0.0


def test_incremental_accuracy_averages_seen_tasks():
    np.testing.assert_allclose(metrics.incremental_accuracy(A3), [90.0, 82.5, (84 + 78 + 70) / 3])


def test_fwt_authors_is_the_mean_of_row_means_above_the_diagonal():
    # rows: task 0 on tasks 1, 2 -> mean 15; task 1 on task 2 -> 30; (15 + 30) / 2 = 22.5.
    # The mean over all pairs i < j would be (10 + 20 + 30) / 3 = 20: the authors' code (and eq. 4)
    # normalizes per row. The diagonal and the lower triangle are never read.
    F = np.array([[99.0, 10.0, 20.0], [NAN, 99.0, 30.0], [NAN, NAN, 99.0]])
    assert metrics.fwt_authors(F) == 22.5
    F4 = np.array([[0.0, 8.0, 10.0, 12.0], [NAN, 0.0, 6.0, 2.0], [NAN, NAN, 0.0, 7.0], [NAN] * 4])
    assert metrics.fwt_authors(F4) == pytest.approx((10.0 + 4.0 + 7.0) / 3)
    assert math.isnan(metrics.fwt_authors(np.array([[5.0]])))


def test_fwt_standard_skips_first_task():
    assert metrics.fwt_standard([5.0, 12.0, 14.0], [10.0, 10.0, 10.0]) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        metrics.fwt_standard([1.0, 2.0], [1.0])


def test_non_square_matrix_is_rejected():
    with pytest.raises(ValueError, match="square"):
        metrics.acc(np.zeros((2, 3)))


def test_summary_names():
    s = metrics.summary(A3, np.full((3, 3), 10.0), [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert s == pytest.approx({"acc": 232 / 3, "bwt": -4.0, "fwt_authors": 10.0, "fwt_standard": 1.5})
