"""The local executor: a pool of long-lived worker processes on this machine, one run at a time each.

Runs are handed to the pool one per free worker, never queued ahead: what is not handed out when the
sweep stops was not started, and is reported so. A worker that dies (killed, out of memory) breaks the
pool; it is rebuilt, the run that worker was executing loses one of its retries, and the other runs that
were in flight are resubmitted without counting (they did nothing wrong).
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.util
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import psutil  # imported here, not in a signal handler: a handler may interrupt an import

from cldst.executors.base import Batch, log

GRACE = 5.0  # seconds a stopped worker gets to end its kernel before it is killed
# how a surviving worker ends when a broken pool terminates it (its SIGTERM handler, or before it had one)
_TERMINATED = {128 + signal.SIGTERM, -signal.SIGTERM}


def threads_per_worker(workers: int) -> int:
    """N workers share the cores instead of oversubscribing them."""
    return max(1, (os.cpu_count() or 1) // workers)


def set_threads(threads: int) -> None:
    """The thread count torch (OpenMP, MKL) will use in the kernels this process starts from now on."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)


# ---------------------------------------------------------------------- worker processes
_compile_dir = ""  # this worker's torch.compile cache (removed when the worker ends)
_started = None  # queue of (run id, worker pid) as runs start: which worker executes which run


def _init_worker(threads: int, gpus: Sequence[str] = (), slot=None, started=None) -> None:
    """Set up one worker process; the notebook kernels it starts inherit its environment.

    gpus: worker i (in start order, counted by the shared `slot`) sees only gpus[i % len(gpus)], so
    `workers=8, gpus=("0", "1")` puts four runs on each GPU and `device="cuda"` means that GPU.
    started: a queue on which the worker says which run it starts (see _tracked)."""
    global _started
    _started = started
    set_threads(threads)
    if gpus:
        with slot.get_lock():
            index = slot.value
            slot.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    _own_compile_cache()
    # The sweep's main process decides what a signal ends. A terminal's Ctrl-C reaches the whole process
    # group, as a closed terminal's SIGHUP does: a worker ignores both (a no-op handler, not SIG_IGN, which
    # kernels would inherit across exec); the main process then ends its workers.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.signal(signal.SIGHUP, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, _end_worker)
    _watch_parent(os.getppid())


def _tracked(job, rid: str, *args, **kwargs):
    """Runs `job` in a worker, first saying on the pool's queue which worker executes which run."""
    if _started is not None:
        _started.put((rid, os.getpid()))
    return job(*args, **kwargs)


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
    multiprocessing.util.Finalize(None, _worker_exit, exitpriority=0)


def _worker_exit() -> None:
    """A worker's end: its kept kernel first (it may still be using the compile cache), then the cache."""
    from cldst import notebook

    notebook.shutdown_kept_kernel()
    if _compile_dir:
        shutil.rmtree(_compile_dir, ignore_errors=True)


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


# ---------------------------------------------------------------------- the executor
def run(batch: Batch, *, workers: int, retries: int, gpus: Sequence[str]) -> None:
    report, bar = batch.report, batch.bar
    ctx = mp.get_context("spawn")
    slot = ctx.Value("i", 0)  # counts started workers, for the GPU round-robin
    started = ctx.SimpleQueue()
    queue = deque(batch.todo)
    attempts: Counter[str] = Counter()
    worker_of: dict[str, int] = {}  # run id -> pid of the worker executing it
    while queue and not batch.stop():
        before = set(mp.active_children())  # this pool's workers are the children that appear
        size = min(workers, len(queue))
        pool = ProcessPoolExecutor(max_workers=size, mp_context=ctx, initializer=_init_worker,
                                   initargs=(threads_per_worker(workers), gpus, slot, started))
        running: dict = {}
        pool_workers: set = set()
        lost = []  # runs in flight when a worker died
        try:
            while True:
                while queue and len(running) < size and not (lost or batch.stop()):
                    cfg = queue.popleft()
                    fut = pool.submit(_tracked, batch.job, cfg.run_id(), cfg.to_dict(), batch.root, force=batch.force)
                    running[fut] = cfg
                # Seen as soon as submit has started them: active_children() forgets a child once it is
                # dead, so a worker that died before a later look would be missed, and no run blamed.
                pool_workers |= set(mp.active_children()) - before
                if batch.signum or not running:
                    break
                finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(started, worker_of)  # read as it comes: a full pipe would block the workers
                for fut in finished:
                    cfg = running.pop(fut)
                    try:
                        report.settle(cfg.run_id(), fut.result())
                    except BrokenProcessPool:
                        lost.append(cfg)
                        continue
                    except Exception as exc:  # a failed notebook: report it, go on with the others
                        report.fail(cfg.run_id(), exc)
                    bar.update(1)
                bar.set_postfix(failed=len(report.failed), refresh=False)  # shown with the next update
                if running and any(w.exitcode is not None for w in pool_workers):
                    # A worker died and the pool has not said so: CPython 3.11's pool watches the workers
                    # that existed when its manager thread last began waiting, and a submit wakes that
                    # thread before it starts the worker it adds. A run killed in such a worker would go
                    # unnoticed until another run ended. The runs in flight are lost as on a broken pool.
                    lost += running.values()
                    running.clear()
                    _stop_workers({w for w in pool_workers if w.exitcode is None})
                    break
        finally:
            if batch.signum or running:
                _stop_workers(set(mp.active_children()) - before)
            pool.shutdown(wait=True, cancel_futures=True)
        if lost:
            _drain(started, worker_of)
            _requeue(lost, _who_died(worker_of, pool_workers), queue, attempts, retries, report, bar)
            if queue and not batch.signum:
                time.sleep(0.5)
    report.not_started = [c.run_id() for c in queue]


def _drain(started, worker_of: dict[str, int]) -> None:
    while not started.empty():
        rid, pid = started.get()
        worker_of[rid] = pid


def _who_died(worker_of: dict[str, int], pool_workers) -> set[str]:
    """The run ids whose worker died on its own (not terminated by the broken pool afterwards)."""
    for w in pool_workers:
        w.join(1.0)
    died = {w.pid for w in pool_workers if w.exitcode not in (None, 0, *_TERMINATED)}
    return {rid for rid, pid in worker_of.items() if pid in died}


def _requeue(lost, died: set[str], queue, attempts, retries, report, bar) -> None:
    """Put the runs a broken pool lost back at the front of the queue; only a run whose own worker died
    loses a retry (if none can be told apart, each of them does)."""
    blamed = [c for c in lost if c.run_id() in died] or lost
    for cfg in reversed(lost):
        rid = cfg.run_id()
        if cfg in blamed:
            attempts[rid] += 1
            if attempts[rid] > retries:
                report.fail(rid, "worker process died (killed or out of memory)")
                bar.update(1)
                continue
        queue.appendleft(cfg)
    innocent = len(lost) - len(blamed)
    log.warning("a worker died executing %s (a retry counted)%s", ", ".join(c.run_id() for c in blamed),
                f"; {innocent} other run(s) in flight resubmitted without counting one" if innocent else "")
