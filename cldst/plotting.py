"""Shared plot style (one color per growth criterion and per sparse init, everywhere) and the per-run sanity plot."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

GROWTH_COLORS = {
    "random": "#1f77b4",
    "unfired": "#ff7f0e",
    "gradient": "#2ca02c",
    "momentum": "#d62728",
    "adaptive": "#9467bd",
}

INIT_COLORS = {"uniform": "#4d4d4d", "ERK": "#e377c2"}


def growth_color(name: str) -> str:
    """Color of a growth criterion; schedules ("0:random,5:gradient", ...) are the adaptive color."""
    return GROWTH_COLORS.get(name, GROWTH_COLORS["adaptive"])


def plot_run(metrics: dict, title: str = ""):
    """Accuracy matrix and incremental accuracy of one run (what train.ipynb shows at the end)."""
    A = np.array([[np.nan if v is None else v for v in row] for row in metrics["acc_matrix"]], dtype=float)
    T = A.shape[0]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    im = ax1.imshow(A, vmin=0, vmax=100, cmap="viridis")
    ax1.set(xlabel="evaluated task", ylabel="after training task", title="accuracy matrix A[t, i] (%)",
            xticks=range(T), yticks=range(T), xticklabels=range(1, T + 1), yticklabels=range(1, T + 1))
    fig.colorbar(im, ax=ax1, shrink=0.8)
    tasks = np.arange(1, T + 1)
    ax2.plot(tasks, metrics["incremental_acc"], marker="o", label="mean over tasks seen")
    ax2.plot(tasks, np.diag(A), marker=".", linestyle="--", label="task just learned")
    ax2.set(xlabel="task", ylabel="top-1 accuracy (%)", ylim=(0, 100), title=title or "incremental accuracy")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))  # tasks are whole numbers
    ax2.legend()
    return fig
