"""The submitit executors: each run a job, on a Slurm cluster (`slurm`) or as local subprocesses
(`submitit-local`, what the tests without a cluster use).

A submission has a folder of its own (`<runs>/_submitit/<time>-<pid>/`): submitit names a job's files by
job id alone, and ids restart on a new cluster, so a shared folder would hand a new job an old result.
Arrays are split under the cluster's MaxArraySize. While waiting, the bar shows how many runs are
pending (with Slurm's reason), running, done and failed; a reason that can never clear cancels the
submission and stops with one line naming the option to change.

On Slurm, each submission keeps a ledger of which job holds which run (executors.ledger): a sweep can
detach (submit and return) or lose its shell (SIGHUP cancels nothing), and `cldst status` or the next
sweep of the runs directory reattaches (`states`, `_reattach`).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cldst import records
from cldst.errors import CldstError, ConfigError, one_line
from cldst.executors import ledger, slurm
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


def submission_folder(root, prefix: str = "") -> Path:
    """A folder no other submission uses (see the module docstring)."""
    base = Path(root or records.runs_dir()) / "_submitit"
    stamp = prefix + time.strftime("%Y%m%d-%H%M%S")
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


def run(batch: Batch, *, cluster: str, resources: slurm.Resources, workers: int, detach: bool = False) -> None:
    """Submit the batch's runs and follow their jobs to the end (detach: submit and return). On Slurm, a
    run an earlier submission still has queued or running is followed, not submitted again."""
    report = batch.report
    todo = list(batch.todo)
    pending: dict = {}  # job -> (config, its time limit)
    if cluster == "slurm":
        pending = _reattach(todo, batch.root)
        if pending:
            log.info("%d run(s) already queued or running from an earlier submission: following them", len(pending))
            followed = {cfg.run_id() for cfg, _ in pending.values()}
            todo = [c for c in todo if c.run_id() not in followed]
    if todo:
        pending.update(_submit(todo, batch, cluster, resources, workers))
    if detach:
        report.queued = [cfg.run_id() for cfg, _ in pending.values()]
        return
    _follow(pending, batch, cluster)


def _reattach(todo, root) -> dict:
    """job -> (config, time limit) for the runs of `todo` whose job from an earlier submission Slurm still has."""
    latest = ledger.entries(root)
    mine = {c.run_id(): latest[c.run_id()] for c in todo if c.run_id() in latest}
    live = ledger.in_queue(mine)
    return {mine[c.run_id()].job(): (c, mine[c.run_id()].time) for c in todo if c.run_id() in live}


def _submit(todo, batch: Batch, cluster: str, resources: slurm.Resources, workers: int) -> dict:
    import submitit

    folder = submission_folder(batch.root)
    ex = make_executor(folder, cluster, resources, workers)
    threads = resources.cpus_per_task if cluster == "slurm" else threads_per_worker(workers)
    dicts = [{**c.to_dict(), "device": "cuda"} if resources.uses_gpus else c.to_dict() for c in todo]
    size = slurm.max_array_size() if cluster == "slurm" else len(todo)
    jobs = []
    try:
        for start in range(0, len(todo), size):  # one array per MaxArraySize runs
            part = dicts[start:start + size]
            array = ex.map_array(in_allocation, [batch.job] * len(part), [threads] * len(part), part,
                                 [batch.root] * len(part), [batch.force] * len(part))
            jobs += array
            if cluster == "slurm":
                ledger.add(folder, array, todo[start:start + size], resources.time)
    except submitit.core.utils.FailedJobError as exc:  # sbatch refused: a bad partition, account, option
        _cancel(jobs)
        raise _refused(exc) from None
    log.info("submitted %d run(s) as %d job array(s) from %s", len(jobs), -(-len(todo) // size), folder)
    return {job: (cfg, resources.time) for job, cfg in zip(jobs, todo)}


def _follow(pending: dict, batch: Batch, cluster: str) -> None:
    report, bar = batch.report, batch.bar
    last_status, shown = 0.0, ""
    while pending:
        if batch.signum == signal.SIGHUP and cluster == "slurm":  # the shell is gone: the jobs go on
            report.queued = [cfg.run_id() for cfg, _ in pending.values()]
            return
        if batch.signum:
            _interrupt(pending, report, cluster)
            return
        for job in [j for j in pending if _ended(j, cluster)]:
            cfg, limit = pending.pop(job)
            _settle(job, cfg.run_id(), report, limit)
            bar.update(1)
        if cluster == "slurm" and pending and time.monotonic() - last_status > STATUS_EVERY:
            last_status = time.monotonic()
            shown = _show_status(pending, report, bar, shown)
        time.sleep(POLL)


def outcome(job, limit: str) -> tuple[str, str, bool]:
    """What an ended job did: ("ok", execute_run's outcome, False) or ("failed", one line, disk full?)."""
    try:
        result = job.result()
    except Exception as exc:  # the job ended without a result: cancelled, killed, out of memory, node failure
        state = _state(job)
        why = f"Slurm ended job {job.job_id} without a result (state {state}); log {job.paths.stderr}"
        hint = _hint(state, str(exc), limit)
        if hint:
            why += f"; {hint}"
        elif state in ("", "UNKNOWN", "COMPLETED"):
            why += f" ({one_line(exc)})"
        return "failed", why, False
    if result[0] == "ok":
        return "ok", result[1], False
    _, line, disk_full = result
    # The run's own failure line, written before Slurm's SIGKILL: the state, final by now, may say why. At
    # the limit Slurm's SIGTERM kills the run's kernel (TIMEOUT); a kernel over --mem is killed by the OOM
    # killer while the job lives on (OUT_OF_MEMORY); submitit's warning signal stops the run ("timed-out").
    hint = _hint(_state(job), line, limit)
    if hint:
        line += f"; {hint}; log {job.paths.stderr}"
    return "failed", line, disk_full


def _hint(state: str, said: str, limit: str) -> str:
    """What the user can do about a job Slurm ended, from its final state (or submitit's "timed-out")."""
    if state.startswith("TIMEOUT") or "timed-out" in said:
        return f"it hit the time limit: raise --time (now {limit})"
    if state.startswith("OUT_OF_MEMORY"):
        return "it ran out of memory: raise --mem"
    if state.startswith("NODE_FAIL"):
        return "its node failed: sweep again to rerun it"
    return ""


_LIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING")


def _ended(job, cluster: str) -> bool:
    """The job is over and can be settled. On Slurm, a job that failed is settled only once Slurm's
    state is final: at the time limit Slurm sends SIGTERM (the run's kernel dies, the job writes that
    failure) and only later calls the job TIMEOUT, which is what the user must be told."""
    if not job.done():
        return False
    if cluster != "slurm":
        return True
    try:
        if job.result()[0] == "ok":
            return True
    except Exception:  # no result at all: done() already waited for Slurm's final state
        return True
    return not _state(job).startswith(_LIVE)


def _settle(job, rid: str, report, limit: str) -> None:
    kind, value, disk_full = outcome(job, limit)
    if kind == "ok":
        report.settle(rid, value)
    elif value.startswith(f"{rid}: "):  # the run's own failure line (RunFailed)
        report.fail(rid, (DiskFull if disk_full else RunFailed)(value))
    else:
        report.fail(rid, value)


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
    _stop_if_impossible(waiting, list(pending))
    status = status_text(waiting, running, len(report.done) + len(report.skipped), len(report.failed))
    bar.set_postfix_str(status)
    if status != shown:  # the log says each change once (the bar shows it as it is)
        log.info("slurm: %s", status)
    return status


def status_text(waiting: list[str], running: int, done: int, failed: int) -> str:
    """"pending 3 (Priority 2, Resources 1), running 2, done 5, failed 0": `waiting` holds each pending
    job's reason."""
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(Counter(waiting).items()))
    return (f"pending {len(waiting)}" + (f" ({reasons})" if reasons else "")
            + f", running {running}, done {done}, failed {failed}")


@dataclass(frozen=True)
class RunState:
    run_id: str
    state: str  # done | pending | running | failed
    detail: str = ""  # pending: Slurm's reason; running elsewhere: who; failed: why, with the job's log


def states(root) -> list[RunState]:
    """Where each run submitted to Slurm from this runs directory stands (its latest submission), read
    from its record, Slurm's queue and, for a job that ended without a complete record, its result or
    Slurm's accounting (`cldst status`)."""
    root = Path(root or records.runs_dir())
    latest = ledger.entries(root)
    live = ledger.in_queue(latest)
    out = []
    for rid, entry in sorted(latest.items()):
        path = root / entry.record
        if records.record_status(path) == records.COMPLETE:
            out.append(RunState(rid, "done"))
        elif rid in live:
            q = live[rid]
            out.append(RunState(rid, "pending", q.reason) if q.state == "PENDING" else RunState(rid, "running"))
        elif _held(path):
            out.append(RunState(rid, "running", "held by another process"))
        else:
            kind, value, _ = outcome(entry.job(), entry.time)
            why = value if kind == "failed" else (f"job {entry.job_id} ended ({value}) but its record is not "
                                                   f"complete; log {entry.job().paths.stderr}")
            out.append(RunState(rid, "failed", why if why.startswith(f"{rid}: ") else f"{rid}: {why}"))
    return out


def _held(path: Path) -> bool:
    lock = records.try_lock(path)
    if lock is None:
        return True
    lock.release()
    return False


# ---------------------------------------------------------------------- the preflight as a job (issue 22)
PREFLIGHT_MINUTES = 30  # the preflight job's time limit at most (the runs' own, if shorter)


def preflight_job(named, resources: slurm.Resources, options: dict, root, out=print):
    """The preflight (cldst.preflight.run with `options`) as one short Slurm job on the kind of node the
    runs ask for (their partition, GPUs, memory, CPUs, account, QoS, sbatch options), so it checks the
    device, data and threads the runs will have, not this login machine. Prints the job's lines here and
    returns its Report; Ctrl-C cancels the job. A job that ends without a report stops the sweep in one line."""
    import dataclasses

    import submitit

    from cldst import preflight

    minutes = min(slurm.time_minutes(resources.time), PREFLIGHT_MINUTES)
    short = dataclasses.replace(resources, time=str(minutes), array_parallelism=1)
    folder = submission_folder(root, prefix="preflight-")
    try:
        job = make_executor(folder, "slurm", short, workers=1).submit(
            preflight.run_collected, list(named), {**options, "threads": resources.cpus_per_task})
    except submitit.core.utils.FailedJobError as exc:
        raise _refused(exc) from None
    out(f"preflight: as Slurm job {job.job_id} on the runs' kind of node (time limit {minutes} min; "
        f"log {job.paths.stderr})")
    last_status = 0.0
    try:
        while not job.done():
            if time.monotonic() - last_status > STATUS_EVERY:
                last_status = time.monotonic()
                queued = slurm.queue([job.job_id]).get(job.job_id)
                _stop_if_impossible([queued.reason] if queued and queued.state == "PENDING" else [], [job], "preflight job")
            time.sleep(POLL)
        report, lines = job.result()
    except KeyboardInterrupt:
        _cancel([job])
        raise
    except ConfigError:
        raise
    except Exception:  # outcome() asks the job again: why it ended without a result
        why = outcome(job, str(minutes))[1]
        raise CldstError(f"the preflight job did not finish: {why}; rerun, or sweep with --skip-device-check") from None
    for line in lines:
        out(line)
    return report


def _interrupt(pending: dict, report, cluster: str) -> None:
    """Cancel what was submitted; runs that were executing are interrupted (left partial, redone by
    the next sweep), the others were not started. Only the scheduler knows which had started."""
    table = slurm.queue(j.job_id for j in pending) if cluster == "slurm" else {}
    for job, (cfg, _) in pending.items():
        state = table.get(job.job_id, ("",))[0] if cluster == "slurm" else _state(job)
        (report.interrupted if state in ("RUNNING", "COMPLETING") else report.not_started).append(cfg.run_id())
    _cancel(list(pending))


def _cancel(jobs) -> None:
    for job in jobs:
        job.cancel(check=False)


def _refused(exc: BaseException) -> ConfigError:
    """sbatch's refusal, in one line naming the option to change."""
    line = _last_line(exc)
    named = [o for word, o in _SBATCH_WORDS.items() if word in line.lower()]
    return ConfigError(f"sbatch refused the jobs ({line}); change {' / '.join(dict.fromkeys(named)) or _ANY}")


def _stop_if_impossible(reasons, jobs: list, what: str = "run(s)") -> None:
    """Cancel `jobs` and stop in one line if Slurm says a pending job can never start (`reasons`)."""
    for reason in reasons:
        if reason in slurm.IMPOSSIBLE:
            _cancel(jobs)
            raise ConfigError(f"Slurm will never start these jobs (pending reason {reason}): change "
                              f"{slurm.IMPOSSIBLE[reason]}; cancelled the {len(jobs)} {what} still queued")


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
