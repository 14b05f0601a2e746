"""What every executor shares: the outcomes of a run, the failures it reports, the sweep's report, and
the batch an executor is handed (the runs to execute and where their outcomes go)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cldst.config import Config
from cldst.errors import one_line

log = logging.getLogger("cldst.sweep")

DONE, COMPLETE, HELD = "done", "complete", "held"  # what a run's job did (sweep.execute_run)


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
    interrupted: list[str] = field(default_factory=list)  # executing when the sweep stopped (left partial)
    queued: list[str] = field(default_factory=list)  # left to Slurm (--detach, a lost shell): `cldst status`
    disk_full: str = ""  # the failure that stopped the sweep, if a full disk did

    def summary(self) -> str:
        parts = [f"{len(self.done)} run", f"{len(self.skipped)} already complete"]
        if self.held:
            parts.append(f"{len(self.held)} held by another process")
        parts.append(f"{len(self.failed)} failed")
        if self.interrupted:
            parts.append(f"{len(self.interrupted)} interrupted")
        if self.not_started:
            parts.append(f"{len(self.not_started)} not started")
        if self.queued:
            parts.append(f"{len(self.queued)} queued on Slurm (`cldst status` follows them)")
        return ", ".join(parts)

    def settle(self, rid: str, outcome: str) -> None:
        {DONE: self.done, COMPLETE: self.skipped, HELD: self.held}[outcome].append(rid)
        if outcome == HELD:
            log.info("%s is held by another process (being executed there); not touched", rid)

    def fail(self, rid: str, exc: BaseException | str) -> None:
        # every reason starts with its run id (RunFailed's already do)
        if isinstance(exc, str):
            self.failed[rid] = f"{rid}: {exc}"
        else:
            self.failed[rid] = str(exc) if isinstance(exc, RunFailed) else f"{rid}: {one_line(exc)}"
        log.error("%s", self.failed[rid])
        if isinstance(exc, DiskFull) and not self.disk_full:
            self.disk_full = self.failed[rid]


@dataclass
class Batch:
    """The runs an executor executes and what it needs to do so.

    job(cfg_dict, root, force) executes one run and returns an outcome (sweep.execute_run); it is
    passed in, not imported, so that a sweep's caller (a test) can replace it. `stop()` is true once
    the sweep must start nothing more (a signal); `signum` says which signal, 0 if none."""
    todo: Sequence[Config]
    root: str | None
    force: bool
    job: Callable
    report: SweepReport
    bar: object  # tqdm
    signals: object  # sweep._Signals: .signum

    @property
    def signum(self) -> int:
        return self.signals.signum

    def stop(self) -> bool:
        return bool(self.signals.signum or self.report.disk_full)
