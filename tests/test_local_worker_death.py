"""A worker that dies costs only the run it was executing a retry; the others in flight are resubmitted
without counting (cldst.executors.local)."""

import logging
import queue as queue_module
import signal
from collections import Counter, deque

from cldst.config import Config
from cldst.executors.base import SweepReport
from cldst.executors.local import _drain, _requeue, _who_died


class Worker:
    def __init__(self, pid, exitcode):
        self.pid, self.exitcode = pid, exitcode

    def join(self, timeout=None):
        pass


class Bar:
    updates = 0

    def update(self, n):
        self.updates += n


def test_only_the_run_whose_worker_died_is_blamed():
    started = queue_module.SimpleQueue()
    for rid, pid in [("a", 11), ("b", 12), ("c", 13)]:
        started.put((rid, pid))
    worker_of = {}
    _drain(started, worker_of)
    assert worker_of == {"a": 11, "b": 12, "c": 13} and started.empty()
    workers = {Worker(11, -signal.SIGKILL), Worker(12, 128 + signal.SIGTERM), Worker(13, -signal.SIGTERM)}
    assert _who_died(worker_of, workers) == {"a"}  # b and c were ended by the broken pool


def test_requeue_counts_a_retry_for_the_dead_workers_run_only(caplog):
    cfgs = [Config(seed=s) for s in range(3)]
    ids = [c.run_id() for c in cfgs]
    queue, attempts, report, bar = deque(), Counter(), SweepReport(), Bar()
    with caplog.at_level(logging.WARNING, logger="cldst.sweep"):
        _requeue(cfgs, {ids[1]}, queue, attempts, retries=1, report=report, bar=bar)
    assert list(queue) == cfgs and attempts == {ids[1]: 1}
    assert caplog.messages == [f"a worker died executing {ids[1]} (a retry counted); "
                               "2 other run(s) in flight resubmitted without counting one"]
    queue.clear()
    _requeue(cfgs, {ids[1]}, queue, attempts, retries=1, report=report, bar=bar)  # it dies again: out of retries
    assert list(queue) == [cfgs[0], cfgs[2]] and attempts == {ids[1]: 2}
    assert report.failed == {ids[1]: f"{ids[1]}: worker process died (killed or out of memory)"} and bar.updates == 1


def test_when_no_worker_can_be_blamed_every_run_in_flight_is():
    cfgs = [Config(seed=s) for s in range(2)]
    queue, attempts = deque(), Counter()
    _requeue(cfgs, set(), queue, attempts, retries=1, report=SweepReport(), bar=Bar())
    assert attempts == {c.run_id(): 1 for c in cfgs} and list(queue) == cfgs


def _dies_once(cfg, root, force=False):
    """A stand-in for sweep.execute_run in a spawned worker. On their first tries, seed 1 executes until
    the broken pool terminates its worker, and seed 0's worker kills itself once seed 1 is executing.
    Ordered by files, not by sleeps: under load one worker may start seconds after the other."""
    import os
    import time
    from pathlib import Path

    marker = Path(root) / f"seed{cfg['seed']}"
    first = not marker.exists()
    marker.touch()
    with open(Path(root) / "attempts.log", "a") as log:  # shown if the test fails: who ran what, when
        log.write(f"seed {cfg['seed']} pid {os.getpid()} at {time.time():.2f} first {first}\n")
    if not first:
        return "done"
    if cfg["seed"] == 0:
        other = Path(root) / "seed1"
        deadline = time.monotonic() + 120
        while not other.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(120)  # ended by the pool's SIGTERM once seed 0's worker is dead
    return "done"


def test_a_killed_worker_in_a_real_pool_costs_only_its_run_a_retry(tmp_path, monkeypatch, caplog):
    from cldst import sweep

    monkeypatch.setattr(sweep, "execute_run", _dies_once)
    cfgs = [Config(seed=0), Config(seed=1)]
    with caplog.at_level(logging.WARNING, logger="cldst.sweep"):
        report = sweep.run_sweep(cfgs, workers=2, root=tmp_path, progress=False, retries=1, check_data=False)
    assert sorted(report.done) == sorted(c.run_id() for c in cfgs) and report.failed == {}
    assert caplog.messages == [f"a worker died executing {cfgs[0].run_id()} (a retry counted); "
                               "1 other run(s) in flight resubmitted without counting one"], \
        (tmp_path / "attempts.log").read_text()


def _the_later_worker_dies(cfg, root, force=False):
    """A stand-in for sweep.execute_run: on the first tries, once both runs execute, the run in the worker
    started later (the larger pid) has its worker killed; the other runs until its worker is ended."""
    import os
    import time
    from pathlib import Path

    if (Path(root) / f"seed{cfg['seed']}").exists():
        return "done"
    (Path(root) / f"seed{cfg['seed']}").write_text(str(os.getpid()))
    other = Path(root) / f"seed{1 - cfg['seed']}"
    deadline = time.monotonic() + 120
    while not (other.exists() and other.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    if os.getpid() > int(other.read_text() or 0):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(30)  # ended by the sweep once the other worker is seen dead; the test fails if it is not
    return "done"


def test_a_worker_the_pool_does_not_watch_is_seen_dead_by_the_sweep(tmp_path, monkeypatch, caplog):
    """CPython 3.11's pool wakes its manager thread on submit before it starts the worker it adds; the
    thread then waits on the workers it knows, so a death of the added one goes unnoticed until another
    run ends. A delay before each start makes that certain here: the sweep must see the death itself."""
    import time
    from concurrent.futures import ProcessPoolExecutor

    from cldst import sweep
    from cldst.executors import local

    class SlowToAddWorkers(ProcessPoolExecutor):
        def _adjust_process_count(self):
            time.sleep(0.5)  # the manager thread, woken by this submit, is back waiting before the start
            super()._adjust_process_count()

    monkeypatch.setattr(local, "ProcessPoolExecutor", SlowToAddWorkers)
    monkeypatch.setattr(sweep, "execute_run", _the_later_worker_dies)
    cfgs = [Config(seed=0), Config(seed=1)]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="cldst.sweep"):
        report = sweep.run_sweep(cfgs, workers=2, root=tmp_path, progress=False, retries=1, check_data=False)
    assert sorted(report.done) == sorted(c.run_id() for c in cfgs) and report.failed == {}
    pids = {s: int((tmp_path / f"seed{s}").read_text()) for s in (0, 1)}
    killed = cfgs[max(pids, key=pids.get)].run_id()
    assert caplog.messages == [f"a worker died executing {killed} (a retry counted); "
                               "1 other run(s) in flight resubmitted without counting one"]
    assert time.monotonic() - started < 30  # the other run was ended, not waited for
