"""The paper's artifacts as the builders see them, file names, and the paper's numbers.

Which experiment builds which table or figure, its file stem and its notebook are registered once, in
`cldst.experiments.ARTIFACTS`; this module groups them for the builders. Outputs of a profile other than "paper" carry the
profile as a prefix (`smoke_table1_cifar100_20tasks.csv`) so they can never be mistaken for paper
numbers. `paper_numbers()` reads Tables 1-4 as the paper printed them (cldst/reference/paper_tables.csv).
"""

from __future__ import annotations

import itertools

import pandas as pd

from cldst.errors import ConfigError, DataError
from cldst.experiments import ARTIFACTS, PROFILES, Artifact, artifacts_of, cells, get_experiment, get_profile
from cldst.paths import REFERENCE_DIR

# Views of cldst.experiments.ARTIFACTS (the one registry) that the builders iterate over.
TABLES: dict[str, Artifact] = {n: a for n, a in artifacts_of("analysis_tables").items() if n.startswith("table")}
MAIN_FIGURES: dict[str, Artifact] = artifacts_of("analysis_figures")
ADAPTIVE_FIGURE: Artifact = ARTIFACTS["figure6"]
APPENDIX_FIGURES: dict[str, Artifact] = artifacts_of("analysis_appendix")
PAPER_COLUMNS = ["table", "dataset", "num_tasks", "sparse_init", "growth", "sparsity", "metric", "mean", "std"]


def output_stem(stem: str, profile: str) -> str:
    """File stem of an artifact under a profile: paper outputs unprefixed, every other profile prefixed."""
    return stem if profile == "paper" else f"{profile}_{stem}"


def comparable(profile: str) -> bool:
    """Only the paper profile runs the paper's datasets and network: other numbers are not comparable."""
    return profile == "paper"


def profile_note(profile: str) -> str:
    """One line saying what the numbers are; smoke results must never pass for CIFAR numbers."""
    note = get_profile(profile).note if profile in PROFILES else ""
    return note or f"profile '{profile}': not the paper's setup; not comparable to the paper's numbers"


def select_runs(df: pd.DataFrame, experiment: str, profile: str) -> pd.DataFrame:
    """Rows (of runs or curves) of one registry experiment under one profile: the records of the profile's
    pool whose grid point (`cell`, from collect) the experiment runs, each run once. Records of the layout
    before the pool (experiment "<profile>/<experiment>") are read too."""
    if df.empty or "experiment" not in df.columns:
        return df.iloc[0:0]
    mine = df["experiment"] == f"{profile}/{experiment}"
    if "cell" in df.columns:
        mine |= (df["experiment"] == profile) & df["cell"].isin(cells(experiment, profile))
    sel = df[mine]
    if "run_id" in sel.columns:  # one run kept under both layouts (or in two old experiments) counts once
        sel = sel.drop_duplicates(["run_id", "task"] if "task" in sel.columns else ["run_id"])
    return sel


def sparsity_of(density) -> float | pd.Series:
    """1 - density, rounded so that 1 - 0.05 compares equal to the paper's 0.95."""
    return (1 - density).round(4) if isinstance(density, pd.Series) else round(1 - density, 4)


def paper_numbers(table: str | None = None) -> pd.DataFrame:
    """The paper's Tables 1-4 (tidy: PAPER_COLUMNS; percent; sparsity = 1 - density), or one of them."""
    path = REFERENCE_DIR / "paper_tables.csv"
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read the paper's tables ({exc})") from None
    missing = [c for c in PAPER_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(PAPER_COLUMNS)}")
    df["sparsity"] = df["sparsity"].astype(float).round(4)
    # The transcription writes "erk"; runs say "ERK" (Config normalizes it the same way).
    df["sparse_init"] = df["sparse_init"].replace({"erk": "ERK"})
    if table is not None:
        if table not in TABLES:
            raise ConfigError(f"table {table!r} is not one of: {', '.join(TABLES)}")
        df = df[df["table"] == table]
    return df.reset_index(drop=True)


def expected_points(experiment: str, profile: str) -> pd.DataFrame:
    """The grid points (varied fields, no seed) an experiment runs under a profile."""
    exp, prof = get_experiment(experiment), get_profile(profile)
    points = pd.DataFrame(list(itertools.product(*exp.grid.values())), columns=list(exp.grid))
    if "update_frequency" in points:  # the profile scales it exactly as experiments.configs does
        points["update_frequency"] = points["update_frequency"].map(prof.update_frequency)
    return points


def coverage_note(runs: pd.DataFrame, artifact: Artifact, profile: str, where: str = "") -> str | None:
    """None when every grid point of the artifact has runs; else one line saying what is missing."""
    sel = select_runs(runs, artifact.experiment, profile)
    if sel.empty:
        return f"{artifact.name}: no runs of experiment {artifact.experiment} (profile {profile}){where}"
    points = expected_points(artifact.experiment, profile)
    fields = list(points.columns)
    present = set(sel[fields].itertuples(index=False, name=None))
    absent = [p for p in points.itertuples(index=False, name=None) if p not in present]
    if not absent:
        return None
    shown = ", ".join("/".join(str(v) for v in p) for p in absent[:6]) + (" ..." if len(absent) > 6 else "")
    return (f"{artifact.name}: partial, {len(points) - len(absent)} of {len(points)} grid points of "
            f"{artifact.experiment} have runs; missing ({'/'.join(fields)}): {shown}")


def notes_markdown(notes: list[str]) -> str:
    """The missing/partial lines as a markdown list (empty string when there are none)."""
    return "" if not notes else "\n\n**Not built, or built in part:**\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
