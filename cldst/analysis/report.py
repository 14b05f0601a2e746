"""One page to look at: every figure, every table and the findings, in `figures/index.html`.

For each artifact of the registry (`cldst.experiments.ARTIFACTS`) the page shows the version of the
most informative profile that built it (paper, then the other profiles in the registry's order, e.g.
cpu before smoke), says which profile and how many runs made it, and links the other profiles'
versions. The findings (with their intervals and verdicts) come first. The page is static HTML next to
the figures (images by relative path, tables inlined), so it opens from the file system or any server.
"""

from __future__ import annotations

import datetime
import html
import re
from pathlib import Path

import pandas as pd

from cldst.analysis.paper import output_stem, profile_note, select_runs
from cldst.experiments import ARTIFACTS, PROFILES, Artifact
from cldst.paths import figures_dir, runs_dir, tables_dir

REPORT = "index.html"


def markdown_html(text: str) -> str:
    """The markdown the analysis writes (paragraphs, pipe tables, **bold**, *em*, `code`) as HTML."""
    def inline(s: str) -> str:
        s = html.escape(s.strip(), quote=False)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    out, rows = [], []

    def flush_table() -> None:
        if rows:
            head, body = rows[0], rows[2:]
            out.append("<table><thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            rows.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            rows.append(line.strip().strip("|").split("|"))
            continue
        flush_table()
        if line.strip().startswith("- "):
            out.append(f"<ul><li>{inline(line.strip()[2:])}</li></ul>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush_table()
    return "\n".join(out).replace("</ul>\n<ul>", "\n")


def profiles_in_order() -> list[str]:
    """paper first (the paper's setup), then the registry's other profiles in their order."""
    return ["paper", *[p for p in PROFILES if p != "paper"]]


def artifact_files(artifact: Artifact, profile: str, figures: Path, tables: Path) -> dict[str, list[Path]]:
    """The files an artifact has under a profile: {"figures": [...png], "tables": [...md]}."""
    stem = output_stem(artifact.stem, profile)
    pngs = sorted(figures.glob(f"{stem}_*.png")) if artifact.name == "capacity" else \
        [p for p in [figures / f"{stem}.png"] if p.is_file()]
    mds = [p for p in (tables / f"{stem}.md", tables / f"{stem}_vs_paper.md") if p.is_file()]
    return {"figures": pngs, "tables": mds}


def run_counts(profiles: list[str], runs_root: Path) -> dict[str, pd.DataFrame]:
    """The collected runs of each profile that has any (papermill_runs/<profile>/); quiet about records left
    out (`cldst figures` has named them)."""
    from cldst.collect import collect

    out = {}
    for profile in profiles:
        if (runs_root / profile).is_dir():
            runs, _ = collect(runs_root / profile, warn=False)
            if not runs.empty:
                out[profile] = runs
    return out


def build_report(*, figures: str | Path | None = None, tables: str | Path | None = None,
                 runs_root: str | Path | None = None, out: str | Path | None = None) -> Path:
    """Write the page (default figures/index.html) from what is in figures/ and tables/; return its path."""
    figures = Path(figures) if figures else figures_dir()
    tables = Path(tables) if tables else tables_dir()
    runs_root = Path(runs_root) if runs_root else runs_dir()
    out = Path(out) if out else figures / REPORT
    order = profiles_in_order()
    runs = run_counts(order, runs_root)
    sections, index = [], []
    for artifact in ARTIFACTS.values():
        versions = {p: files for p in order if any((files := artifact_files(artifact, p, figures, tables)).values())}
        anchor = f"a-{artifact.name}"
        if not versions:
            index.append(f'<li><a href="#{anchor}">{artifact.name}</a> <span class="missing">not built</span></li>')
            sections.append(f'<section id="{anchor}"><h2>{artifact.name}: {html.escape(artifact.title)}</h2>'
                            f'<p class="missing">Not built: no profile has runs of experiment '
                            f'<code>{artifact.experiment}</code> (cldst sweep {artifact.experiment} --profile ...; '
                            f'then cldst figures --profile ...).</p></section>')
            continue
        profile = next(iter(versions))
        used = {e: select_runs(runs[profile], e, profile) if profile in runs else pd.DataFrame()
                for e in artifact.experiments}
        used = {e: sel for e, sel in used.items() if len(sel)} or {artifact.experiment: pd.DataFrame()}
        n = sum(len(sel) for sel in used.values())
        seeds = {s for sel in used.values() if len(sel) for s in sel["seed"].unique()}
        seed_note = f" ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})" if n else ""
        names = ", ".join(f"<code>{e}</code>" for e in used)
        made = (f"made by the <b>{profile}</b> profile from <b>{n}</b> runs of experiment{'s' if len(used) > 1 else ''} "
                f"{names}{seed_note}; {html.escape(profile_note(profile))}")
        others = [p for p in versions if p != profile]
        if others:
            made += "; also built by: " + ", ".join(
                f'<a href="{html.escape(versions[p]["figures"][0].name) if versions[p]["figures"] else ""}">{p}</a>'
                for p in others)
        body = [f'<img src="{html.escape(p.name)}" alt="{artifact.name} ({profile})">'
                for p in versions[profile]["figures"]]
        body += [f'<div class="table">{markdown_html(p.read_text())}</div>' for p in versions[profile]["tables"]]
        index.append(f'<li><a href="#{anchor}">{artifact.name}</a> <span class="profile">{profile}</span></li>')
        section = (f'<section id="{anchor}" data-artifact="{artifact.name}" data-profile="{profile}">'
                   f'<h2>{artifact.name}: {html.escape(artifact.title)}</h2><p class="made">{made}</p>'
                   + "\n".join(body) + "</section>")
        # the findings lead the page
        (sections.insert(0, section) if artifact.name == "findings" else sections.append(section))
    totals = ", ".join(f"{p}: {len(r)} runs" for p, r in runs.items()) or "no runs collected"
    page = PAGE.format(
        when=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), totals=html.escape(totals),
        index="\n".join(index), sections="\n".join(sections),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>cldst: figures, tables and findings</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }}
img {{ max-width: 100%; display: block; margin: 0.8em 0; border: 1px solid #eee; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }} .table {{ overflow-x: auto; }}
.made {{ color: #555; }} .missing {{ color: #a33; }} .profile {{ color: #555; font-size: 0.9em; }}
ul.index {{ columns: 3; }}
</style></head>
<body>
<h1>cldst: every figure, table and finding</h1>
<p>Built {when} from {totals}. Each artifact shows the most informative profile that built it (paper,
then cpu, then smoke) and says which; smoke results check the pipeline and are not findings.
Verdicts: <b>holds</b> when the effect's 95% interval over seeds lies above 0, <b>reversed</b> below 0,
<b>inconclusive</b> when it contains 0.</p>
<ul class="index">
{index}
</ul>
{sections}
</body></html>
"""
