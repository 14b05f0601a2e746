"""What `cldst run` and `cldst sweep` check before anything runs: one line each, in a fraction of a second.

Config.validate() checks each run's own values; here are the checks of the sweep around them (its
options, the runs directory, the device). Nothing here imports torch or pandas, except the CUDA check,
and only when a run asks for device='cuda'. cldst.sweep.run_sweep calls the same functions, so a sweep
started from Python is held to the same rules.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cldst.errors import ConfigError, check_choice, check_positive_int
from cldst.executors import EXECUTORS  # torch-free
from cldst.paths import runs_dir


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); anything else is a ConfigError naming --seeds."""
    items = [s.strip() for s in text.split(",")]
    if not all(s.lstrip("-").isdigit() for s in items):
        raise ConfigError(f"--seeds {text!r} must be comma-separated integers, e.g. 0,1,2")
    return tuple(int(s) for s in items)


def check_sweep_options(workers: int, executor: str, gpus: Sequence[str]) -> tuple[str, ...]:
    """The sweep's own options; returns the GPU indices stripped."""
    check_choice("executor", executor, EXECUTORS)
    check_positive_int("workers", workers)
    return check_gpus(gpus, executor)


def check_gpus(gpus: Sequence[str], executor: str = "local") -> tuple[str, ...]:
    """The GPU indices a local sweep spreads its workers over, stripped (ConfigError otherwise)."""
    gpus = tuple(str(g).strip() for g in gpus)
    if any(not g.isdigit() for g in gpus):
        raise ConfigError(f"gpus={','.join(gpus)!r} must be comma-separated GPU indices, e.g. 0,1")
    if gpus and executor != "local":
        raise ConfigError(f"gpus is for executor='local'; with executor={executor!r} the scheduler assigns GPUs")
    return gpus


def check_runs_dir(root: str | Path | None = None) -> None:
    """The runs directory (or its nearest existing parent, which a run would create it in) is a folder
    this process can write into. Tried by creating a temporary file, which also answers for root and
    for read-only filesystems, where permission bits say nothing; nothing is left behind."""
    folder = Path(root) if root else runs_dir()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ConfigError(f"runs directory {folder}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(f"runs directory {folder} is not writable ({exc.strerror}: {existing})") from None


def check_devices(cfgs: Sequence, executor: str = "local") -> None:
    """device='cuda' needs CUDA here (a Slurm job's node is not this machine: not checked then)."""
    if executor == "slurm" or not any(cfg.device == "cuda" for cfg in cfgs):
        return
    if not _may_have_gpu():
        raise ConfigError(f"device='cuda' but this machine has no usable CUDA device (no GPU driver: {_GPU_NODES} "
                          "absent); use device 'auto' or 'cpu'")
    import torch  # only now: whether CUDA really works needs torch (seconds to import)

    if not torch.cuda.is_available():
        raise ConfigError("device='cuda' but this machine has no usable CUDA device "
                          "(torch.cuda.is_available() is False); use device 'auto' or 'cpu'")


# A Linux machine without these device nodes has no NVIDIA (or ROCm) GPU: answered without importing torch.
_GPU_NODES = "/dev/nvidiactl, /dev/kfd"


def _may_have_gpu() -> bool:
    if not sys.platform.startswith("linux"):
        return True  # no cheap test elsewhere: torch decides
    return any(os.path.exists(node) for node in _GPU_NODES.split(", "))


def check_all(cfgs: Sequence, *, root: str | Path | None = None, workers: int = 1, executor: str = "local",
              gpus: Sequence[str] = ()) -> tuple[str, ...]:
    """Every check above; returns the GPU indices stripped."""
    gpus = check_sweep_options(workers, executor, gpus)
    check_runs_dir(root)
    check_devices(cfgs, executor)
    return gpus
