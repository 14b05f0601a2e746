"""The benchmarks' job pool: independent runs as child processes, a few at a time.

A job whose result file exists is skipped, so a killed benchmark resumes where it stopped; a job that
fails stops the pool with one line naming its log (or its result file). Each child gets one thread per
process (OMP/MKL) unless the caller's environment says otherwise, so `workers` children share the cores.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    cmd: list[str]  # the child's command line; it writes `result` when it succeeds
    result: Path
    cwd: Path | None = None  # where it runs (default: here)
    log: Path | None = None  # its stdout and stderr (default: inherited)


def one_thread_env(threads: int = 1) -> dict[str, str]:
    """This environment with `threads` OpenMP/MKL threads per child."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_jobs(jobs: Iterable[Job], workers: int = 2, env: dict[str, str] | None = None,
             on_done: Callable[[Path, float], None] | None = None, poll_s: float = 0.3) -> int:
    """Run the jobs whose result does not exist yet, `workers` at a time; call on_done(result, wall seconds)
    as each ends. Returns how many ran; raises SystemExit at the first failure."""
    pending = [j for j in jobs if not j.result.exists()]
    env = one_thread_env() if env is None else env
    running: list[tuple[subprocess.Popen, Job, float, object]] = []
    ran = 0
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop(0)
                if job.cwd is not None:
                    job.cwd.mkdir(parents=True, exist_ok=True)
                log = open(job.log, "w") if job.log is not None else None  # noqa: SIM115 (closed when it ends)
                proc = subprocess.Popen(job.cmd, cwd=job.cwd, env=env, stdout=log,
                                        stderr=subprocess.STDOUT if log else None)
                running.append((proc, job, time.perf_counter(), log))
            for entry in list(running):
                proc, job, started, log = entry
                if proc.poll() is None:
                    continue
                running.remove(entry)
                if log is not None:
                    log.close()
                if proc.returncode or not job.result.exists():
                    raise SystemExit(f"{job.result.name} failed (exit {proc.returncode})"
                                     + (f"; see {job.log}" if job.log else ""))
                ran += 1
                if on_done is not None:
                    on_done(job.result, time.perf_counter() - started)
            time.sleep(poll_s)
    finally:  # a failure or Ctrl-C ends the other children too
        for proc, _, _, log in running:
            proc.kill()
            proc.wait()
            if log is not None:
                log.close()
    return ran
