"""Execute many configurations through the training notebook, resumably, one process per run.

Each run is `notebooks/train.ipynb` executed by papermill's Python API with the run's Config as
parameters, into `papermill_runs/<experiment>/<run id>/run.ipynb`. Long-lived worker processes each
execute one notebook after another (papermill's CLI would spend ~3 s importing per run; its API in a
warm process ~1 s). A sweep:
  - skips complete runs (records.record_status) without touching a byte of them; redoes partial ones
    and corrupt ones (saying so) from scratch;
  - executes each run under its lock (records.try_lock): two sweeps of one runs directory (a double
    launch, two cluster jobs) never execute a run twice; a run another process holds is skipped and
    reported as held;
  - survives a killed worker: the pool is rebuilt and the unfinished runs are retried (once more);
  - stops starting runs after a full disk (ENOSPC, EDQUOT) and names the file it could not write;
  - on SIGINT or SIGTERM ends its workers and their notebook kernels, starts nothing more and raises
    Interrupted ("interrupted: N done, M not started; re-run to resume"); workers whose sweep dies
    (SIGKILL) end themselves and their kernels within a second;
  - on a cluster, hands the runs to SLURM through submitit (`executor="slurm"`), or to submitit's local
    executor (`executor="submitit-local"`, what the tests use).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.util
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # imported here, not in a signal handler: a handler may interrupt an import
from tqdm.auto import tqdm

from cldst import errors, notebook, records
from cldst.config import Config
from cldst.errors import ConfigError, one_line
from cldst.experiments import distinct
from cldst.paths import NOTEBOOKS_DIR

log = logging.getLogger(__name__)

TRAIN_NOTEBOOK = NOTEBOOKS_DIR / "train.ipynb"
EXECUTORS = ("local", "submitit-local", "slurm")
DONE, COMPLETE, HELD = "done", "complete", "held"  # what execute_run did
GRACE = 5.0  # seconds a stopped worker gets to end its kernel before it is killed


class RunFailed(RuntimeError):
    """A run's notebook or record failed; the message is one line naming the run and where to look."""


class DiskFull(RunFailed):
    """A run failed because its disk (or quota) is full: the sweep starts no further run."""


@dataclass
class SweepReport:
    done: list[str] = field(default_factory=list)  # run ids executed now
    skipped: list[str] = field(default_factory=list)  # already complete
    held: list[str] = field(default_factory=list)  # being executed by another process: not touched
    failed: dict[str, str] = field(default_factory=dict)  # run id -> one-line reason
    redone: dict[str, str] = field(default_factory=dict)  # corrupt records found (and redone): run id -> why
    not_started: list[str] = field(default_factory=list)  # left when the sweep stopped (signal, full disk)
    disk_full: str = ""  # the failure that stopped the sweep, if a full disk did

    def summary(self) -> str:
        parts = [f"{len(self.done)} run", f"{len(self.skipped)} already complete"]
        if self.held:
            parts.append(f"{len(self.held)} held by another process")
        parts.append(f"{len(self.failed)} failed")
        if self.not_started:
            parts.append(f"{len(self.not_started)} not started")
        return ", ".join(parts)


class Interrupted(errors.Interrupted):
    """SIGINT or SIGTERM stopped a sweep; its workers and kernels are gone. str() is the line to show."""

    def __init__(self, report: SweepReport, signum: int):
        self.report = report
        super().__init__(f"interrupted: {len(report.done)} done, {len(report.not_started)} not started; "
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
    # the OSError names the file when records wrote it; papermill's own writes name none: say where
    named = str(getattr(exc, "filename", None) or getattr(exc, "evalue", None) or "")
    return DiskFull(f"{cfg.run_id()}: {line}" + ("" if os.sep in named else f" (writing into {path})"))


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


# ---------------------------------------------------------------------- worker processes
_compile_dir = ""  # this worker's torch.compile cache (removed when the worker ends)


def _init_worker(threads: int, gpus: Sequence[str] = (), slot=None) -> None:
    """Set up one worker process; the notebook kernels it starts inherit its environment.

    threads: N workers share the cores instead of oversubscribing them.
    gpus: worker i (in start order, counted by the shared `slot`) sees only gpus[i % len(gpus)], so
    `workers=8, gpus=("0", "1")` puts four runs on each GPU and `device="cuda"` means that GPU."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if gpus:
        with slot.get_lock():
            index = slot.value
            slot.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    _own_compile_cache()
    # The sweep's main process decides what a signal ends. A terminal's Ctrl-C reaches the whole process
    # group: a worker ignores it (a no-op handler, not SIG_IGN, which kernels would inherit across exec).
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, _end_worker)
    _watch_parent(os.getppid())


def _own_compile_cache() -> None:
    """torch.compile's caches (inductor, triton) in a directory of this worker alone: processes sharing
    one can read each other's half-written entries. The kernels the worker starts, one at a time,
    share it. A TORCHINDUCTOR_CACHE_DIR the user set is kept as the place, one level down."""
    global _compile_dir
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or None
    try:
        _compile_dir = tempfile.mkdtemp(prefix=f"cldst-compile-{os.getpid()}-", dir=base)
    except OSError as exc:
        log.warning("no torch.compile cache of its own for worker %d (%s)", os.getpid(), exc)
        return
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _compile_dir
    os.environ["TRITON_CACHE_DIR"] = os.path.join(_compile_dir, "triton")
    # a worker that ends normally runs multiprocessing's finalizers (not atexit)
    multiprocessing.util.Finalize(None, shutil.rmtree, args=(_compile_dir,), kwargs={"ignore_errors": True},
                                  exitpriority=0)


def _end_worker(signum, frame) -> None:
    """SIGTERM (the sweep stopping): end this worker's kernel first, which would otherwise outlive it."""
    _end_descendants()
    if _compile_dir:
        shutil.rmtree(_compile_dir, ignore_errors=True)
    os._exit(128 + signum)


def _watch_parent(parent: int) -> None:
    """A worker whose sweep died (SIGKILL, a crash) ends its kernel and itself: nobody would read its
    results, and it would go on writing records that a new sweep is about to redo."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        _end_descendants()
        os._exit(1)

    threading.Thread(target=watch, name="cldst-watch-parent", daemon=True).start()


def _end_descendants(grace: float = 2.0) -> None:
    """Terminate every process this one started (kernels, their compile workers), kill what remains."""
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    _end(procs, grace)


def _end(procs, grace: float) -> None:
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)


def _stop_workers(workers) -> None:
    """End the pool's workers (SIGTERM: each ends its kernel), kill those that do not go within GRACE,
    then whatever they had started that is still there (a killed worker cannot end its kernel)."""
    tree = []
    for w in workers:
        try:
            tree += psutil.Process(w.pid).children(recursive=True)
        except psutil.Error:
            pass
        w.terminate()
    deadline = time.monotonic() + GRACE
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
        if w.is_alive():
            w.kill()
            w.join(1.0)
    _end([p for p in tree if p.is_running()], grace=1.0)


class _Signals:
    """While a sweep runs, SIGINT and SIGTERM only note which arrived (the sweep's loop then stops, in a
    bounded time); a second one changes nothing. Only the main thread can install handlers: elsewhere
    signals keep their usual effect."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, object] = {}

    def _note(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
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
    slurm: dict | None = None,
    check_data: bool = True,
    gpus: Sequence[str] = (),
    force: bool = False,
) -> SweepReport:
    """Execute every configuration that is not complete yet (force: every one).

    gpus (local executor): GPU indices the workers are spread over, round-robin; several workers per
    GPU share it (one small CIFAR run may not keep a large GPU busy).
    Raises Interrupted after SIGINT/SIGTERM, once the runs in flight are ended."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not one of: {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"workers={workers} must be >= 1")
    gpus = check_gpus(gpus, executor)
    root = str(root) if root is not None else None
    report, todo = plan(cfgs, root, force)
    if not todo:
        return report
    notebook.template(TRAIN_NOTEBOOK)  # an edited, uncommitted template: one line, before any run
    if check_data:
        ensure_datasets(todo)
    bar = tqdm(total=len(cfgs), initial=len(report.skipped), desc="runs", disable=not progress, unit="run")
    try:
        with _Signals() as signals:
            if executor == "local":
                _run_local(todo, workers, root, report, bar, retries, gpus, force, signals)
            else:
                _run_submitit(todo, root, report, bar, cluster="local" if executor == "submitit-local" else "slurm",
                              slurm=slurm or {}, workers=workers, force=force, signals=signals)
    finally:
        bar.close()
    if signals.signum:
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


def check_gpus(gpus: Sequence[str], executor: str = "local") -> tuple[str, ...]:
    """The GPU indices a local sweep spreads its workers over, checked (ConfigError otherwise)."""
    gpus = tuple(str(g).strip() for g in gpus)
    if any(not g.isdigit() for g in gpus):
        raise ConfigError(f"gpus={','.join(gpus)!r} must be comma-separated GPU indices, e.g. 0,1")
    if gpus and executor != "local":
        raise ConfigError(f"gpus is for executor='local'; with executor={executor!r} the scheduler assigns GPUs")
    return gpus


def _settle(report: SweepReport, rid: str, outcome: str) -> None:
    {DONE: report.done, COMPLETE: report.skipped, HELD: report.held}[outcome].append(rid)
    if outcome == HELD:
        log.info("%s is held by another process (being executed there); not touched", rid)


def _fail(report: SweepReport, rid: str, exc: BaseException) -> None:
    # every reason starts with its run id (RunFailed's already do)
    report.failed[rid] = str(exc) if isinstance(exc, RunFailed) else f"{rid}: {one_line(exc)}"
    log.error("%s", report.failed[rid])
    if isinstance(exc, DiskFull) and not report.disk_full:
        report.disk_full = report.failed[rid]


def _run_local(todo, workers, root, report, bar, retries, gpus, force, signals) -> None:
    """Runs are handed to the pool one per free worker, never queued ahead: what is not handed out when
    the sweep stops was not started, and is reported so."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    slot = ctx.Value("i", 0)  # counts started workers, for the GPU round-robin
    queue = deque(todo)
    attempts: Counter[str] = Counter()
    while queue and not (signals.signum or report.disk_full):
        before = set(mp.active_children())  # this pool's workers are the children that appear
        size = min(workers, len(queue))
        pool = ProcessPoolExecutor(max_workers=size, mp_context=ctx, initializer=_init_worker,
                                   initargs=(threads, gpus, slot))
        running: dict = {}
        broken = False
        try:
            while True:
                while queue and len(running) < size and not (broken or signals.signum or report.disk_full):
                    cfg = queue.popleft()
                    running[pool.submit(execute_run, cfg.to_dict(), root, force=force)] = cfg
                if signals.signum or not running:
                    break
                finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in finished:
                    cfg = running.pop(fut)
                    rid = cfg.run_id()
                    try:
                        _settle(report, rid, fut.result())
                    except BrokenProcessPool:
                        # A worker died (killed, out of memory): retry the run a limited number of times.
                        broken = True
                        attempts[rid] += 1
                        if attempts[rid] <= retries:
                            queue.appendleft(cfg)
                            continue
                        report.failed[rid] = f"{rid}: worker process died (killed or out of memory)"
                    except Exception as exc:  # a failed notebook: report it, go on with the others
                        _fail(report, rid, exc)
                    bar.update(1)
                bar.set_postfix(failed=len(report.failed), refresh=False)  # shown with the next update
        finally:
            if signals.signum or running:
                _stop_workers(set(mp.active_children()) - before)
            pool.shutdown(wait=True, cancel_futures=True)
        if broken and queue and not signals.signum:
            log.warning("a worker died; retrying %d unfinished run(s)", len(queue))
            time.sleep(0.5)
    report.not_started = [c.run_id() for c in queue]


def _run_submitit(todo, root, report, bar, *, cluster, slurm, workers, force, signals) -> None:
    import submitit

    folder = Path(root or records.runs_dir()) / "_submitit" / "%j"
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": slurm.pop("timeout_min", 24 * 60)}
    if cluster == "slurm":
        params.update({"slurm_array_parallelism": workers, **{f"slurm_{k}": v for k, v in slurm.items()}})
    ex.update_parameters(**params)
    jobs = ex.map_array(execute_run, [c.to_dict() for c in todo], [root] * len(todo), [force] * len(todo))
    pending = dict(zip(jobs, todo))
    while pending:
        if signals.signum:
            # The scheduler owns these jobs: cancel them (SLURM ends their processes; the local executor
            # interrupts its own). Which of them had started, only the scheduler knows.
            for job in pending:
                job.cancel(check=False)
            report.not_started = [c.run_id() for c in pending.values()]
            return
        for job in [j for j in pending if j.done()]:
            rid = pending.pop(job).run_id()
            try:
                _settle(report, rid, job.result())
            except Exception as exc:
                _fail(report, rid, exc)
            bar.update(1)
        time.sleep(0.5)
