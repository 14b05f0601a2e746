"""Figures 2-6, A-D and BN (ours): incremental top-1 accuracy over tasks, one line per growth (or other field).

Each figure is a grid of panels (rows: the experiment's first panel field, e.g. sparse init; columns:
the second, e.g. density) read from the experiment registry, so Figures 2-5 and A-D share one
function. A line is the mean over seeds with a ±std band when there are several seeds; a panel
without runs says so instead of disappearing. Every figure is written as PDF and PNG.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cldst.analysis.findings import ADAPTIVE, CAPACITY_LABEL, CAPACITY_POLICY, switch_tasks
from cldst.analysis.paper import (
    ADAPTIVE_FIGURE,
    APPENDIX_FIGURES,
    MAIN_FIGURES,
    Artifact,
    coverage_note,
    output_stem,
    profile_note,
    select_runs,
)
from cldst.experiments import ARTIFACTS, GROWTHS, get_experiment
from cldst.paths import figures_dir
from cldst.plotting import INIT_COLORS, growth_color

log = logging.getLogger(__name__)

DPI = 150
ACC_LABEL = "top-1 accuracy (%)"
# Labels of the adaptive experiment's schedules; the capacity policy gets its own color (growth_color
# gives every schedule the adaptive purple, and Figure 6 shows two schedules).
SCHEDULE_LABELS = {ADAPTIVE: "adaptive (random → gradient at task 6)", CAPACITY_POLICY: CAPACITY_LABEL}
CAPACITY_POLICY_COLOR = "#8c564b"
BN_LABELS = {"batch": "test-batch statistics (authors)", "standard": "one shared BN", "task": "one BN per task"}


# ---------------------------------------------------------------- labels and colors
def value_label(field: str, value) -> str:
    """How a field's value reads in titles and legends: density 0.2 -> "80% sparsity"."""
    if field == "density":
        return f"{round((1 - float(value)) * 100, 2):g}% sparsity"
    if field == "update_frequency":
        return f"ΔT={value}"
    if field == "growth":
        return SCHEDULE_LABELS.get(value, str(value))
    if field == "bn":
        return BN_LABELS.get(value, str(value))
    return str(value)


def line_color(field: str, value, index: int, count: int):
    if field == "growth":
        return CAPACITY_POLICY_COLOR if value == CAPACITY_POLICY else growth_color(str(value))
    return plt.get_cmap("viridis")(index / max(count - 1, 1) * 0.9)  # ordered values: a sequential map


def _sort_key(v) -> tuple:
    return (0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v))


def _ordered(preferred: list, present) -> list:
    """Registry order first (values that have runs), then any other value present, sorted."""
    present = list(dict.fromkeys(present))
    return [v for v in preferred if v in present] + sorted((v for v in present if v not in preferred), key=_sort_key)


# ---------------------------------------------------------------- curves
def curve_stats(curves: pd.DataFrame, by: list[str], value: str = "incremental_acc") -> pd.DataFrame:
    """Mean, sample std and n over runs (seeds) of `value` per group of `by` and task."""
    values = pd.to_numeric(curves[value], errors="coerce")
    stats = values.groupby([curves[k] for k in [*by, "task"]]).agg(["mean", "std", "count"])
    return stats.rename(columns={"count": "n"}).reset_index()


# (linestyle, marker) per line of a panel: lines that coincide (e.g. a capacity-triggered switch that
# never fires, and fixed random) stay visible as two patterns, and figures read in black and white.
LINE_STYLES = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D")]


def _draw_line(ax, stats: pd.DataFrame, color, label: str, index: int = 0) -> None:
    stats = stats.sort_values("task")
    linestyle, marker = LINE_STYLES[index % len(LINE_STYLES)]
    ax.plot(stats["task"], stats["mean"], linestyle=linestyle, marker=marker, markersize=3.5, color=color, label=label)
    if (stats["n"] > 1).any():
        ax.fill_between(stats["task"], stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                        color=color, alpha=0.2, linewidth=0)


def plot_curves(curves: pd.DataFrame, *, lines: str = "growth", rows: str | None = None, cols: str | None = None,
                row_values: list | None = None, col_values: list | None = None, line_values: list | None = None,
                title: str = "", sharey: bool = True, value: str = "incremental_acc",
                ylabel: str = ACC_LABEL) -> Figure:
    """A rows x cols grid of panels, one line per value of `lines` (mean over seeds, ±std band if n > 1)."""
    row_values = row_values if rows else [None]
    col_values = col_values if cols else [None]
    line_values = _ordered(line_values or [], curves[lines]) if not curves.empty else []
    width = max(3.6 * len(col_values) + 0.4, 8.0)  # wide enough for the two-line suptitle
    fig, axes = plt.subplots(len(row_values), len(col_values), squeeze=False, sharey=sharey, layout="constrained",
                             figsize=(width, 2.9 * len(row_values) + 1.2))
    stats = curve_stats(curves, [c for c in (rows, cols, lines) if c], value) if not curves.empty else None
    for i, rv in enumerate(row_values):
        for j, cv in enumerate(col_values):
            ax = axes[i][j]
            panel = stats
            if panel is not None:
                for f, v in ((rows, rv), (cols, cv)):
                    if f:
                        panel = panel[panel[f] == v]
            if panel is None or panel.empty:
                ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center", color="gray")
            else:
                for k, lv in enumerate(line_values):
                    part = panel[panel[lines] == lv]
                    if not part.empty:
                        _draw_line(ax, part, line_color(lines, lv, k, len(line_values)), value_label(lines, lv), k)
            ax.set_title(", ".join(value_label(f, v) for f, v in ((rows, rv), (cols, cv)) if f))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if i == len(row_values) - 1:
                ax.set_xlabel("task")
            if j == 0:
                ax.set_ylabel(ylabel)
    found = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, h)
    order = [value_label(lines, v) for v in line_values]  # one legend, in the registry's line order
    handles = {label: found[label] for label in order if label in found}
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), int(width // 2)))
    _suptitle(fig, title)
    return fig


def _suptitle(fig: Figure, title: str) -> None:
    """Wrapped to the figure's width: constrained layout would let a long title run off the page."""
    if title:
        chars = int(fig.get_figwidth() * 10.5)
        fig.suptitle("\n".join(textwrap.fill(line, chars) for line in title.splitlines()))


def save_figure(fig: Figure, out_dir: str | Path | None, stem: str) -> list[Path]:
    out = Path(out_dir) if out_dir is not None else figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.pdf", out / f"{stem}.png"]
    fig.savefig(paths[0])
    fig.savefig(paths[1], dpi=DPI)
    log.info("wrote %s.{pdf,png} into %s", stem, out)
    return paths


def figure_title(artifact: Artifact, profile: str, what: str = "incremental top-1 accuracy") -> str:
    number = artifact.name.replace("figure", "Figure ")
    return f"{number}: {artifact.title}; {what}, mean ± std over seeds\n{profile_note(profile)}"


def build_figure(curves: pd.DataFrame, artifact: Artifact, profile: str,
                 out_dir: str | Path | None = None) -> Figure | None:
    """One grid figure (Figures 2-5, A-D, BN) from the curves of its experiment; None when it has no runs."""
    sel = select_runs(curves, artifact.experiment, profile)
    if sel.empty:
        return None
    exp = get_experiment(artifact.experiment)
    rows, cols = (list(exp.panels) + [None, None])[:2]
    fig = plot_curves(
        sel, lines=exp.lines, rows=rows, cols=cols,
        row_values=_ordered(exp.grid.get(rows, []), exp.grid.get(rows, []) + sel[rows].tolist()) if rows else None,
        col_values=_ordered(exp.grid.get(cols, []), exp.grid.get(cols, []) + sel[cols].tolist()) if cols else None,
        line_values=exp.grid.get(exp.lines), title=figure_title(artifact, profile),
        sharey=artifact.name != "figureA",  # the paper gives Figure A a y-scale per panel
    )
    save_figure(fig, out_dir, output_stem(artifact.stem, profile))
    return fig


def _build_many(curves, artifacts: dict[str, Artifact], profile, out_dir) -> tuple[dict[str, Figure], list[str]]:
    figs, notes = {}, []
    for name, artifact in artifacts.items():
        note = coverage_note(curves, artifact, profile)
        if note:
            notes.append(note)
        fig = build_figure(curves, artifact, profile, out_dir)
        if fig is not None:
            figs[name] = fig
    return figs, notes


def build_main_figures(curves: pd.DataFrame, profile: str = "paper",
                       out_dir: str | Path | None = None) -> tuple[dict[str, Figure], list[str]]:
    """Figures 2-5; returns the figures built and one line per missing or partial figure."""
    return _build_many(curves, MAIN_FIGURES, profile, out_dir)


def build_appendix_figures(curves: pd.DataFrame, profile: str = "paper",
                           out_dir: str | Path | None = None) -> tuple[dict[str, Figure], list[str]]:
    """Figures A-D (update frequency, sparsity 70/85/99, MobileNetV2, VGG-like) and BN (ours: BatchNorm kinds)."""
    return _build_many(curves, APPENDIX_FIGURES, profile, out_dir)


# ---------------------------------------------------------------- Figure 6
def build_adaptive_figure(curves: pd.DataFrame, runs: pd.DataFrame, profile: str = "paper",
                          out_dir: str | Path | None = None) -> tuple[Figure | None, list[str]]:
    """Figure 6: fixed random, fixed gradient, the paper's switch and ours; a dotted line where each switches."""
    note = coverage_note(curves, ADAPTIVE_FIGURE, profile)
    sel = select_runs(curves, ADAPTIVE_FIGURE.experiment, profile)
    if sel.empty:
        return None, [note]
    exp = get_experiment(ADAPTIVE_FIGURE.experiment)
    fig = plot_curves(sel, lines="growth", line_values=exp.grid["growth"], title=figure_title(ADAPTIVE_FIGURE, profile))
    ax = fig.axes[0]
    switches = switch_tasks(select_runs(runs, ADAPTIVE_FIGURE.experiment, profile))
    if fig.legends and CAPACITY_POLICY in set(sel["growth"]) and CAPACITY_POLICY not in switches:
        for text in fig.legends[0].get_texts():  # no dotted line to look for: say so
            if text.get_text() == CAPACITY_LABEL:
                text.set_text(f"{CAPACITY_LABEL} (never switched)")
    for growth, tasks in switches.items():
        for t in tasks:
            ax.axvline(t, color=line_color("growth", growth, 0, 1), linestyle=":", linewidth=1.5, gid="switch")
            ax.annotate(f"switch (task {t})", (t, 1), xycoords=("data", "axes fraction"), rotation=90,
                        ha="right", va="top", fontsize=7, color=line_color("growth", growth, 0, 1))
    save_figure(fig, out_dir, output_stem(ADAPTIVE_FIGURE.stem, profile))
    return fig, [note] if note else []


# ---------------------------------------------------------------- capacity


def load_capacity(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's capacity.csv with its identifying fields; `task` becomes 1-based like the curves."""
    frames = []
    for row in runs.itertuples(index=False):
        path = Path(row.path) / "capacity.csv"
        if not path.is_file():
            log.warning("no capacity.csv in %s", row.path)
            continue
        cap = pd.read_csv(path)
        cap["task"] = cap["task"] + 1
        frames.append(cap.assign(run_id=row.run_id, sparse_init=row.sparse_init, growth=row.growth,
                                 density=row.density, seed=row.seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def saturation(capacity: pd.DataFrame, threshold: float = 0.95) -> pd.DataFrame:
    """First task (1-based) at which a layer's mean used fraction reaches `threshold`, per init (NaN: never)."""
    mean = capacity.groupby(["sparse_init", "layer", "task"], sort=False)["used_fraction"].mean().reset_index()
    hit = mean[mean["used_fraction"] >= threshold].groupby(["layer", "sparse_init"], sort=False)["task"].min()
    layers = list(dict.fromkeys(capacity["layer"]))
    inits = _ordered(list(INIT_COLORS), capacity["sparse_init"])
    return hit.unstack("sparse_init").reindex(index=layers, columns=inits)


def plot_capacity_total(curves: pd.DataFrame, title: str = "") -> Figure:
    """(a) fraction of the backbone used after each task, (b) share of each task's mask that it trains,
    at its draw (dashed) and after its last topology update (solid), (c) incremental accuracy; one
    colour per init."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    inits = _ordered(list(INIT_COLORS), curves["sparse_init"])
    panels = ((axes[0], ["used_fraction"], "backbone used (fraction)"),
              (axes[1], ["trainable_share_end", "trainable_share_start"], "trainable share of the task's mask"),
              (axes[2], ["incremental_acc"], ACC_LABEL))
    for ax, values, ylabel in panels:
        for value in values:
            if value not in curves or curves[value].isna().all():
                continue  # records written before the trainable share was kept
            stats = curve_stats(curves, ["sparse_init"], value)
            for k, init in enumerate(inits):
                suffix = {"trainable_share_end": ", after the last update",
                          "trainable_share_start": ", at the draw"}.get(value, " (all growths)")
                style = 1 if value == "trainable_share_start" else k
                _draw_line(ax, stats[stats["sparse_init"] == init], INIT_COLORS.get(init, "C0"), f"{init}{suffix}", style)
        ax.set(xlabel="task", ylabel=ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.set_ylim(0, 1.05)
    axes[0].axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    axes[0].set_title("(a) backbone capacity used")
    axes[1].set_title("(b) what each task can still train")
    axes[2].set_title("(c) incremental accuracy")
    axes[0].legend()
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7)
    else:
        axes[1].text(0.5, 0.5, "not in these records", ha="center", va="center", transform=axes[1].transAxes)
    _suptitle(fig, title)
    return fig


def plot_capacity_layers(capacity: pd.DataFrame, title: str = "") -> Figure:
    """Heatmaps layer x task of the used fraction (mean over runs), one per init."""
    per_layer = capacity[capacity["layer"] != "all"]
    inits = _ordered(list(INIT_COLORS), per_layer["sparse_init"])
    layers = list(dict.fromkeys(per_layer["layer"]))
    fig, axes = plt.subplots(1, len(inits), squeeze=False, layout="constrained",
                             figsize=(4.5 * len(inits) + 2.5, max(0.22 * len(layers) + 1.8, 3.5)))
    im = None
    for ax, init in zip(axes[0], inits):
        grid = (per_layer[per_layer["sparse_init"] == init]
                .pivot_table(index="layer", columns="task", values="used_fraction", aggfunc="mean").reindex(layers))
        im = ax.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_xticks(range(grid.shape[1]), [str(t) for t in grid.columns])
        ax.set_yticks(range(len(layers)), layers if ax is axes[0][0] else [""] * len(layers), fontsize=6)
        ax.set(xlabel="task", title=init)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), label="fraction of layer used")
    _suptitle(fig, title)
    return fig


def mask_overlaps(runs: pd.DataFrame) -> tuple[dict[str, np.ndarray], list[str]]:
    """Task x task overlap of the masks of one run per init (the first growth in registry order, lowest seed)."""
    out, notes = {}, []
    for init in _ordered(list(INIT_COLORS), runs["sparse_init"]):
        of_init = runs[runs["sparse_init"] == init]
        growth = _ordered(GROWTHS, of_init["growth"])[0]
        chosen = of_init[of_init["growth"] == growth].sort_values("seed").iloc[0]
        path = Path(chosen["path"]) / "masks.pt"
        if not path.is_file():
            notes.append(f"capacity overlap: no masks.pt in {chosen['path']} (run with save_masks=true)")
            continue
        from cldst.sparse import load_masks, overlap_matrix  # the sparse module owns the mask format

        out[f"{init} ({chosen['growth']}, seed {chosen['seed']})"] = np.asarray(overlap_matrix(load_masks(path)))
    return out, notes


def plot_overlap(matrices: dict[str, np.ndarray], title: str = "") -> Figure:
    fig, axes = plt.subplots(1, max(len(matrices), 1), squeeze=False, figsize=(4.2 * max(len(matrices), 1) + 1, 4),
                             layout="constrained")
    im = None
    for ax, (label, m) in zip(axes[0], matrices.items()):
        im = ax.imshow(m, vmin=0, vmax=1, cmap="magma", interpolation="nearest")
        ticks = range(m.shape[0])
        ax.set_xticks(ticks, [str(t + 1) for t in ticks])
        ax.set_yticks(ticks, [str(t + 1) for t in ticks])
        ax.set(xlabel="task j", ylabel="task i", title=label)
    if im is not None:  # cldst.sparse.overlap_matrix: (i, j) = |M_i ∩ M_j| / |M_j|
        fig.colorbar(im, ax=axes[0].tolist(), label="share of task j's mask also in task i's")
    _suptitle(fig, title)
    return fig


def capacity_runs(runs: pd.DataFrame, profile: str, experiment: str, density: float) -> pd.DataFrame:
    sel = select_runs(runs, experiment, profile)
    return sel[np.isclose(sel["density"].astype(float), density)] if not sel.empty else sel


def saturation_table(runs: pd.DataFrame, profile: str = "paper", experiment: str = "cifar100-10",
                     density: float = 0.2, threshold: float = 0.95) -> pd.DataFrame:
    """Per layer (and "all"), the first task at which each init has used `threshold` of it."""
    capacity = load_capacity(capacity_runs(runs, profile, experiment, density))
    return saturation(capacity, threshold) if not capacity.empty else pd.DataFrame()


def build_capacity(runs: pd.DataFrame, curves: pd.DataFrame, profile: str = "paper", experiment: str = "cifar100-10",
                   density: float = 0.2, out_dir: str | Path | None = None) -> tuple[dict[str, Figure], list[str]]:
    """Capacity figures of one experiment at one density: total use, use per layer, mask overlap."""
    sel_runs = capacity_runs(runs, profile, experiment, density)
    if sel_runs.empty:
        return {}, [f"capacity: no runs of experiment {experiment} at density {density:g} (profile {profile})"]
    sel_curves = select_runs(curves, experiment, profile)
    sel_curves = sel_curves[sel_curves["run_id"].isin(sel_runs["run_id"])]
    what = f"{get_experiment(experiment).title}, {value_label('density', density)}"
    figs, notes, stem = {}, [], ARTIFACTS["capacity"].stem

    def keep(name: str, fig: Figure) -> None:  # saved at once: a later failure must not lose it
        figs[name] = fig
        save_figure(fig, out_dir, output_stem(name, profile))

    keep(f"{stem}_used_total", plot_capacity_total(sel_curves, f"Backbone capacity: {what}\n{profile_note(profile)}"))
    capacity = load_capacity(sel_runs)
    if capacity.empty:
        notes.append(f"capacity per layer: no capacity.csv in the runs of {experiment}")
    else:
        keep(f"{stem}_used_layers", plot_capacity_layers(
            capacity, f"Backbone use per layer after each task: {what}\n{profile_note(profile)}"))
    matrices, missing = mask_overlaps(sel_runs)
    notes += missing
    if matrices:
        keep(f"{stem}_overlap", plot_overlap(matrices, f"Mask overlap between tasks: {what}\n{profile_note(profile)}"))
    return figs, notes
