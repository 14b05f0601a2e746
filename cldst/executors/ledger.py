"""Which Slurm job holds which run: the ledger each submission keeps in its own folder.

A grid runs for days and a login shell does not stay up. `cldst sweep --executor slurm --detach` submits
and returns; `cldst status ROOT`, and any later `cldst sweep` of the same runs directory, reattach through
the ledgers: a run whose job Slurm still has (pending or running) is followed, never submitted again; a
run whose job ended without a complete record is reported failed (Slurm's state, the job's log), and the
next sweep submits it again.

    <runs>/_submitit/<submission>/jobs.json
    {"submitted": <unix time>, "time": "<the jobs' time limit>",
     "runs": {"<run id>": {"job": "<array id>_<index>", "record": "<experiment>/<run id>", "config": {...}}}}

Job ids restart on a new cluster: a job Slurm reports counts as a ledger's job only if its batch script
lies in that ledger's submission folder.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cldst import records
from cldst.config import Config
from cldst.executors import slurm

log = logging.getLogger("cldst.sweep")

LEDGER = "jobs.json"
SUBMISSIONS = "_submitit"  # under the runs directory: one folder per submission
LIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING")


@dataclass(frozen=True)
class Entry:
    """One run's job in one submission."""
    run_id: str
    job_id: str  # <array id>_<index>
    folder: Path  # the submission's folder
    record: str  # the run's record, relative to the runs directory
    time: str  # the job's time limit, as asked
    submitted: float

    def job(self):
        """submitit's handle on the job, as the submitting sweep had it (results, logs, sacct state)."""
        from submitit.slurm.slurm import SlurmJob

        return SlurmJob(folder=self.folder / "%j", job_id=self.job_id)


def submissions_dir(root) -> Path:
    return Path(root or records.runs_dir()) / SUBMISSIONS


def add(folder: Path, jobs: Iterable, cfgs: Iterable[Config], time_limit: str) -> None:
    """Note these jobs' runs in the submission's ledger. Called after each array is accepted, so that a
    submission cut short (a signal, sbatch refusing the next array) still names every job it queued."""
    path = folder / LEDGER
    data = (json.loads(path.read_text()) if path.exists()
            else {"submitted": time.time(), "time": time_limit, "runs": {}})
    for job, cfg in zip(jobs, cfgs):
        data["runs"][cfg.run_id()] = {"job": str(job.job_id), "record": f"{cfg.experiment}/{cfg.run_id()}",
                                      "config": cfg.to_dict()}
    records.write_json(path, data)


def entries(root) -> dict[str, Entry]:
    """Each run's latest submission under the runs directory: run id -> Entry."""
    found = []
    for path in submissions_dir(root).glob(f"*/{LEDGER}"):
        try:
            data = json.loads(path.read_text())
            found.append((float(data["submitted"]), str(data["time"]), path.parent, dict(data["runs"])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable (%s); its jobs are not followed", path, exc)
    latest: dict[str, Entry] = {}
    for submitted, limit, folder, runs in sorted(found, key=lambda item: item[0]):
        for rid, e in runs.items():
            latest[rid] = Entry(rid, str(e["job"]), folder, str(e["record"]), limit, submitted)
    return latest


def in_queue(chosen: Mapping[str, Entry]) -> dict[str, slurm.Queued]:
    """run id -> Slurm's view of its job, for the runs whose job Slurm still has (pending, running)."""
    table = slurm.queue(e.job_id for e in chosen.values())
    out = {}
    for rid, e in chosen.items():
        q = table.get(e.job_id)
        if q is not None and q.state in LIVE and str(e.folder) in q.command:
            out[rid] = q
    return out
