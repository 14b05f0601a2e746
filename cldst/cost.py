"""What a grid of runs costs: the one home of the cost model (`cldst preflight`, benchmarks/speed.py).

A run's device time is four parts, each a count that follows from its Config (the loop of cldst.train)
times a rate measured on the target device for the run's shape (network x input shape x device):
    training    optimizer steps x seconds per step (+ bn="task": one forward pass per task over its
                training images to re-estimate its BatchNorm, at the evaluation rate)
    topology    topology updates x seconds per update of the run's growth criterion
    evaluation  test images evaluated (Trainer.run's evaluations, `evaluations`) x seconds per image
    overhead    per run: notebook kernel, imports, data load, record
Nothing here measures: the rates come in (`Rates`), the counts and the sums go out.

Disk: a record is its masks (bit-packed, measured per task), the executed notebook and the small files;
`record_bytes` adds them with sizes fitted to records of this project (tests/test_preflight.py checks
the estimate against what a sweep wrote).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cldst.config import Config
from cldst.data.batches import batch_bounds
from cldst.sparse.schedule import GrowthSchedule, is_update_step

# Images per class of each dataset (train, test): all three have 500 + 100 (miniImageNet: cldst's split).
IMAGES_PER_CLASS = {"synth100": (500, 100), "cifar100": (500, 100), "miniimagenet": (500, 100)}
NATIVE_SIZE = 32  # px of every dataset as loaded when image_size is 0 (miniImageNet decoded at 32)

# Bytes of a record besides its masks, fitted to smoke and cpu records (5-20 tasks): the executed
# notebook is mostly its figures (a fixed part) and per-task output lines; metrics.json grows with the
# T x T matrices, capacity.csv with tasks x layers, updates.csv with the updates.
RECORD_FIXED_BYTES = 80_000  # run.ipynb's figures and code, config.json, environment.json
RECORD_TASK_BYTES = 600  # per task: notebook and progress.log lines, per-task lists of metrics.json
RECORD_TASK2_BYTES = 45  # per task pair: acc_matrix and fwt_matrix entries
RECORD_TASK_LAYER_BYTES = 65  # per task and maskable layer: a capacity.csv row
RECORD_UPDATE_BYTES = 75  # per topology update: an updates.csv row


@dataclass(frozen=True)
class Rates:
    """What one shape costs on one device, measured (cldst.preflight, benchmarks/speed.py)."""

    step_s: float  # one training step at the run's batch size: forward, backward, sparsity.step
    eval_image_s: float  # evaluation, seconds per test image
    update_s: dict[str, float] = field(default_factory=dict)  # one topology update, by growth criterion
    overhead_s: float = 0.0  # per run: kernel, imports, data load, record
    mask_task_bytes: int = 0  # one task's mask in masks.pt (bit-packed)
    layers: int = 0  # maskable layers (rows per task of capacity.csv)


@dataclass
class RunCost:
    train_s: float = 0.0
    topology_s: float = 0.0
    eval_s: float = 0.0
    overhead_s: float = 0.0
    disk_bytes: int = 0

    @property
    def total_s(self) -> float:
        return self.train_s + self.topology_s + self.eval_s + self.overhead_s

    def add(self, other: RunCost) -> None:
        for name in ("train_s", "topology_s", "eval_s", "overhead_s", "disk_bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


# ---------------------------------------------------------------------- counts (from the Config alone)
def images_per_class(cfg: Config) -> tuple[int, int]:
    """Training and test images per class the run uses."""
    train, test = IMAGES_PER_CLASS[cfg.dataset]
    return (min(train, cfg.train_per_class or train), min(test, cfg.test_per_class or test))


def image_size(cfg: Config) -> int:
    return cfg.image_size or NATIVE_SIZE


def classes_per_task(cfg: Config) -> int:
    return cfg.num_classes // cfg.num_tasks


def steps_per_task(cfg: Config) -> int:
    """Optimizer steps of one task (Trainer.steps_per_task, from the counts instead of the data)."""
    return cfg.epochs * len(batch_bounds(classes_per_task(cfg) * images_per_class(cfg)[0], cfg.batch_size))


def updates_per_task(cfg: Config) -> int:
    steps = steps_per_task(cfg)
    return sum(is_update_step(s, cfg.update_frequency, steps, cfg.t_end, cfg.update_at_end)
               for s in range(cfg.update_frequency, steps + 1, cfg.update_frequency))


def evaluations(num_tasks: int, bn: str) -> int:
    """Test sets of one task that Trainer.run evaluates: the random network on every task (T), each task
    before training it (T), after each task the tasks seen so far (all of them again with a BatchNorm
    shared by all tasks, bn="standard"; else the new one only) and the authors' FWT (T(T-1)/2).
    A test counts Trainer.accuracy's calls in a real run against this."""
    T = num_tasks
    rows = T * (T + 1) // 2 if bn == "standard" else T
    return 2 * T + rows + T * (T - 1) // 2


def growth_criteria(cfg: Config) -> set[str]:
    """Every criterion the run's growth spec can use."""
    return set(GrowthSchedule.parse(cfg.growth).names)


# ---------------------------------------------------------------------- one run, a grid
def run_cost(cfg: Config, rates: Rates) -> RunCost:
    T = cfg.num_tasks
    train_images, test_images = images_per_class(cfg)
    per_task = classes_per_task(cfg)
    train = T * steps_per_task(cfg) * rates.step_s
    if cfg.bn == "task":  # one pass over each task's training images re-estimates its BatchNorm
        train += T * per_task * train_images * rates.eval_image_s
    # a schedule switching criteria: the dearest one it can use (an upper bound)
    update_s = max((rates.update_s.get(g, 0.0) for g in growth_criteria(cfg)), default=0.0)
    return RunCost(
        train_s=train,
        topology_s=T * updates_per_task(cfg) * update_s,
        eval_s=evaluations(T, cfg.bn) * per_task * test_images * rates.eval_image_s,
        overhead_s=rates.overhead_s,
        disk_bytes=record_bytes(cfg, rates),
    )


def record_bytes(cfg: Config, rates: Rates) -> int:
    """Bytes of the run's record (masks, notebook, metrics and the rest)."""
    T = cfg.num_tasks
    masks = T * rates.mask_task_bytes if cfg.save_masks else 0
    return int(masks + RECORD_FIXED_BYTES + RECORD_TASK_BYTES * T + RECORD_TASK2_BYTES * T * T
               + RECORD_TASK_LAYER_BYTES * T * (rates.layers + 1) + RECORD_UPDATE_BYTES * T * updates_per_task(cfg))


@dataclass
class GridCost:
    experiments: dict[str, RunCost]  # per experiment (runs shared by two experiments count in both)
    runs: dict[str, int]  # runs per experiment
    total: RunCost  # every distinct run once
    distinct_runs: int
    longest_run_s: float

    def wall_s(self, parallel: int, startup_s: float = 0.0) -> float:
        """Wall time with `parallel` runs at once, each as fast as alone: the device time shared out, but
        never less than the longest run, after the workers' start (`startup_s`: a process and its first
        notebook kernel, once per worker, the workers starting together)."""
        return startup_s + max(self.total.total_s / max(parallel, 1), self.longest_run_s)


def grid_cost(named: Iterable[tuple[str, Config]], rates_of: Callable[[Config], Rates]) -> GridCost:
    """The cost of (experiment name, config) pairs; a run (by run id) that two experiments share is
    executed once, so the total counts it once."""
    experiments: dict[str, RunCost] = {}
    runs: dict[str, int] = {}
    total, seen, longest = RunCost(), set(), 0.0
    for name, cfg in named:
        cost = run_cost(cfg, rates_of(cfg))
        experiments.setdefault(name, RunCost()).add(cost)
        runs[name] = runs.get(name, 0) + 1
        rid = cfg.run_id()
        if rid not in seen:
            seen.add(rid)
            total.add(cost)
            longest = max(longest, cost.total_s)
    return GridCost(experiments, runs, total, len(seen), longest)


def hours(seconds: float) -> str:
    """A duration the way the tables show it."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def size(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"
