"""Sweeps through the real notebook, as a user meets them: two launched at once on one runs directory,
Ctrl-C, kill -TERM, a sweep killed outright, `cldst run` interrupted. Each sweep is `cldst sweep` in
a subprocess, its experiment's grid replaced by tiny runs.

Every notebook kernel started here runs an IPython startup file (IPYTHONDIR) that leaves one file per
execution of the notebook in it (a worker keeps one kernel for its runs and moves it into each run's
directory): the working directory (the run directory), the kernel's parent (the worker) and its
environment. That counts executions independently of what the sweeps report. Every process started here carries
CLDST_TEST_TAG in its environment, which finds whatever a sweep left running."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import torch

from cldst import records
from cldst.config import Config
from cldst.sparse import load_masks
from cldst.train import train_continual

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebooks")]

TINY = dict(dataset="synth100", num_tasks=2, image_size=16, width=4, batch_size=64, train_per_class=6,
            test_per_class=4, epochs=1, update_frequency=2, lr=1e-3, variant="cifar", progress=False, experiment="e2e")
RECORD = ["capacity.csv", "config.json", "environment.json", "masks.pt", "metrics.json", "progress.log", "run.ipynb",
          "updates.csv"]
TIMING = {"task_seconds", "train_seconds", "eval_seconds"}
INTERRUPTED = re.compile(r"interrupted: (\d+) done, (\d+) not started; re-run to resume")

SWEEP = """
import sys
from cldst import cli, experiments
from cldst.config import Config
experiments.configs = lambda *args, **kwargs: [Config.from_dict(d) for d in {configs!r}]
sys.exit(cli.main(["sweep", "adaptive", "--root", {root!r}, "--workers", "{workers}", "--quiet"]))
"""

STARTUP = """
def _record_execution(*args, last={"cwd": None}):  # the first cell an execution runs in its run directory
    import json, os, uuid  # here: the kept kernel's namespace is reset before each run

    folder = os.environ.get("CLDST_TEST_KERNELS")
    if folder and os.getcwd() != last["cwd"]:
        last["cwd"] = os.getcwd()
        with open(os.path.join(folder, f"{os.getpid()}-{uuid.uuid4().hex}.json"), "w") as f:
            json.dump({"cwd": os.getcwd(), "parent": os.getppid(), "pid": os.getpid(), "env": dict(os.environ)}, f)


get_ipython().events.register("pre_run_cell", _record_execution)
"""


def tiny(n: int) -> list[Config]:
    return [Config(**TINY, seed=s) for s in range(n)]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    startup = tmp_path / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-record-kernel.py").write_text(STARTUP)
    (tmp_path / "kernels").mkdir()
    return {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"), "CLDST_TEST_KERNELS": str(tmp_path / "kernels"),
            "CLDST_TEST_TAG": uuid.uuid4().hex}


def kernels(env) -> list[dict]:
    return [json.loads(p.read_text()) for p in Path(env["CLDST_TEST_KERNELS"]).iterdir()]


def start_sweep(cfgs, root, env, workers, preamble: str = "") -> subprocess.Popen:
    script = preamble + SWEEP.format(configs=[c.to_dict() for c in cfgs], root=str(root), workers=workers)
    return subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_kernel(proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until a notebook kernel of `proc` runs, then a second more: a run is under way."""
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no kernel started"
        try:
            if any("ipykernel" in " ".join(p.cmdline()) for p in psutil.Process(proc.pid).children(recursive=True)):
                break
        except psutil.Error:
            pass
        time.sleep(0.2)
    time.sleep(1.0)


def left_running(env, wait: float = 5.0) -> list[str]:
    """The processes carrying this test's tag that are still running after `wait` seconds."""
    deadline = time.time() + wait
    while True:
        alive = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("CLDST_TEST_TAG") == env["CLDST_TEST_TAG"] and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(" ".join(p.cmdline())[:120])
            except psutil.Error:
                pass
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.5)


def complete(cfgs, root) -> list[Config]:
    return [c for c in cfgs if records.is_complete(records.run_dir(c, root))]


def test_two_sweeps_at_once_execute_each_run_once(tmp_path, env):
    root = tmp_path / "runs"
    cfgs = tiny(3)
    sweeps = [start_sweep(cfgs, root, env, workers=1) for _ in range(2)]
    outs = [p.communicate(timeout=400) for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], outs

    # every run executed exactly once, by one of the two (one execution in each run's directory)
    dirs = [str(records.run_dir(c, root)) for c in cfgs]
    ks = kernels(env)
    assert sorted(k["cwd"] for k in ks) == sorted(dirs)
    summaries = [next(line for line in out.splitlines() if re.match(r"\d+ run, ", line)) for out, _ in outs]
    executed = [int(re.match(r"(\d+) run, ", s).group(1)) for s in summaries]
    assert sum(executed) == len(cfgs), summaries
    for (out, _), s, n in zip(outs, summaries, executed):  # what one did not execute, the other held or finished
        held = [line for line in out.splitlines() if line.startswith("held by another process: ")]
        assert re.fullmatch(rf"{n} run, {len(cfgs) - n - len(held)} already complete, "
                            + (f"{len(held)} held by another process, " if held else "") + "0 failed", s), s

    # no stray file: the records, their locks, nothing else
    assert sorted(os.listdir(root)) == ["e2e"]
    assert sorted(os.listdir(root / "e2e")) == sorted([".locks", *(Path(d).name for d in dirs)])
    assert sorted(os.listdir(root / "e2e" / ".locks")) == sorted(f"{Path(d).name}.lock" for d in dirs)
    for d in dirs:
        assert sorted(os.listdir(d)) == RECORD and records.record_status(d) == "complete"

    # each record equals a clean run's (same thread count as a sweep's kernel), timings aside
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 1))  # a sweep of 1 worker gives it every core
    try:
        for cfg in cfgs:
            clean = records.save_result(train_continual(cfg), tmp_path / "clean" / cfg.run_id())
            path = records.run_dir(cfg, root)
            for name in ("config.json", "capacity.csv", "updates.csv"):
                assert (path / name).read_bytes() == (clean / name).read_bytes(), name
            ours, theirs = (json.loads((p / "metrics.json").read_text()) for p in (path, clean))
            assert {k: v for k, v in ours.items() if k not in TIMING} == {
                k: v for k, v in theirs.items() if k not in TIMING}
            for a, b in zip(load_masks(path / "masks.pt"), load_masks(clean / "masks.pt"), strict=True):
                assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    finally:
        torch.set_num_threads(threads)

    # A worker's environment does not change from run to run (no run state travels through it), and
    # each worker has a torch.compile cache of its own, removed when the worker ends.
    by_worker: dict[int, list[dict]] = {}
    for k in ks:
        by_worker.setdefault(k["parent"], []).append({n: v for n, v in k["env"].items() if not n.startswith("JPY_")})
    caches = set()
    for worker, envs in by_worker.items():
        assert all(e == envs[0] for e in envs), f"worker {worker}'s environment changed between runs"
        assert "CLDST_RUNS" not in envs[0] and "CLDST_DEFER_METRICS" not in envs[0]
        cache = envs[0]["TORCHINDUCTOR_CACHE_DIR"]
        assert Path(cache).name.startswith(f"cldst-compile-{worker}-") and not Path(cache).exists()
        assert envs[0]["TRITON_CACHE_DIR"] == os.path.join(cache, "triton")
        caches.add(cache)
    assert len(caches) == len(by_worker)


@pytest.mark.parametrize("how", ["Ctrl-C twice", "kill -TERM"])
def test_a_signal_ends_workers_and_kernels_and_a_rerun_resumes(tmp_path, env, how):
    """Once a run is under way: one line, exit 128 + the signal, no worker or kernel left, the runs in
    flight partial (never complete-looking), and a re-run executes exactly what is not complete."""
    root = tmp_path / "runs"
    cfgs = tiny(3)
    proc = start_sweep(cfgs, root, env, workers=2)
    wait_for_kernel(proc)
    if how == "Ctrl-C twice":  # a terminal sends SIGINT to the whole process group
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)  # a hang fails here; how fast it ends is not asserted
    assert proc.returncode == {"Ctrl-C twice": 130, "kill -TERM": 143}[how], err
    assert len(err.strip().splitlines()) == 1, err  # no traceback, nothing else
    line = INTERRUPTED.fullmatch(err.strip())
    assert line, err
    done, not_started = int(line.group(1)), int(line.group(2))
    assert done == len(complete(cfgs, root))
    # two workers: two runs in flight (ended: neither done nor waiting), one more handed out per run done
    assert not_started == max(0, len(cfgs) - 2 - done)
    assert left_running(env) == []
    if how == "kill -TERM":
        return  # resuming is the same after either signal: checked once
    started = len(kernels(env))

    rerun = start_sweep(cfgs, root, env, workers=2)
    out, err = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, err
    assert out.splitlines()[-1] == f"{len(cfgs) - done} run, {done} already complete, 0 failed"
    assert len(complete(cfgs, root)) == len(cfgs)
    assert len(kernels(env)) == started + len(cfgs) - done


def test_a_killed_sweep_leaves_no_worker_or_kernel(tmp_path, env):
    proc = start_sweep(tiny(2), tmp_path / "runs", env, workers=2)
    wait_for_kernel(proc)
    proc.kill()  # the main process only: its workers notice, and end their kernels and themselves
    proc.communicate()
    assert left_running(env) == []


SUBREAPER = "import ctypes; ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER\n"


def test_a_worker_killed_mid_run_takes_its_kernel_along_even_under_a_subreaper(tmp_path, env):
    """kill -9 of a sweep worker while its run is under way: its kernel ends within seconds though nobody
    can shut it down, also where orphans go to a subreaper (tini, systemd --user; here the sweep makes
    itself one), because ipykernel polls for its parent's pid (JPY_PARENT_PID), not for init. The sweep
    redoes the run the dead worker held, and every record is complete."""
    root = tmp_path / "runs"
    cfgs = tiny(2)
    proc = start_sweep(cfgs, root, env, workers=1, preamble=SUBREAPER)
    deadline = time.time() + 180
    while not kernels(env):  # until the first run's first cell has run in the kernel
        assert proc.poll() is None and time.time() < deadline, "no run started"
        time.sleep(0.05)
    [first] = kernels(env)
    kernel, worker = psutil.Process(first["pid"]), psutil.Process(first["parent"])
    assert worker.ppid() == proc.pid  # the kernel is a pool worker's child, the worker the sweep's
    worker.kill()
    deadline, ended = time.time() + 10, False
    while not ended and time.time() < deadline:
        try:
            ended = kernel.status() == psutil.STATUS_ZOMBIE
            if ended:  # unreaped: it became the subreaper's child, as a kernel under tini would
                assert kernel.ppid() == proc.pid
        except psutil.NoSuchProcess:
            ended = True
        time.sleep(0.2)
    assert ended, "the dead worker's kernel is still running 10 s later"

    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err
    assert len(complete(cfgs, root)) == len(cfgs)
    assert left_running(env) == []
    blamed = re.findall(r"a worker died executing (\S+) \(a retry counted\)", err)
    assert blamed == [Path(first["cwd"]).name], err  # one worker died, holding the run it had begun
    executions = [Path(k["cwd"]).name for k in kernels(env)]
    # every run executed once, and the dead worker's run once more (it started there before the kill)
    assert sorted(executions) == sorted([records.run_dir(c, root).name for c in cfgs] + blamed), executions
    assert out.splitlines()[-1] == f"{len(cfgs)} run, 0 already complete, 0 failed"


def test_cldst_run_interrupted(tmp_path, env):
    cfg = tiny(1)[0]
    flags = [f"--{k}={v}" for k, v in TINY.items()]
    proc = subprocess.Popen([sys.executable, "-m", "cldst.cli", "run", *flags], start_new_session=True,
                            env={**env, "CLDST_RUNS": str(tmp_path / "runs")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_kernel(proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip() == "interrupted: 0 done, 0 not started; re-run to resume"
    assert left_running(env) == []
    assert records.record_status(records.run_dir(cfg, tmp_path / "runs")) == "partial"
