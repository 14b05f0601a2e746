"""Tables 1-4: ACC / BWT / FWT, mean ± std over seeds, per sparse init x growth x sparsity.

A table is first a tidy frame of *cells* (one row per init, growth, sparsity and metric: mean, sample
std over seeds, n, best), built on the full grid so a missing run shows as NaN / "–" rather than
vanishing. From the cells come the paper-style layout (rows: init, growth; columns: sparsity x
metric; best per column in bold), the csv/md/tex files, and the side-by-side with the paper.
FWT is the authors' definition (what the paper's tables report); the standard FWT is in the csv.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cldst.analysis.paper import (
    TABLES,
    Artifact,
    comparable,
    coverage_note,
    output_stem,
    paper_numbers,
    profile_note,
    select_runs,
    sparsity_of,
)
from cldst.experiments import GROWTHS, INITS, MAIN_DENSITIES
from cldst.paths import tables_dir

log = logging.getLogger(__name__)

# Table metric name -> run-record field. Higher is better for all of them.
METRICS = {"ACC": "acc", "BWT": "bwt", "FWT": "fwt_authors", "FWT_standard": "fwt_standard"}
SHOWN = ("ACC", "BWT", "FWT")  # the paper's columns
MISSING = "–"
CELL_COLUMNS = ["sparse_init", "growth", "sparsity", "metric", "mean", "std", "n", "best"]
COMPARISON_COLUMNS = ["init", "growth", "sparsity", "metric", "ours_mean", "ours_std", "paper_mean", "paper_std", "diff"]


@dataclass
class TableResult:
    artifact: Artifact
    cells: pd.DataFrame  # CELL_COLUMNS, the full grid
    comparison: pd.DataFrame  # COMPARISON_COLUMNS, one row per cell of the paper's table
    caption: str
    paths: list[Path] = field(default_factory=list)


def _ordered(preferred: list, present) -> list:
    """The registry's order, then anything else the runs hold (sorted), so nothing is silently dropped."""
    extra = sorted(set(present) - set(preferred), key=str)
    return list(preferred) + extra


def table_cells(runs: pd.DataFrame, sparsities: list[float] | None = None) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and n over seeds of every metric, on the full init x growth x sparsity grid."""
    keys = ["sparse_init", "growth", "sparsity"]
    runs = runs.assign(sparsity=sparsity_of(runs["density"].astype(float)))
    parts = []
    for name, col in METRICS.items():
        values = pd.to_numeric(runs[col], errors="coerce")  # JSON nulls arrive as None: NaN, not counted
        stats = values.groupby([runs[k] for k in keys]).agg(["mean", "std", "count"])
        parts.append(stats.rename(columns={"count": "n"}).assign(metric=name).reset_index())
    long = pd.concat(parts, ignore_index=True)
    grid = pd.MultiIndex.from_product(
        [
            _ordered(INITS, runs["sparse_init"]),
            _ordered(GROWTHS, runs["growth"]),
            sorted(set(sparsities or [sparsity_of(d) for d in MAIN_DENSITIES]) | set(runs["sparsity"])),
            list(METRICS),
        ],
        names=[*keys, "metric"],
    )
    cells = long.set_index(grid.names).reindex(grid).reset_index()
    cells["n"] = cells["n"].fillna(0).astype(int)
    col_max = cells.groupby(["sparsity", "metric"])["mean"].transform("max")
    cells["best"] = cells["mean"].notna() & (cells["mean"] == col_max)
    return cells[CELL_COLUMNS]


def format_cell(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return MISSING
    if n <= 1 or pd.isna(std):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def sparsity_label(s: float) -> str:
    return f"{s * 100:g}%"


def table_layout(cells: pd.DataFrame, metrics=SHOWN, bold: tuple[str, str] = ("", "")) -> pd.DataFrame:
    """The paper's layout as strings: index (init, growth), columns (sparsity, metric); best wrapped in `bold`."""
    shown = cells[cells["metric"].isin(metrics)].copy()
    shown["text"] = [
        (bold[0] + format_cell(m, s, n) + bold[1]) if best else format_cell(m, s, n)
        for m, s, n, best in zip(shown["mean"], shown["std"], shown["n"], shown["best"])
    ]
    shown["sparsity"] = shown["sparsity"].map(sparsity_label)
    wide = shown.pivot(index=["sparse_init", "growth"], columns=["sparsity", "metric"], values="text")
    rows = list(dict.fromkeys(zip(cells["sparse_init"], cells["growth"])))
    cols = [(sparsity_label(s), m) for s in dict.fromkeys(cells["sparsity"]) for m in metrics]
    return wide.reindex(index=pd.MultiIndex.from_tuples(rows, names=["init", "growth"]), columns=pd.MultiIndex.from_tuples(cols))


def _md_table(header: list[str], rows: list[list[str]], align: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(cells: pd.DataFrame, caption: str) -> str:
    layout = table_layout(cells, bold=("**", "**"))
    header = ["init", "growth"] + [f"{s} {m}" for s, m in layout.columns]
    rows = [[init, growth, *layout.loc[(init, growth)].tolist()] for init, growth in layout.index]
    return f"{caption}\n\n" + _md_table(header, rows, [":--", ":--"] + ["--:"] * len(layout.columns)) + "\n"


def _tex_escape(text: str) -> str:
    for a, b in [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")]:
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("–", "--")


def to_latex(cells: pd.DataFrame, caption: str, label: str) -> str:
    layout = table_layout(cells, bold=("\\textbf{", "}"))
    sparsities = list(dict.fromkeys(s for s, _ in layout.columns))
    k = len(SHOWN)
    head = " & ".join(["", ""] + [rf"\multicolumn{{{k}}}{{c}}{{{_tex_escape(s)} sparsity}}" for s in sparsities])
    rules = " ".join(rf"\cmidrule(lr){{{3 + i * k}-{2 + (i + 1) * k}}}" for i in range(len(sparsities)))
    sub = " & ".join(["init", "growth"] + [m for _, m in layout.columns])
    body = []
    for init, growth in layout.index:
        texts = [t.replace("±", r"$\pm$").replace("–", "--") for t in layout.loc[(init, growth)]]
        body.append(" & ".join([_tex_escape(init), _tex_escape(growth), *texts]) + r" \\")
    return "\n".join([
        r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex_escape(caption)}}}", rf"\label{{tab:{label}}}",
        r"\resizebox{\linewidth}{!}{%", r"\begin{tabular}{ll" + "r" * len(layout.columns) + "}", r"\toprule",
        head + r" \\", rules, sub + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}}", r"\end{table}", "",
    ])


def caption_of(artifact: Artifact, cells: pd.DataFrame, profile: str) -> str:
    ns = sorted(set(cells.loc[cells["n"] > 0, "n"]))
    seeds = "no runs" if not ns else f"{ns[0]} seed(s)" if len(ns) == 1 else f"{ns[0]}-{ns[-1]} seeds"
    number = artifact.name.replace("table", "Table ")
    return (f"{number}: {artifact.title}. Top-1 ACC (%), BWT (%), FWT (%, the authors' definition), "
            f"mean ± std over seeds ({seeds} per cell; '{MISSING}' = no runs); best per column in bold. "
            f"{profile_note(profile)}.")


def compare_with_paper(cells: pd.DataFrame, table: str) -> pd.DataFrame:
    """Every cell of the paper's `table` beside ours: diff = ours_mean - paper_mean (NaN where we have no runs)."""
    paper = paper_numbers(table).rename(columns={"sparse_init": "init", "mean": "paper_mean", "std": "paper_std"})
    ours = cells.rename(columns={"sparse_init": "init", "mean": "ours_mean", "std": "ours_std"})
    keys = ["init", "growth", "sparsity", "metric"]
    out = paper[keys + ["paper_mean", "paper_std"]].merge(ours[keys + ["ours_mean", "ours_std"]], on=keys, how="left")
    out["diff"] = out["ours_mean"] - out["paper_mean"]
    return out[COMPARISON_COLUMNS]


def comparison_markdown(comparison: pd.DataFrame, caption: str) -> str:
    def num(v: float) -> str:
        return MISSING if pd.isna(v) else f"{v:.2f}"

    rows = [[r.init, r.growth, sparsity_label(r.sparsity), r.metric, num(r.ours_mean), num(r.ours_std),
             num(r.paper_mean), num(r.paper_std), (MISSING if pd.isna(r.diff) else f"{r.diff:+.2f}")]
            for r in comparison.itertuples(index=False)]
    return f"{caption}\n\n" + _md_table(COMPARISON_COLUMNS, rows, [":--"] * 4 + ["--:"] * 5) + "\n"


def comparison_caption(artifact: Artifact, profile: str) -> str:
    head = f"{artifact.name.replace('table', 'Table ')} ({artifact.title}): ours beside the paper; diff = ours - paper."
    if comparable(profile):
        return head
    return f"NOT COMPARABLE, structure check only. {head} {profile_note(profile)}."


def build_table(runs: pd.DataFrame, artifact: Artifact, profile: str, out_dir: str | Path | None = None) -> TableResult:
    """Write <stem>.{csv,md,tex} and <stem>_vs_paper.{csv,md} for the runs of one scenario."""
    out = Path(out_dir) if out_dir is not None else tables_dir()
    out.mkdir(parents=True, exist_ok=True)
    stem = output_stem(artifact.stem, profile)
    cells = table_cells(runs)
    caption = caption_of(artifact, cells, profile)
    result = TableResult(artifact, cells, compare_with_paper(cells, artifact.name), caption)
    csv = cells.assign(table=artifact.name, profile=profile)[["table", "profile", *CELL_COLUMNS]]
    writes = {
        f"{stem}.csv": csv.to_csv(index=False),
        f"{stem}.md": to_markdown(cells, f"**{caption}**"),
        f"{stem}.tex": to_latex(cells, caption, stem),
        f"{stem}_vs_paper.csv": result.comparison.to_csv(index=False),
        f"{stem}_vs_paper.md": comparison_markdown(result.comparison, f"**{comparison_caption(artifact, profile)}**"),
    }
    for name, text in writes.items():
        (out / name).write_text(text)
        result.paths.append(out / name)
    log.info("wrote %s.{csv,md,tex} and its comparison with the paper into %s", stem, out)
    return result


def build_tables(runs: pd.DataFrame, profile: str = "paper",
                 out_dir: str | Path | None = None) -> tuple[dict[str, TableResult], list[str]]:
    """Tables 1-4 from whatever runs exist; returns the built tables and one line per missing/partial table."""
    built, notes = {}, []
    for name, artifact in TABLES.items():
        note = coverage_note(runs, artifact, profile)
        if note:
            notes.append(note)
        sel = select_runs(runs, artifact.experiment, profile)
        if not sel.empty:
            built[name] = build_table(sel, artifact, profile, out_dir)
    return built, notes


def tables_markdown(tables: dict[str, TableResult]) -> str:
    """Every built table in one markdown string (for display in a notebook)."""
    if not tables:
        return "_No table could be built: no runs of the main experiments._"
    return "\n\n".join(to_markdown(t.cells, f"**{t.caption}**") for t in tables.values())


def all_cells(tables: dict[str, TableResult]) -> pd.DataFrame:
    """The cells of every built table in one frame with a `table` column (the format of paper_numbers())."""
    if not tables:
        return pd.DataFrame(columns=["table", *CELL_COLUMNS])
    return pd.concat([t.cells.assign(table=name) for name, t in tables.items()], ignore_index=True)



def comparisons_markdown(tables: dict[str, TableResult], profile: str) -> str:
    """Every table's comparison with the paper in one markdown string."""
    if not tables:
        return "_No comparison: no table could be built._"
    return "\n\n".join(comparison_markdown(t.comparison, f"**{comparison_caption(t.artifact, profile)}**")
                       for t in tables.values())
