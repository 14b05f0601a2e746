"""Run records: one directory per run, complete exactly when `record_status` says "complete".

    papermill_runs/<experiment>/<run id>/
        config.json        the full Config (written first)
        environment.json   python / torch / cldst versions, git commit, device, threads, CPU ISA and model
        capacity.csv       backbone usage per layer after each task
        updates.csv        topology-update statistics (one row per update; only the header if none)
        masks.pt           every task's mask, bit-packed (cldst.masks_file: its format, save_masks, load_masks)
        run.ipynb          the executed training notebook (when run through papermill)
        progress.log       what the run said as it went: what it is about to train, each task as it ends
        metrics.json       accuracy matrix and metrics: written LAST
        error.txt          only in a failed attempt: the traceback
    papermill_runs/<experiment>/.locks/<run id>.lock
        held (flock) by the one process executing the run; beside the record so that redoing the record
        (which removes the run directory) cannot remove the lock

Every file is written atomically (temporary file + rename): a reader never sees half a file, and a full
disk leaves no empty or truncated file, only an error naming the file.

A sweep passes the notebook `defer=True`: it then leaves `metrics.pending.json` and the executor renames
it to metrics.json only after papermill has saved run.ipynb, so a record is never complete without its
notebook.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import cldst
from cldst.config import Config
from cldst.errors import CldstError
from cldst.paths import PROJECT_ROOT, runs_dir

log = logging.getLogger(__name__)

METRICS = "metrics.json"
PENDING = "metrics.pending.json"
PROGRESS = "progress.log"
ERROR = "error.txt"
LOCKS = ".locks"
COMPLETE, PARTIAL, CORRUPT = "complete", "partial", "corrupt"
# What every reader of metrics.json relies on (collect, the tables, `cldst run`'s summary line).
REQUIRED_METRICS = ("run_id", "acc", "bwt", "fwt_authors", "fwt_standard", "acc_matrix", "incremental_acc")
# A write that fails for lack of space (ENOSPC) or of quota (EDQUOT, common on clusters).
DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
FULL_MARGIN = 1 << 20  # bytes: less than this free after a failed write means the disk is full


def run_dir(cfg: Config, root: str | Path | None = None) -> Path:
    return Path(root or runs_dir()) / cfg.experiment / cfg.run_id()


def lock_path(path: str | Path) -> Path:
    path = Path(path)
    return path.parent / LOCKS / f"{path.name}.lock"


def record_status(path: str | Path) -> str:
    """"complete", "partial" (no metrics.json: never finished, or still running) or "corrupt: <reason>".

    Complete means: metrics.json parses into an object with every REQUIRED_METRICS key, its run_id is the
    run id of the directory's config.json, and (when the config saved masks) masks.pt opens as a masks
    file. Nothing is cached: each call reads the files again. The one definition of a complete record:
    sweep, run, status, collect, figures and the report all decide with it, so a record a sweep would
    redo is never collected."""
    path = Path(path)
    if not (path / METRICS).is_file():
        return PARTIAL
    try:
        metrics = json.loads((path / METRICS).read_text())
    except OSError as exc:
        return f"{CORRUPT}: {METRICS} cannot be read ({exc.strerror or exc})"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError: truncated or overwritten
        return f"{CORRUPT}: {METRICS} is not valid JSON ({_first_line(exc)})"
    if not isinstance(metrics, dict):
        return f"{CORRUPT}: {METRICS} holds {type(metrics).__name__}, not an object"
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        return f"{CORRUPT}: {METRICS} lacks {', '.join(missing)}"
    if isinstance(metrics["acc"], bool) or not isinstance(metrics["acc"], (int, float)):
        return f"{CORRUPT}: {METRICS} acc is {metrics['acc']!r}, not a number"
    for key in ("acc_matrix", "incremental_acc"):
        if not isinstance(metrics[key], list):
            return f"{CORRUPT}: {METRICS} {key} is {type(metrics[key]).__name__}, not a list"
    try:
        cfg = load_config(path)
    except OSError as exc:
        return f"{CORRUPT}: config.json cannot be read ({exc.strerror or exc})"
    except (ValueError, CldstError) as exc:  # not JSON, unknown fields, a value Config refuses
        return f"{CORRUPT}: config.json: {_first_line(exc)}"
    if metrics["run_id"] != cfg.run_id():
        return f"{CORRUPT}: {METRICS} is of run {metrics['run_id']!r} but config.json of run {cfg.run_id()!r}"
    if cfg.save_masks:
        problem = _masks_problem(path / "masks.pt")
        if problem:
            return f"{CORRUPT}: masks.pt {problem}"
    return COMPLETE


def adopt_legacy(path: str | Path) -> str:
    """Before one pool per profile, a run lived at <pool>/<experiment>/<run id>; a complete record there
    is moved (one rename) to `path` = <pool>/<run id>. Returns the status of `path` afterwards ("partial"
    when there was nothing to adopt). Incomplete old records are left where they are."""
    path = Path(path)
    for old in sorted(path.parent.glob(f"*/{path.name}")):
        if old.is_dir() and record_status(old) == COMPLETE:
            try:
                os.rename(old, path)
            except OSError as exc:  # another sweep adopted it first (path exists now), or another filesystem
                log.info("%s not moved to %s: %s", old, path, exc)
            else:
                log.info("moved %s into the pool: %s", old, path)
            break
    return record_status(path)


def is_complete(path: str | Path) -> bool:
    return record_status(path) == COMPLETE


def _masks_problem(path: Path) -> str | None:
    """Why masks.pt is not a masks file, or None. Opens the archive (memory-mapped) without unpacking
    the masks: a truncated or overwritten file fails here, and it costs milliseconds per record where
    cldst.sparse.load_masks would unpack every task's bits."""
    from cldst.masks_file import MASKS_FORMAT

    if not path.is_file():
        return "is missing (the config has save_masks=true)"
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch reports a damaged archive as RuntimeError, an empty file as others
        return f"cannot be read ({type(exc).__name__}: {_first_line(exc)})"
    if not isinstance(stored, dict) or stored.get("format") != MASKS_FORMAT or "tasks" not in stored:
        return f"is not a cldst masks file (expected format {MASKS_FORMAT!r})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes its file owner-only (0600); a record is as readable as any file this user writes.
FILE_MODE = 0o666 & ~_umask()
UPDATE_COLUMNS = ["task", "step", "drop_fraction", "dropped", "grown", "regrown", "grown_frozen", "trainable_share"]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` fills a temporary file beside `path`, which is then fsynced and renamed onto `path`.

    Readers never see half a file. On failure nothing is left (no temporary, no empty `path`) and the
    error names `path`: os.write's OSError names no file, and torch.save reports a full disk as an
    opaque RuntimeError, which becomes OSError(ENOSPC) here when the disk has (almost) no space left."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(Path(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except Exception as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        if _disk_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < FULL_MARGIN
    except OSError:
        return False


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            f.write(text)

    atomic_write(path, write)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n")


def try_lock(path: str | Path):
    """The run's lock (a filelock.FileLock, held) if no other process holds it, else None; never waits.

    The lock file lives in <experiment>/.locks/ so that prepare(), which removes the run directory, cannot
    remove it; it is left in place after release (removing a lock file races with a process opening it).
    A filesystem without working locks raises OSError (filelock does not fall back to a lock file that a
    killed process would leave behind)."""
    from filelock import FileLock, Timeout

    lock_file = lock_path(path)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file, blocking=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        return None
    return lock


def prepare(path: Path, cfg: Config) -> None:
    """Start a run directory from scratch: remove what a failed or killed attempt left, write config.json."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    write_json(path / "config.json", cfg.to_dict())


def write_error(path: Path, text: str) -> bool:
    """Keep a failed attempt's traceback in error.txt, atomically; False when it cannot be written (a full
    disk: the failure itself is reported by the caller, and an empty error.txt would say nothing)."""
    try:
        atomic_write_text(path / ERROR, text)
    except OSError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The project's commit, "-dirty" when tracked files differ from it; None outside git. Once per
    process. The nbstripout filter is bypassed for the check: `git status` would run it (a Python
    process per notebook) on every file of a fresh clone, whose index git cannot yet trust by date,
    and that took a minute."""
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        commit = out.stdout.strip() if out.returncode == 0 else None
        if commit:
            dirty = subprocess.run(
                ["git", "-C", str(PROJECT_ROOT), "-c", "filter.nbstripout.clean=cat", "status", "--porcelain",
                 "--untracked-files=no"], capture_output=True, text=True, timeout=10,
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
        # The instruction set torch's CPU kernels use (AVX2, AVX512, ...) changes float rounding, and so a
        # CPU run's numbers: same config, threads and ISA give the same record on any host; another ISA
        # gives other numbers, as another seed would (README, "Reproducing a record").
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
        **{name: os.environ[name] for name in ISA_CAPS if name in os.environ},
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")  # environment variables that cap torch's CPU ISA


def cpu_model() -> str | None:
    """The CPU's model name as Linux reports it (None elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return None


@contextlib.contextmanager
def progress_log(record_dir: str | Path | None):
    """Within the block, cldst's INFO lines (what the run is about to train, each task as it ends) also go
    to <record_dir>/progress.log, which `cldst run` prints as they come. No record dir: nothing."""
    if not record_dir:
        yield
        return
    Path(record_dir).mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(Path(record_dir) / PROGRESS, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("cldst")
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def save_result(result, path: str | Path | None = None, *, defer: bool = False) -> Path:
    """Write a RunResult's record into `path` (default: run_dir of its config); metrics.json last.

    defer=True (what a sweep passes the notebook) writes metrics.pending.json instead, for `finalize`."""
    cfg: Config = result.config
    path = Path(path) if path is not None else run_dir(cfg)
    path.mkdir(parents=True, exist_ok=True)
    (path / METRICS).unlink(missing_ok=True)  # a record being rewritten is not complete
    write_json(path / "config.json", cfg.to_dict())
    write_json(path / "environment.json", environment_info(result.device))
    atomic_write_text(path / "capacity.csv", result.capacity.to_csv(index=False))
    atomic_write_text(path / "updates.csv", pd.DataFrame(result.updates, columns=UPDATE_COLUMNS).to_csv(index=False))
    if cfg.save_masks:
        atomic_write(path / "masks.pt", result.sparsity.save_masks)
    body = {"run_id": cfg.run_id(), "experiment": cfg.experiment, **result.metrics()}
    write_json(path / (PENDING if defer else METRICS), body)
    return path


def finalize(path: str | Path) -> None:
    """Promote metrics.pending.json to metrics.json (atomic rename): the record is now complete.

    An error.txt cannot be there (prepare() starts from an empty directory), but a complete record must
    never carry one, whatever wrote it."""
    path = Path(path)
    (path / ERROR).unlink(missing_ok=True)
    os.replace(path / PENDING, path / METRICS)


def load_metrics(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / METRICS).read_text())


def load_config(path: str | Path) -> Config:
    return Config.from_record(json.loads((Path(path) / "config.json").read_text()), source=str(path))
