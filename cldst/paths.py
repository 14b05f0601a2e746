"""Every path the project reads or writes comes from here (never "../data" in a notebook).

Environment variables override the defaults, so a cluster can point runs and data elsewhere:
  CLDST_DATA   where datasets are looked for / downloaded   (default: <project>/data)
  CLDST_CACHE  decoded-array cache (miniImageNet .npz, ...)  (default: <data>/cache)
  CLDST_RUNS   run records                                   (default: <project>/papermill_runs)
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
FIGURES_DIR = PROJECT_ROOT / "figures"
TABLES_DIR = PROJECT_ROOT / "tables"
REFERENCE_DIR = PACKAGE_DIR / "reference"


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else default


def data_dir() -> Path:
    return _env_path("CLDST_DATA", PROJECT_ROOT / "data")


def cache_dir() -> Path:
    return _env_path("CLDST_CACHE", data_dir() / "cache")


def runs_dir() -> Path:
    return _env_path("CLDST_RUNS", PROJECT_ROOT / "papermill_runs")


def figures_dir() -> Path:
    return _env_path("CLDST_FIGURES", FIGURES_DIR)


def tables_dir() -> Path:
    return _env_path("CLDST_TABLES", TABLES_DIR)
