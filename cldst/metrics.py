"""Continual-learning metrics from accuracy matrices (all values in percent).

`A[t, i]` is the accuracy on task i after training task t (0-based); entries with i > t are NaN
(task i not seen yet). The paper's equations (2)-(4), 1-based, with T tasks:

    ACC = 1/T     sum_{i=1..T}   A[T, i]
    BWT = 1/(T-1) sum_{i=1..T-1} (A[T, i] - A[i, i])
    FWT (authors) = 1/(T-1) sum_{i=1..T-1} [ 1/(T-i) sum_{j=i+1..T} F[i, j] ]: for each task i but the
                    last, the mean of F[i, j] over the later tasks j, then the mean of those T-1 row
                    means (the authors' code, as eq. 4 normalizes per row; not the mean over all pairs,
                    which weighs early rows more). F[i, j] is task i's subnetwork (mask and head) applied
                    to task j's test data with task j's labels, measured on the final network. With
                    parameter isolation this is close to chance (1/classes per task), which is what the
                    paper's tables show (~9.5% for 10-class tasks).
    FWT (standard, Lopez-Paz & Ranzato 2017) = 1/(T-1) sum_{i=2..T} (P[i] - B[i]): P[i] the accuracy on
                    task i just before training it (its initial mask drawn, head untrained), B[i] the
                    accuracy of the randomly initialised network on task i.
"""

from __future__ import annotations

import numpy as np


def _square(A) -> np.ndarray:
    A = np.asarray(A, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square T x T, got shape {A.shape}")
    return A


def acc(A) -> float:
    """Mean accuracy over all tasks after the last task (eq. 2)."""
    A = _square(A)
    return float(np.mean(A[-1]))


def bwt(A) -> float:
    """Backward transfer (eq. 3): final accuracy minus accuracy just after learning, tasks 1..T-1.

    0.0 for a single task (nothing to forget)."""
    A = _square(A)
    T = A.shape[0]
    if T == 1:
        return 0.0
    return float(np.mean(A[-1, :-1] - np.diag(A)[:-1]))


def incremental_accuracy(A) -> np.ndarray:
    """Mean accuracy over the tasks seen so far after each task: the curves of Figures 2-6. Shape [T]."""
    A = _square(A)
    return np.array([np.mean(A[t, : t + 1]) for t in range(A.shape[0])])


def fwt_authors(F) -> float:
    """Mean over rows i < T-1 of the mean of F[i, i+1:] (the authors' forward transfer; module docstring)."""
    F = _square(F)
    T = F.shape[0]
    if T == 1:
        return float("nan")
    return float(np.mean([np.mean(F[i, i + 1 :]) for i in range(T - 1)]))


def fwt_standard(pre, baseline) -> float:
    """Mean over tasks 2..T of (accuracy before training the task - random-init accuracy)."""
    pre = np.asarray(pre, dtype=float)
    baseline = np.asarray(baseline, dtype=float)
    if pre.shape != baseline.shape or pre.ndim != 1:
        raise ValueError(f"pre {pre.shape} and baseline {baseline.shape} must be vectors of the same length")
    if pre.shape[0] < 2:
        return float("nan")
    return float(np.mean(pre[1:] - baseline[1:]))


def summary(A, F=None, pre=None, baseline=None) -> dict[str, float]:
    """All scalar metrics of a run, named as in the run record."""
    out = {"acc": acc(A), "bwt": bwt(A)}
    out["fwt_authors"] = fwt_authors(F) if F is not None else float("nan")
    out["fwt_standard"] = fwt_standard(pre, baseline) if pre is not None else float("nan")
    return out
