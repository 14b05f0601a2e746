"""Execute many configurations through the training notebook, resumably.

Each run is `notebooks/train.ipynb` executed by papermill's Python API with the run's Config as
parameters, into `papermill_runs/<experiment>/<run id>/run.ipynb`. Long-lived worker processes each
execute one notebook after another (papermill's CLI would spend ~3 s importing per run; its API in a
warm process ~1 s). A sweep:
  - skips complete runs (metrics.json present) without touching a byte of them;
  - redoes partial ones from scratch (a killed attempt leaves no metrics.json, so it is never mistaken
    for a result);
  - survives a killed worker: the pool is rebuilt and the unfinished runs are retried (once more);
  - on a cluster, hands the runs to SLURM through submitit (`executor="slurm"`), or to submitit's local
    executor (`executor="submitit-local"`, what the tests use).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from cldst import notebook, records
from cldst.config import Config
from cldst.errors import ConfigError
from cldst.paths import NOTEBOOKS_DIR

log = logging.getLogger(__name__)

TRAIN_NOTEBOOK = NOTEBOOKS_DIR / "train.ipynb"
EXECUTORS = ("local", "submitit-local", "slurm")


@dataclass
class SweepReport:
    done: list[str] = field(default_factory=list)  # run ids executed now
    skipped: list[str] = field(default_factory=list)  # already complete
    failed: dict[str, str] = field(default_factory=dict)  # run id -> one-line reason

    def summary(self) -> str:
        return f"{len(self.done)} run, {len(self.skipped)} already complete, {len(self.failed)} failed"


def execute_run(cfg: Config | dict, root: str | None = None) -> str:
    """Execute one configuration through the training notebook; return its run directory.

    Complete runs are returned untouched. Anything else in the directory is removed first."""
    cfg = Config.from_dict(cfg) if isinstance(cfg, dict) else cfg
    if root is not None:  # the kernel inherits the environment and writes under the same root
        os.environ["CLDST_RUNS"] = str(root)
    path = records.run_dir(cfg, root)
    if records.is_complete(path):
        return str(path)
    records.prepare(path, cfg)
    os.environ[records.DEFER_ENV] = "1"
    try:
        notebook.execute(TRAIN_NOTEBOOK, path / "run.ipynb", {**cfg.to_dict(), "progress": False}, cwd=path)
    except Exception as exc:
        # Keep the partial record for inspection; it has no metrics.json so it is never taken as done.
        (path / "error.txt").write_text(traceback.format_exc())
        raise RuntimeError(f"{cfg.run_id()}: {_one_line(exc)} (see {path / 'run.ipynb'})") from None
    finally:
        os.environ.pop(records.DEFER_ENV, None)
    records.finalize(path)
    return str(path)


def ensure_datasets(cfgs: Sequence[Config]) -> None:
    """Load each distinct downloadable dataset once, up front, in this process.

    A missing or corrupt file is then one clear DataError before any run starts (instead of one failed
    notebook per run), and the download or miniImageNet decoding happens once rather than racing in
    every worker."""
    from cldst.train import prepare_data

    seen = set()
    for cfg in cfgs:
        key = (cfg.dataset, cfg.data_root, cfg.image_size)
        if cfg.dataset != "synth100" and key not in seen:
            seen.add(key)
            prepare_data(cfg.replace(train_per_class=0, test_per_class=0))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    ename = getattr(exc, "ename", None)  # papermill's PapermillExecutionError
    evalue = getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


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
) -> SweepReport:
    """Execute every configuration that is not complete yet.

    gpus (local executor): GPU indices the workers are spread over, round-robin; several workers per
    GPU share it (one small CIFAR run may not keep a large GPU busy)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not one of: {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"workers={workers} must be >= 1")
    gpus = tuple(str(g).strip() for g in gpus)
    if any(not g.isdigit() for g in gpus):
        raise ConfigError(f"gpus={','.join(gpus)!r} must be comma-separated GPU indices, e.g. 0,1")
    if gpus and executor != "local":
        raise ConfigError(f"gpus is for executor='local'; with executor={executor!r} the scheduler assigns GPUs")
    root = str(root) if root is not None else None
    report = SweepReport()
    todo = []
    for cfg in cfgs:
        (report.skipped if records.is_complete(records.run_dir(cfg, root)) else todo).append(cfg)
    if report.skipped:
        log.info("%d of %d runs already complete", len(report.skipped), len(cfgs))
        report.skipped = [c.run_id() for c in report.skipped]
    if not todo:
        return report
    if check_data:
        ensure_datasets(todo)
    bar = tqdm(total=len(cfgs), initial=len(report.skipped), desc="runs", disable=not progress, unit="run")
    try:
        if executor == "local":
            _run_local(todo, workers, root, report, bar, retries, gpus)
        else:
            _run_submitit(todo, root, report, bar, cluster="local" if executor == "submitit-local" else "slurm",
                          slurm=slurm or {}, workers=workers)
    finally:
        bar.close()
    return report


def _run_local(todo, workers, root, report, bar, retries, gpus=()) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    slot = ctx.Value("i", 0)  # counts started workers, for the GPU round-robin
    attempts = dict.fromkeys((c.run_id() for c in todo), 0)
    by_id = {c.run_id(): c for c in todo}
    while todo:
        with ProcessPoolExecutor(
            max_workers=min(workers, len(todo)), mp_context=ctx,
            initializer=_init_worker, initargs=(threads, gpus, slot),
        ) as pool:
            futures = {pool.submit(execute_run, c.to_dict(), root): c.run_id() for c in todo}
            broken = False
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    rid = futures[fut]
                    try:
                        fut.result()
                        report.done.append(rid)
                        bar.update(1)
                    except BrokenProcessPool:
                        broken = True
                    except Exception as exc:  # a failed notebook: report it, go on with the others
                        report.failed[rid] = _one_line(exc)
                        bar.update(1)
                        log.error("%s", report.failed[rid])
                bar.set_postfix(failed=len(report.failed), refresh=False)  # shown with the next update
        if not broken:
            return
        # A worker died (killed, out of memory): retry what did not finish, each run a limited number of times.
        settled = set(report.done) | set(report.failed)
        todo = []
        for rid, cfg in by_id.items():
            if rid in settled:
                continue
            attempts[rid] += 1
            if attempts[rid] > retries:
                report.failed[rid] = "worker process died (killed or out of memory)"
                bar.update(1)
            else:
                todo.append(cfg)
        log.warning("a worker died; retrying %d unfinished run(s)", len(todo))
        time.sleep(0.5)


def _run_submitit(todo, root, report, bar, *, cluster, slurm, workers) -> None:
    import submitit

    folder = Path(root or records.runs_dir()) / "_submitit" / "%j"
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": slurm.pop("timeout_min", 24 * 60)}
    if cluster == "slurm":
        params.update({"slurm_array_parallelism": workers, **{f"slurm_{k}": v for k, v in slurm.items()}})
    ex.update_parameters(**params)
    jobs = ex.map_array(execute_run, [c.to_dict() for c in todo], [root] * len(todo))
    for job, cfg in zip(jobs, todo):
        try:
            job.result()
            report.done.append(cfg.run_id())
        except Exception as exc:
            report.failed[cfg.run_id()] = _one_line(exc)
        bar.update(1)
