"""The submitit executors: each run a job, on a Slurm cluster (`slurm`) or as local subprocesses
(`submitit-local`, what the tests without a cluster use).

A submission has a folder of its own (`<runs>/_submitit/<time>-<pid>/`): submitit names a job's files by
job id alone, and ids restart on a new cluster, so a shared folder would hand a new job an old result.
Arrays are split under the cluster's MaxArraySize. While waiting, the bar shows how many runs are
pending (with Slurm's reason), running, done and failed; a reason that can never clear cancels the
submission and stops with one line naming the option to change.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from cldst import records
from cldst.errors import ConfigError, one_line
from cldst.executors import slurm
from cldst.executors.base import Batch, DiskFull, RunFailed, log
from cldst.executors.local import set_threads, threads_per_worker

POLL = 1.0  # seconds between looks at the jobs
STATUS_EVERY = 5.0  # seconds between squeue calls for the status line
# words in sbatch's refusal -> the option to change
_SBATCH_WORDS = {"partition": "--partition", "account": "--account", "qos": "--qos", "gres": "--gres",
                 "gpu": "--gpus-per-task", "memory": "--mem", "time limit": "--time", "cpu": "--cpus-per-task"}
_ANY = "--partition, --account, --qos, --gres or --sbatch"


def in_allocation(job, threads: int, cfg: dict, root, force: bool):
    """What a cluster job runs: the run with as many threads as the job was given (SLURM_CPUS_PER_TASK,
    else `threads`), so its record is the one the local executor writes. Returns ("ok", outcome) or
    ("failed", one line, disk full?): the line survives as it is (submitit would wrap an exception)."""
    from cldst import notebook

    set_threads(int(os.environ.get("SLURM_CPUS_PER_TASK") or threads))
    try:
        return ("ok", job(cfg, root, force=force))
    except Exception as exc:
        return ("failed", str(exc) if isinstance(exc, RunFailed) else one_line(exc), isinstance(exc, DiskFull))
    finally:
        notebook.shutdown_kept_kernel()  # the job's process ends now: its kernel with it


def submission_folder(root) -> Path:
    """A folder no other submission uses (see the module docstring)."""
    base = Path(root or records.runs_dir()) / "_submitit"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = base / (f"{stamp}-{os.getpid()}" + (f"-{n}" if n else ""))
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free submission folder under {base}")


def make_executor(folder: Path, cluster: str, resources: slurm.Resources, workers: int):
    import submitit

    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    if cluster == "slurm":
        ex.update_parameters(**resources.submitit_parameters(workers))
    else:
        ex.update_parameters(timeout_min=slurm.time_minutes(resources.time))
    return ex


def run(batch: Batch, *, cluster: str, resources: slurm.Resources, workers: int) -> None:
    import submitit

    report, bar = batch.report, batch.bar
    folder = submission_folder(batch.root)
    ex = make_executor(folder, cluster, resources, workers)
    threads = resources.cpus_per_task if cluster == "slurm" else threads_per_worker(workers)
    todo = list(batch.todo)
    dicts = [{**c.to_dict(), "device": "cuda"} if resources.uses_gpus else c.to_dict() for c in todo]
    size = slurm.max_array_size() if cluster == "slurm" else len(todo)
    jobs = []
    try:
        for start in range(0, len(todo), size):  # one array per MaxArraySize runs
            part = dicts[start:start + size]
            jobs += ex.map_array(in_allocation, [batch.job] * len(part), [threads] * len(part), part,
                                 [batch.root] * len(part), [batch.force] * len(part))
    except submitit.core.utils.FailedJobError as exc:  # sbatch refused: a bad partition, account, option
        _cancel(jobs)
        line = _last_line(exc)
        named = [o for word, o in _SBATCH_WORDS.items() if word in line.lower()]
        raise ConfigError(f"sbatch refused the jobs ({line}); change {' / '.join(dict.fromkeys(named)) or _ANY}") from None
    log.info("submitted %d run(s) as %d job array(s) from %s", len(jobs), -(-len(todo) // size), folder)
    pending = dict(zip(jobs, todo))
    last_status, shown = 0.0, ""
    while pending:
        if batch.signum:
            _interrupt(pending, report, cluster)
            return
        for job in [j for j in pending if j.done()]:
            rid = pending.pop(job).run_id()
            _settle(job, rid, report, resources)
            bar.update(1)
        if cluster == "slurm" and pending and time.monotonic() - last_status > STATUS_EVERY:
            last_status = time.monotonic()
            shown = _show_status(pending, report, bar, shown)
        time.sleep(POLL)


def _settle(job, rid: str, report, resources: slurm.Resources) -> None:
    try:
        result = job.result()
    except Exception as exc:  # the job ended without a result: cancelled, killed, out of memory, node failure
        state = _state(job)
        why = f"Slurm ended job {job.job_id} without a result (state {state}); log {job.paths.stderr}"
        if state.startswith("TIMEOUT"):
            why += f"; it hit the time limit: raise --time (now {resources.time})"
        elif state in ("", "UNKNOWN", "COMPLETED"):
            why += f" ({one_line(exc)})"
        report.fail(rid, why)
        return
    if result[0] == "ok":
        report.settle(rid, result[1])
        return
    _, line, disk_full = result
    if "timed-out" in line:  # submitit's signal before the time limit stopped the run
        line += f"; it hit the time limit: raise --time (now {resources.time}); log {job.paths.stderr}"
    report.fail(rid, (DiskFull if disk_full else RunFailed)(line))


def _state(job) -> str:
    try:
        return str(job.state)
    except Exception:  # sacct unreachable
        return "UNKNOWN"


def _show_status(pending: dict, report, bar, shown: str) -> str:
    """Counts of the runs in flight by state, with the reasons jobs wait; stops on an impossible reason."""
    table = slurm.queue(j.job_id for j in pending)
    running = sum(1 for j in pending if table.get(j.job_id, ("",))[0] in ("RUNNING", "COMPLETING"))
    waiting = [table[j.job_id][1] for j in pending if table.get(j.job_id, ("",))[0] == "PENDING"]
    for reason in waiting:
        if reason in slurm.IMPOSSIBLE:
            _cancel(list(pending))
            raise ConfigError(f"Slurm will never start these jobs (pending reason {reason}): change "
                              f"{slurm.IMPOSSIBLE[reason]}; cancelled the {len(pending)} run(s) still queued")
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(Counter(waiting).items()))
    status = (f"pending {len(waiting)}" + (f" ({reasons})" if reasons else "")
              + f", running {running}, done {len(report.done) + len(report.skipped)}, failed {len(report.failed)}")
    bar.set_postfix_str(status)
    if status != shown:  # the log says each change once (the bar shows it as it is)
        log.info("slurm: %s", status)
    return status


def _interrupt(pending: dict, report, cluster: str) -> None:
    """Cancel what was submitted; runs that were executing are interrupted (left partial, redone by
    the next sweep), the others were not started. Only the scheduler knows which had started."""
    table = slurm.queue(j.job_id for j in pending) if cluster == "slurm" else {}
    for job, cfg in pending.items():
        state = table.get(job.job_id, ("",))[0] if cluster == "slurm" else _state(job)
        (report.interrupted if state in ("RUNNING", "COMPLETING") else report.not_started).append(cfg.run_id())
    _cancel(list(pending))


def _cancel(jobs) -> None:
    for job in jobs:
        job.cancel(check=False)


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
