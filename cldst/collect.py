"""Run records -> tidy tables.

`collect(root)` reads every complete record under `root` (recursively) into two DataFrames; each record
it leaves out it names in one warning: partial (no metrics.json: failed, killed or still running) or
unreadable (records.record_status says corrupt: damaged metrics.json or config.json, other run's
metrics). A record whose masks.pt is lost still has all its metrics and is collected.
  runs    one row per run: every Config field, run_id, and the scalar metrics
          (acc, bwt, fwt_authors, fwt_standard, train_seconds, ...)
  curves  one row per run and task: run_id, the identifying fields, task (1-based),
          incremental_acc (mean accuracy over tasks seen so far), used_fraction (backbone usage),
          trainable_share_start / _end (share of the task's mask that it trains, at its draw and after
          its last topology update)
`summarize(runs)` averages over seeds: <metric>_mean, <metric>_std (sample std, ddof=1), n.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cldst.config import ADDED_FIELDS, ID_FIELDS, Config
from cldst.experiments import EXPERIMENTS
from cldst.paths import runs_dir
from cldst.records import COMPLETE, METRICS, PARTIAL, record_status

log = logging.getLogger(__name__)

SCALARS = ("acc", "bwt", "fwt_authors", "fwt_standard", "train_seconds", "eval_seconds", "topology_updates")
METRIC_NAMES = ("acc", "bwt", "fwt_authors", "fwt_standard")
CURVE_VALUES = ("used_fraction", "trainable_share_start", "trainable_share_end")  # per-task lists in metrics.json
# Config fields that name a point of a grid; seed is what summaries average over.
GROUP_FIELDS = [f for f in (*ID_FIELDS, *ADDED_FIELDS) if f != "seed"]
# Curves carry what a figure may separate them by: every field some experiment varies, and more.
CURVE_FIELDS = list(dict.fromkeys(
    ["experiment", "dataset", "num_tasks", "arch", "sparse_init", "growth", "density", "update_frequency",
     *(name for e in EXPERIMENTS.values() for name in e.grid), "seed"]
))


@dataclass
class Found:
    """The records under a root, by status."""

    complete: list[Path] = field(default_factory=list)
    unreadable: dict[Path, str] = field(default_factory=dict)  # record -> why (record_status's reason)
    partial: list[Path] = field(default_factory=list)

    def counts(self) -> str:
        return f"{len(self.complete)} collected, {len(self.unreadable)} unreadable, {len(self.partial)} partial"


def find_records(root: str | Path | None = None) -> Found:
    """Every run directory under `root` (one holding config.json or metrics.json), with its status."""
    root = Path(root or runs_dir())
    found = Found()
    dirs = {p.parent for name in ("config.json", METRICS) for p in root.rglob(name)}
    for run in sorted(dirs):
        status = record_status(run)
        if status == COMPLETE:
            found.complete.append(run)
        elif status == PARTIAL:
            found.partial.append(run)
        else:
            found.unreadable[run] = status
    return found


def collect(root: str | Path | None = None, found: Found | None = None,
            warn: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and curves tables of the complete records under `root` (or of `found`, already scanned);
    `warn`: name each record left out (off where the caller has named them already)."""
    found = found or find_records(root)
    for run, why in found.unreadable.items() if warn else ():
        log.warning("unreadable record %s: %s", run, why.partition(": ")[2])
    for run in found.partial if warn else ():
        log.warning("partial record %s: no metrics.json (failed, killed or still running)", run)
    rows, curves = [], []
    for run in found.complete:
        try:
            config = json.loads((run / "config.json").read_text())
            m = json.loads((run / METRICS).read_text())
        except (OSError, ValueError) as exc:  # changed since it was checked: name it, go on
            log.warning("unreadable record %s: %s", run, exc)
            continue
        cell = Config.from_record(config).cell_id()  # its grid point: what selects it for an experiment
        row = {**config, "run_id": m["run_id"], "cell": cell, "path": str(run)}
        row.update({k: m.get(k) for k in SCALARS})
        rows.append(row)
        per_task = {key: m.get(key) or [] for key in CURVE_VALUES}
        for t, value in enumerate(m["incremental_acc"]):
            curves.append({
                "run_id": row["run_id"], "cell": cell, **{k: config.get(k) for k in CURVE_FIELDS}, "task": t + 1,
                "incremental_acc": value,
                **{key: values[t] if t < len(values) else None for key, values in per_task.items()},
            })
    runs = pd.DataFrame(rows)
    curves_df = pd.DataFrame(curves)
    return runs, curves_df


def summarize(runs: pd.DataFrame, by: list[str] | None = None, metrics=METRIC_NAMES) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds for each group of `by` (default: all non-seed fields)."""
    if runs.empty:
        return pd.DataFrame()
    by = [c for c in (by or GROUP_FIELDS) if c in runs.columns]
    grouped = runs.groupby(by, dropna=False, sort=True)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["n"] = grouped.size()
    return out.reset_index()


def write_collected(root: str | Path | None = None, out_dir: str | Path | None = None,
                    found: Found | None = None) -> Path:
    """Collect `root` and write runs.{parquet,csv}, curves.csv and summary.csv into `out_dir`."""
    root = Path(root or runs_dir())
    out = Path(out_dir or root / "collected")
    out.mkdir(parents=True, exist_ok=True)
    runs, curves = collect(root, found)
    runs.to_csv(out / "runs.csv", index=False)
    if not runs.empty:
        runs.to_parquet(out / "runs.parquet", index=False)
    curves.to_csv(out / "curves.csv", index=False)
    summarize(runs).to_csv(out / "summary.csv", index=False)
    return out
