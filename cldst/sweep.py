"""Execute many configurations through the training notebook, resumably, one process per run.

Each run is `notebooks/train.ipynb` executed by papermill's Python API with the run's Config as
parameters, into `<run dir>/run.ipynb` (records.run_dir). Local worker processes each execute one
notebook after another (papermill's CLI would spend ~3 s importing per run; its API in a
warm process ~1 s). A sweep:
  - skips complete runs (records.record_status) without touching a byte of them; redoes partial ones
    and corrupt ones (saying so) from scratch;
  - executes each run under its lock (records.try_lock): two sweeps of one runs directory (a double
    launch, two cluster jobs) never execute a run twice; a run another process holds is skipped and
    reported as held;
  - stops starting runs after a full disk (ENOSPC, EDQUOT) and names the file it could not write;
  - on SIGINT or SIGTERM stops its runs, starts nothing more and raises Interrupted ("interrupted: N done,
    K interrupted, M not started; re-run to resume"); on SIGHUP (a lost shell) a Slurm sweep leaves its
    jobs to Slurm, as --detach does (`cldst status` and the next sweep reattach).
How the runs are executed (worker processes here, submitit jobs, Slurm arrays) is an executor's business:
cldst.executors. A sweep reads: plan (what is not complete), hand to an executor (each run executed under
its lock by execute_run), settle (the report).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from cldst import checks, errors, executors, notebook, records
from cldst.config import Config
from cldst.errors import ConfigError, one_line
from cldst.executors.base import COMPLETE, DONE, HELD, Batch, DiskFull, RunFailed, SweepReport
from cldst.executors.slurm import Resources
from cldst.experiments import distinct
from cldst.paths import NOTEBOOKS_DIR

log = logging.getLogger(__name__)

TRAIN_NOTEBOOK = NOTEBOOKS_DIR / "train.ipynb"
EXECUTORS = executors.EXECUTORS
__all__ = ["COMPLETE", "DONE", "HELD", "DiskFull", "Interrupted", "RunFailed", "SweepReport", "execute_run",
           "ensure_datasets", "run_sweep"]


class Interrupted(errors.Interrupted):
    """SIGINT or SIGTERM stopped a sweep; its workers and kernels are gone. str() is the line to show."""

    def __init__(self, report: SweepReport, signum: int):
        self.report = report
        interrupted = f", {len(report.interrupted)} interrupted" if report.interrupted else ""
        super().__init__(f"interrupted: {len(report.done)} done{interrupted}, {len(report.not_started)} not started; "
                         "re-run to resume", signum)


def execute_run(cfg: Config | dict, root: str | None = None, force: bool = False) -> str:
    """Execute one configuration through the training notebook, under the run's lock.

    Returns "done" (executed now), "complete" (already complete: untouched) or "held" (another process
    holds the run: untouched). A partial or corrupt record is removed and redone; force=True redoes a
    complete one too. A failure raises RunFailed (DiskFull when the disk is full), one line."""
    cfg = Config.from_dict(cfg) if isinstance(cfg, dict) else cfg
    path = records.run_dir(cfg, root)
    try:
        lock = records.try_lock(path)
    except (OSError, NotImplementedError) as exc:  # no space for the lock file, or a filesystem without locks
        raise _failure(cfg, path, exc, f"cannot lock {records.lock_path(path)}") from None
    if lock is None:
        return HELD
    try:  # held from the completeness check until the record is final (or left partial)
        if not force and records.record_status(path) == records.COMPLETE:
            return COMPLETE
        try:
            records.prepare(path, cfg)
            # The record's place and the deferred metrics reach the notebook as papermill parameters
            # (not Config fields, not environment variables): this process's environment never changes.
            notebook.execute(TRAIN_NOTEBOOK, path / "run.ipynb", {**cfg.to_dict(), "progress": False},
                             extra={"record_dir": str(path), "defer_metrics": True}, cwd=path, warm=True)
            records.finalize(path)
        except Exception as exc:
            if path.is_dir():
                records.write_error(path, traceback.format_exc())  # kept for inspection: no metrics.json
            raise _failure(cfg, path, exc, f"see {path / 'run.ipynb'}") from None
    finally:
        lock.release()
    return DONE


def _failure(cfg: Config, path: Path, exc: BaseException, where: str) -> RunFailed:
    line = one_line(exc)
    if not _is_disk_full(exc):
        return RunFailed(f"{cfg.run_id()}: {line} ({where})")
    if path.is_dir():  # a write cut short by the full disk outside records' atomic writes (papermill's)
        for p in path.iterdir():
            if p.is_file() and p.stat().st_size == 0:
                p.unlink()
    # The OSError names the file when records or the kernel wrote it. One without a name comes from the
    # only writes in this process that are not records' own: papermill's copy of the executed notebook.
    named = str(getattr(exc, "filename", None) or getattr(exc, "evalue", None) or "")
    return DiskFull(f"{cfg.run_id()}: {line}" + ("" if os.sep in named else f" (writing {path / 'run.ipynb'})"))


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in records.DISK_FULL
    # raised inside the notebook: papermill passes the kernel's exception on as ename / evalue text
    evalue = str(getattr(exc, "evalue", "") or "")
    return any(evalue.startswith(f"[Errno {code}]") for code in records.DISK_FULL)


def ensure_datasets(cfgs: Sequence[Config]) -> None:
    """Load each distinct downloadable dataset once, up front, in this process.

    A missing or corrupt file is then one clear DataError before any run starts (instead of one failed
    notebook per run), and the download or miniImageNet decoding happens once rather than racing in
    every worker. A failed download leaves no data folder behind that was not there before."""
    from cldst.paths import data_dir
    from cldst.train import prepare_data

    seen = set()
    for cfg in cfgs:
        key = (cfg.dataset, cfg.data_root, cfg.image_size)
        if cfg.dataset != "synth100" and key not in seen:
            seen.add(key)
            root = Path(cfg.data_root).expanduser() if cfg.data_root else data_dir()
            created = _missing_ancestors(root)
            try:
                prepare_data(cfg.replace(train_per_class=0, test_per_class=0))
            except BaseException:
                for folder in created:  # deepest first; only folders the download made, only if empty
                    try:
                        folder.rmdir()
                    except OSError:
                        break
                raise


def _missing_ancestors(folder: Path) -> list[Path]:
    """`folder` and its parents that do not exist yet, deepest first."""
    missing = []
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        missing.append(p)
    return missing


class _Signals:
    """While a sweep runs, SIGINT, SIGTERM and SIGHUP only note which arrived (the sweep's loop then stops, in
    a bounded time); a second one changes nothing. Only the main thread can install handlers: elsewhere
    signals keep their usual effect."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, object] = {}

    def _note(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------- sweeps
def run_sweep(
    cfgs: Sequence[Config],
    *,
    workers: int = 1,
    root: str | Path | None = None,
    executor: str = "local",
    progress: bool = True,
    retries: int = 1,
    slurm: dict | Resources | None = None,
    check_data: bool = True,
    gpus: Sequence[str] = (),
    force: bool = False,
    detach: bool = False,
) -> SweepReport:
    """Execute every configuration that is not complete yet (force: every one).

    gpus (local executor): GPU indices the workers are spread over, round-robin; several workers per
    GPU share it (one small CIFAR run may not keep a large GPU busy).
    slurm (executor slurm): what each run's job asks for, Resources or a dict of its fields (not changed).
    detach (executor slurm): submit and return; the report's `queued` lists the runs left to Slurm. A run an
    earlier submission still has queued or running is followed (detach: left), never submitted again.
    SIGHUP (a lost shell) leaves a Slurm sweep's jobs running, as detach does; elsewhere it is SIGTERM.
    Raises Interrupted after SIGINT/SIGTERM, once the runs in flight are ended."""
    gpus = checks.check_all(cfgs, root=root, workers=workers, executor=executor, gpus=gpus)
    if detach and executor != "slurm":
        raise ConfigError(f"detach is for executor='slurm' (a local sweep's runs end with it), not {executor!r}")
    resources = slurm if isinstance(slurm, Resources) else Resources.from_dict(slurm or {})
    root = str(root) if root is not None else None
    report, todo = plan(cfgs, root, force)
    if not todo:
        return report
    notebook.template(TRAIN_NOTEBOOK)  # an edited, uncommitted template: one line, before any run
    if check_data:
        ensure_datasets(todo)
    # distinct runs: a configuration two experiments list is one run (the CLI's "N runs" line counts so too)
    bar = tqdm(total=len(report.skipped) + len(todo), initial=len(report.skipped), desc="runs", disable=not progress,
               unit="run")
    try:
        with _Signals() as signals:
            batch = Batch(todo, root, force, execute_run, report, bar, signals)
            executors.run(executor, batch, workers=workers, retries=retries, gpus=gpus, resources=resources,
                          detach=detach)
    finally:
        bar.close()
    if signals.signum and not (signals.signum == signal.SIGHUP and executor == "slurm"):
        raise Interrupted(report, signals.signum)
    if report.disk_full:
        log.error("disk full: %d run(s) not started; free space and re-run to resume", len(report.not_started))
    return report


def plan(cfgs: Sequence[Config], root: str | None = None, force: bool = False) -> tuple[SweepReport, list[Config]]:
    """What a sweep of `cfgs` would execute: every distinct run whose record is not complete (force: every
    one), corrupt records noted as redone. A complete record of the layout before the pool
    (<profile>/<experiment>/<run id>) is moved into the pool first and counts as complete."""
    report, todo = SweepReport(), []
    cfgs = distinct(cfgs)  # two experiments may list one configuration: one run id, one record, one run
    for cfg in cfgs:
        path = records.run_dir(cfg, root)
        status = records.record_status(path)
        if status == records.PARTIAL and not path.exists():
            status = records.adopt_legacy(path)
        if status == records.COMPLETE and not force:
            report.skipped.append(cfg.run_id())
            continue
        if status.startswith(records.CORRUPT):
            report.redone[cfg.run_id()] = status
            log.warning("%s: %s; redoing it", path, status)
        todo.append(cfg)
    if report.skipped:
        log.info("%d of %d runs already complete", len(report.skipped), len(cfgs))
    return report, todo

