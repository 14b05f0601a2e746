"""What cldst asks of a Slurm cluster and what it reads back from it.

Resources come from a cluster profile file (TOML, e.g. `cluster.toml` beside the runs) and from
`cldst sweep` options, the options winning; every value is checked here, before anything is submitted.
The cluster is read with Slurm's own commands: `scontrol show config` (MaxArraySize), `squeue` (state and
pending reason of each job), while submitit reads `sacct` for the jobs that ended.
"""

from __future__ import annotations

import getpass
import re
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import tomllib

from cldst.errors import ConfigError

PROFILE_FILE = "cluster.toml"  # a runs directory's own cluster profile, read when no other is named
DEFAULT_TIME = "1-00:00:00"
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default, when the cluster cannot be asked

# Pending reasons that can never clear by waiting, and the option that must change.
IMPOSSIBLE = {
    "PartitionTimeLimit": "--time (over the partition's MaxTime)",
    "PartitionNodeLimit": "--cpus-per-task / --mem (more than the partition's nodes have)",
    "InvalidAccount": "--account",
    "InvalidQOS": "--qos",
    "QOSMaxWallDurationPerJobLimit": "--time (over the QoS's MaxWall)",
    "AssocMaxWallDurationPerJobLimit": "--time (over the account's MaxWall)",
    "BadConstraints": "--mem / --gres / --sbatch (no node has what is asked)",
}

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_GRES = re.compile(r"^[A-Za-z0-9_.:,\-]+$")
_TIME = re.compile(r"^(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"
                   r"|(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)|(?P<mm>\d+)(?::(?P<ss>\d+))?)$")


def time_minutes(value: str) -> int:
    """A Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in whole minutes, rounded up."""
    m = _TIME.match(str(value).strip())
    if not m:
        raise ConfigError(f"time={value!r} is not a Slurm time limit: minutes, HH:MM:SS or D-HH:MM:SS")
    g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
    seconds = (g.get("d", 0) * 86400 + (g.get("dh", 0) + g.get("h", 0)) * 3600
               + (g.get("dm", 0) + g.get("m", 0) + g.get("mm", 0)) * 60 + g.get("ds", 0) + g.get("s", 0) + g.get("ss", 0))
    if seconds <= 0:
        raise ConfigError(f"time={value!r} must be more than zero")
    return -(-seconds // 60)


@dataclass(frozen=True)
class Resources:
    """What each run's job asks Slurm for. cpus_per_task is also the run's thread count."""
    partition: str = ""
    time: str = DEFAULT_TIME
    cpus_per_task: int = 1
    mem: str = ""  # e.g. 8G; none: the partition's default
    gpus_per_task: int = 0  # >0 (or a gpu gres): runs use device=cuda
    gres: str = ""  # e.g. gpu:a100:1
    account: str = ""
    qos: str = ""
    array_parallelism: int = 0  # most array tasks running at once; 0: the sweep's --workers
    extra: tuple[str, ...] = field(default_factory=tuple)  # free-form sbatch options, e.g. --constraint=a100

    @classmethod
    def from_dict(cls, values: dict, where: str = "slurm") -> Resources:
        """Checked values from a dict (the caller's is not changed); `where` names it in errors."""
        known = {f.name: f for f in fields(cls)}
        out = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"{where}: unknown option {key!r}; allowed: {', '.join(known)}")
            if value is None or value == "":
                continue
            out[name] = _check(name, value, where)
        return cls(**out)

    def merged(self, overrides: dict) -> Resources:
        """These resources with `overrides` (command-line options; None: not given) taking precedence."""
        given = {k: v for k, v in overrides.items() if v not in (None, "", ())}
        return Resources.from_dict({**asdict(self), **given}, "option")

    @property
    def uses_gpus(self) -> bool:
        return self.gpus_per_task > 0 or "gpu" in self.gres

    def submitit_parameters(self, workers: int) -> dict:
        """The parameters for submitit's AutoExecutor.update_parameters (slurm)."""
        minutes = time_minutes(self.time)
        # submitit asks Slurm for a warning signal (SIGUSR2) before the limit. Slurm sends it up to 30 s (its
        # periodic check) earlier than asked, and a job still starting (importing under load, before
        # submitit's handler is in place) dies of it, which Slurm calls FAILED, not a time limit. So the
        # signal never comes in a job's first 90 s: 90 s early on long limits, none (@0) on limits of 3
        # minutes or less, which Slurm ends itself (state TIMEOUT).
        params = {"timeout_min": minutes, "slurm_signal_delay_s": min(90, max(0, minutes * 60 - 210)),
                  "slurm_cpus_per_task": self.cpus_per_task, "slurm_array_parallelism": self.array_parallelism or workers}
        for name in ("partition", "mem", "gres", "account", "qos"):
            if getattr(self, name):
                params[f"slurm_{name}"] = getattr(self, name)
        if self.gpus_per_task:
            params["slurm_gpus_per_task"] = self.gpus_per_task
        if self.extra:
            params["slurm_additional_parameters"] = dict(_sbatch_option(o) for o in self.extra)
        return params


def _check(name: str, value, where: str):
    def fail(allowed: str):
        return ConfigError(f"{where}: {name}={value!r} {allowed}")

    if name in ("cpus_per_task", "gpus_per_task", "array_parallelism"):
        low = 1 if name == "cpus_per_task" else 0
        if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < low:
            raise fail(f"must be a whole number >= {low}")
        return int(value)
    if name == "time":
        time_minutes(value)
        return str(value).strip()
    if name == "extra":
        items = [value] if isinstance(value, str) else list(value)
        for item in items:
            _sbatch_option(item, where)
        return tuple(items)
    value = str(value).strip()
    pattern, allowed = {"mem": (_MEM, "must be a size such as 8G or 500M"),
                        "gres": (_GRES, "must be a Slurm gres such as gpu:1 or gpu:a100:2")}.get(
        name, (_NAME, "must be a Slurm name (letters, digits, _ . -)"))
    if not pattern.match(value):
        raise fail(allowed)
    return value


def _sbatch_option(option: str, where: str = "extra") -> tuple[str, object]:
    """'--key=value' -> ('key', 'value'); '--flag' -> ('flag', True)."""
    text = str(option).strip()
    m = re.match(r"^--([A-Za-z][A-Za-z0-9\-]*)(?:=(.+))?$", text)
    if not m or "\n" in text:
        raise ConfigError(f"{where}: sbatch option {option!r} must read --name or --name=value")
    return m.group(1), (m.group(2) if m.group(2) is not None else True)


def load_profile(path: str | Path) -> Resources:
    """A cluster profile file: TOML whose keys are Resources' fields, e.g. partition = "gpu"."""
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cluster profile {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cluster profile {path}: not TOML ({exc})") from None
    return Resources.from_dict(values, str(path))


# ---------------------------------------------------------------------- reading the cluster
def _slurm(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout


def max_array_size() -> int:
    """The cluster's MaxArraySize (array indices run 0 .. MaxArraySize-1)."""
    try:
        m = re.search(r"^MaxArraySize\s*=\s*(\d+)", _slurm("scontrol", "show", "config"), re.MULTILINE)
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_MAX_ARRAY_SIZE
    return int(m.group(1)) if m else DEFAULT_MAX_ARRAY_SIZE


class Queued(NamedTuple):
    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str  # why it waits (Priority, Resources, PartitionTimeLimit, ...), "None" when running
    command: str  # the batch script, in its submission's folder: says which submission the job is of


def queue(job_ids) -> dict[str, Queued]:
    """job id (array task: ARRAY_TASK) -> Queued, for the given jobs still known to squeue. This user's
    whole queue is read (`squeue -j` with one id Slurm has forgotten fails for all of them)."""
    wanted = {str(j) for j in job_ids}
    if not wanted:
        return {}
    try:
        out = _slurm("squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T|%r|%o")
    except (OSError, subprocess.SubprocessError):
        return {}
    table = {}
    for line in out.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4 and parts[0] in wanted:
            table[parts[0]] = Queued(*parts[1:])
    return table


def resolve(profile: str | Path | None, runs_dir: Path, options: dict) -> Resources:
    """Resources for a sweep: the named profile file, else the runs directory's own cluster.toml if it has
    one, else Slurm's defaults as above; command-line `options` (None: not given) over any of them."""
    if profile is None and (runs_dir / PROFILE_FILE).is_file():
        profile = runs_dir / PROFILE_FILE
    base = load_profile(profile) if profile is not None else Resources()
    return base.merged(options)
