"""Run records: one directory per run, complete exactly when metrics.json exists.

    papermill_runs/<experiment>/<run id>/
        config.json        the full Config (written first)
        environment.json   python / torch / cldst versions, git commit, device
        capacity.csv       backbone usage per layer after each task
        updates.csv        topology-update statistics (one row per update; only the header if none)
        masks.pt           every task's mask, bit-packed (cldst.sparse.load_masks reads it)
        run.ipynb          the executed training notebook (when run through papermill)
        metrics.json       accuracy matrix and metrics: written LAST, atomically (tmp file + rename)

When a sweep executes the notebook it sets CLDST_DEFER_METRICS=1: the notebook then leaves
`metrics.pending.json` and the executor renames it to metrics.json only after papermill has saved
run.ipynb, so a record is never complete without its notebook.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import cldst
from cldst.config import Config
from cldst.paths import PROJECT_ROOT, runs_dir

METRICS = "metrics.json"
PENDING = "metrics.pending.json"
DEFER_ENV = "CLDST_DEFER_METRICS"


def run_dir(cfg: Config, root: str | Path | None = None) -> Path:
    return Path(root or runs_dir()) / cfg.experiment / cfg.run_id()


def is_complete(path: str | Path) -> bool:
    return (Path(path) / METRICS).is_file()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes its file owner-only (0600); a record is as readable as any file this user writes.
FILE_MODE = 0o666 & ~_umask()
UPDATE_COLUMNS = ["task", "step", "drop_fraction", "dropped", "grown", "regrown", "grown_frozen", "trainable_share"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n")


def prepare(path: Path, cfg: Config) -> None:
    """Start a run directory from scratch: remove what a killed attempt left, write config.json."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    write_json(path / "config.json", cfg.to_dict())


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        commit = out.stdout.strip() if out.returncode == 0 else None
        if commit:
            dirty = subprocess.run(
                ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=10,
            ).stdout.strip()
            return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def environment_info(device: str = "cpu") -> dict[str, Any]:
    info = {
        "cldst": cldst.__version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def save_result(result, path: str | Path | None = None) -> Path:
    """Write a RunResult's record; metrics.json last (or metrics.pending.json under a sweep)."""
    cfg: Config = result.config
    path = Path(path) if path is not None else run_dir(cfg)
    path.mkdir(parents=True, exist_ok=True)
    (path / METRICS).unlink(missing_ok=True)  # a record being rewritten is not complete
    write_json(path / "config.json", cfg.to_dict())
    write_json(path / "environment.json", environment_info(result.device))
    result.capacity.to_csv(path / "capacity.csv", index=False)
    pd.DataFrame(result.updates, columns=UPDATE_COLUMNS).to_csv(path / "updates.csv", index=False)
    if cfg.save_masks:
        result.sparsity.save_masks(path / "masks.pt")
    body = {"run_id": cfg.run_id(), "experiment": cfg.experiment, **result.metrics()}
    write_json(path / (PENDING if os.environ.get(DEFER_ENV) == "1" else METRICS), body)
    return path


def finalize(path: str | Path) -> None:
    """Promote metrics.pending.json to metrics.json (atomic rename): the record is now complete."""
    path = Path(path)
    os.replace(path / PENDING, path / METRICS)


def load_metrics(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / METRICS).read_text())


def load_config(path: str | Path) -> Config:
    return Config.from_dict(json.loads((Path(path) / "config.json").read_text()), source=str(path))
