"""Every figure and table of the paper, regenerated from collected runs.

  paper     which experiment builds which table/figure, output names, the paper's own numbers
  tables    Tables 1-4 (csv/md/tex), each also beside the paper's numbers
  findings  the paper's four findings as computed checks, on our numbers and on the paper's
  figures   Figures 2-6, A-D and BN (ours), and the backbone-capacity figures

The analysis notebooks (notebooks/analysis_*.ipynb) only call these functions. `build_all(profile)`
collects the runs of a profile, executes every notebook that has something to show with papermill
(executed copies in papermill_runs/<profile>/analysis/) and returns one line per artifact it could
not build, or built only in part. Missing runs never stop the build.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from cldst import notebook
from cldst.analysis.figures import (
    build_adaptive_figure,
    build_appendix_figures,
    build_capacity,
    build_figure,
    build_main_figures,
    curve_stats,
    load_capacity,
    plot_curves,
    saturation,
    saturation_table,
)
from cldst.analysis.findings import (
    NOT_ENOUGH,
    adaptive_summary,
    build_findings,
    check_findings,
    findings_markdown,
)
from cldst.analysis.paper import (
    ADAPTIVE_FIGURE,
    APPENDIX_FIGURES,
    MAIN_FIGURES,
    TABLES,
    Artifact,
    coverage_note,
    notes_markdown,
    output_stem,
    paper_numbers,
    select_runs,
)
from cldst.analysis.tables import (
    all_cells,
    build_table,
    build_tables,
    compare_with_paper,
    comparisons_markdown,
    table_cells,
    tables_markdown,
)
from cldst.collect import collect
from cldst.errors import one_line
from cldst.experiments import ARTIFACTS, get_profile
from cldst.paths import NOTEBOOKS_DIR, runs_dir

log = logging.getLogger(__name__)

CAPACITY_EXPERIMENT, CAPACITY_DENSITY = ARTIFACTS["capacity"].experiment, 0.2  # the capacity notebook's defaults
# Each analysis notebook and the experiments it draws on (from the registry): it runs when any has runs.
NOTEBOOKS: dict[str, list[str]] = {}
for _artifact in ARTIFACTS.values():
    NOTEBOOKS.setdefault(_artifact.notebook, [])
    if _artifact.experiment not in NOTEBOOKS[_artifact.notebook]:
        NOTEBOOKS[_artifact.notebook].append(_artifact.experiment)


def load_runs(profile: str = "paper", runs_root: str | Path = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """`collect` the runs of a profile: under `runs_root`, or papermill_runs/<profile>/ when it is empty."""
    get_profile(profile)
    return collect(Path(runs_root) if runs_root else runs_dir() / profile)


def missing_report(runs: pd.DataFrame, profile: str, where: str = "") -> list[str]:
    """One line per artifact whose runs are missing (or only partly there); empty when all is there."""
    notes = [coverage_note(runs, a, profile, where)
             for a in [*TABLES.values(), *MAIN_FIGURES.values(), ADAPTIVE_FIGURE, *APPENDIX_FIGURES.values()]]
    capacity = select_runs(runs, CAPACITY_EXPERIMENT, profile)
    if capacity.empty or not (capacity["density"].astype(float) - CAPACITY_DENSITY).abs().lt(1e-9).any():
        notes.append(f"capacity: no runs of experiment {CAPACITY_EXPERIMENT} at density {CAPACITY_DENSITY:g} "
                     f"(profile {profile}){where}")
    if all(select_runs(runs, e, profile).empty for e in NOTEBOOKS["analysis_tables"]):
        notes.append(f"findings: no runs of the main experiments or of {ADAPTIVE_FIGURE.experiment} "
                     f"(profile {profile}){where}")
    return [n for n in notes if n]


def build_all(profile: str = "paper", root: str | Path | None = None, *, out_dir: str | Path | None = None,
              kernel_name: str | None = None) -> list[str]:
    """Execute every analysis notebook that has runs to show; return what could not be built and why.

    Runs are read from `root` (default papermill_runs/<profile>/); executed notebooks go to `out_dir`
    (default papermill_runs/<profile>/analysis/); figures and tables to cldst.paths.figures_dir() and
    tables_dir() (the notebook kernels inherit CLDST_FIGURES / CLDST_TABLES)."""
    get_profile(profile)
    root = Path(root) if root else runs_dir() / profile
    runs, _ = collect(root)
    lines = missing_report(runs, profile, f" under {root}")
    out = Path(out_dir) if out_dir else runs_dir() / profile / "analysis"
    todo = [name for name, exps in NOTEBOOKS.items() if any(not select_runs(runs, e, profile).empty for e in exps)]
    if not todo:
        return lines
    out.mkdir(parents=True, exist_ok=True)
    for name in todo:
        target = out / f"{name}.ipynb"
        log.info("executing %s -> %s", name, target)
        try:
            notebook.execute(NOTEBOOKS_DIR / f"{name}.ipynb", target, {"profile": profile, "runs_root": str(root)},
                             cwd=out, kernel_name=kernel_name)
        except Exception as exc:  # one failing notebook must not stop the others; say which and why
            lines.append(f"{name}: {NOTEBOOK_FAILED}: {one_line(exc)} (see {target})")
    return lines


NOTEBOOK_FAILED = "notebook failed"  # build_all's line for an analysis notebook that raised


def failed_notebooks(lines: list[str]) -> list[str]:
    """The lines of build_all that are failures (an analysis notebook raised), not missing runs."""
    return [line for line in lines if f": {NOTEBOOK_FAILED}: " in line]


__all__ = [
    "ADAPTIVE_FIGURE", "APPENDIX_FIGURES", "MAIN_FIGURES", "NOTEBOOKS", "NOTEBOOK_FAILED", "NOT_ENOUGH", "TABLES",
    "Artifact", "failed_notebooks",
    "adaptive_summary", "all_cells", "build_adaptive_figure", "build_all", "build_appendix_figures",
    "build_capacity", "build_figure", "build_findings", "build_main_figures", "build_table", "build_tables",
    "check_findings", "compare_with_paper", "comparisons_markdown", "coverage_note", "curve_stats", "findings_markdown",
    "load_capacity", "load_runs", "missing_report", "notes_markdown", "output_stem", "paper_numbers",
    "plot_curves", "saturation", "saturation_table", "select_runs", "table_cells", "tables_markdown",
]
