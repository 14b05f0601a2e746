"""Ways of executing a sweep's runs, one module each; a sweep plans, then hands its runs to one of them.

  local           worker processes on this machine (executors.local)
  submitit-local  one submitit job per run, as local subprocesses (executors.cluster)
  slurm           one submitit job per run, as Slurm job arrays (executors.cluster, executors.slurm)

Every executor writes the same records: a run's threads are set from what it was given (cores / workers
locally, SLURM_CPUS_PER_TASK on a cluster), never left to torch's default of every core.
"""

from __future__ import annotations

from collections.abc import Sequence

from cldst.executors.base import Batch
from cldst.executors.slurm import Resources

EXECUTORS = ("local", "submitit-local", "slurm")


def run(name: str, batch: Batch, *, workers: int, retries: int, gpus: Sequence[str], resources: Resources,
        detach: bool = False) -> None:
    if name == "local":
        from cldst.executors import local

        local.run(batch, workers=workers, retries=retries, gpus=gpus)
    else:
        from cldst.executors import cluster

        cluster.run(batch, cluster="local" if name == "submitit-local" else "slurm", resources=resources,
                    workers=workers, detach=detach)
