"""Experiments are data: each artifact of the paper names its grid here, a profile scales it.

An `Experiment` is a base configuration plus a grid of varied fields; `configs(name, profile)`
expands it into one `Config` per run. Profiles change the scale, never the code path:
  paper  the paper's datasets, ResNet-18 width 64 with the authors' 7x7 stride-2 stem (the network
         that produced the paper's numbers), its epochs, seeds 0-2 (606 runs in all)
  cpu    the paper's findings on a CPU: the embedded synth100 at 32 px, a width-8 network, 250 images
         per class, 1 epoch, 3 seeds, for the experiments behind the findings (Table 3 / Figure 4,
         Figure 6, Figure BN); sized by benchmarks/calibrate_cpu.py against criteria fixed in advance
  smoke  the embedded synth100 dataset at 16 px (40 training images per class), a width-8 network,
         1 epoch, lr 1e-2, ΔT / 70, one seed: every experiment end to end on a CPU in minutes
         (miniImageNet is replaced by synth100 too). A pipeline check (the tests, the rest of the
         demo), not a result.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from cldst.config import Config
from cldst.errors import ConfigError

# ΔT of every experiment but Figure A (which varies it): 400 batches. The paper lists 50-400 and does not
# say which made Tables 1-4; the authors' README runs 10-task CIFAR-100 and 10-task miniImageNet with
# --update_frequency 400, and 400 is their code's default (what 5- and 20-task runs got unless told
# otherwise). Their appendix finds 400 best at 80% sparsity and 100-200 at 90-95% (Figure A). At paper
# scale this is 10 updates per 10-task CIFAR-100 task (4,000 steps) and 1 per 20-task task (500 steps).
UPDATE_FREQUENCY = 400

INITS = ["uniform", "ERK"]
GROWTHS = ["random", "unfired", "gradient", "momentum"]
MAIN_DENSITIES = [0.2, 0.1, 0.05]  # sparsity 80 / 90 / 95 %
# Figure 6's growth schedules. The paper's switch is fixed: random for tasks 1-5, gradient from task 6.
ADAPTIVE = "0:random,5:gradient"
# Ours switches on capacity instead. Were the 10% masks independent, 0.9**5 = 0.59 of the backbone
# would be free after five tasks, where the paper switches; masks overlap (frozen weights are reused),
# so the free fraction falls more slowly and the switch comes when the backbone really is that full.
# (A threshold of 0.5 never fired in the smoke profile: 0.51 was still free before task 10.)
CAPACITY_THRESHOLD = 0.6
CAPACITY_POLICY = f"random,free<{CAPACITY_THRESHOLD:g}:gradient"


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    lines: str = "growth"  # the field that separates lines in the figure
    panels: tuple[str, ...] = ("sparse_init", "density")  # fields that separate panels

    def size(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    @property
    def artifacts(self) -> tuple[str, ...]:
        """Names of the tables and figures built from this experiment's runs (ARTIFACTS)."""
        return tuple(a.name for a in ARTIFACTS.values() if a.experiment == self.name)


@dataclass(frozen=True)
class Artifact:
    """A table or figure and what builds it: the experiment whose runs it shows, the file stem it is
    written under (a profile other than "paper" prefixes it) and the analysis notebook that makes it."""

    name: str  # the paper's name: "table1", "figure2", ...; ours: "figureBN", "findings", "capacity"
    experiment: str  # the EXPERIMENTS entry whose runs it shows
    stem: str  # output file name without extension (capacity writes capacity_<part>)
    notebook: str  # notebooks/<notebook>.ipynb builds it
    caption: str = ""  # what it shows, when that is not its experiment's title
    reads: tuple[str, ...] = ()  # other experiments whose runs it reads (the findings read several)

    @property
    def title(self) -> str:
        return self.caption or EXPERIMENTS[self.experiment].title

    @property
    def experiments(self) -> tuple[str, ...]:
        """Every experiment whose runs it reads, its own first."""
        return (self.experiment, *self.reads)


def _main(name: str, title: str, dataset: str, tasks: int, epochs: int) -> Experiment:
    return Experiment(
        name, title,
        base={"dataset": dataset, "num_tasks": tasks, "epochs": epochs, "update_frequency": UPDATE_FREQUENCY},
        grid={"sparse_init": INITS, "growth": GROWTHS, "density": MAIN_DENSITIES},
    )


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        _main("cifar100-20", "20-task CIFAR-100", "cifar100", 20, 25),
        _main("miniimagenet-10", "10-task miniImageNet", "miniimagenet", 10, 100),
        _main("cifar100-10", "10-task CIFAR-100", "cifar100", 10, 100),
        _main("cifar100-5", "5-task CIFAR-100", "cifar100", 5, 100),
        Experiment(
            "adaptive", "adaptive growth, 10-task CIFAR-100, ERK, 90% sparsity",
            base={"dataset": "cifar100", "num_tasks": 10, "epochs": 100, "update_frequency": UPDATE_FREQUENCY,
                  "sparse_init": "ERK", "density": 0.1},
            # fixed random, fixed gradient, the paper's random-then-gradient, and our capacity-triggered switch
            grid={"growth": ["random", "gradient", ADAPTIVE, CAPACITY_POLICY]},
            panels=(),
        ),
        Experiment(
            "update-frequency", "topology update frequency, 10-task CIFAR-100, random growth",
            base={"dataset": "cifar100", "num_tasks": 10, "epochs": 100, "growth": "random"},
            grid={"sparse_init": INITS, "density": MAIN_DENSITIES, "update_frequency": [50, 100, 200, 400]},
            lines="update_frequency",
        ),
        Experiment(
            "sparsity", "sparsity 70/85/99%, 10-task CIFAR-100",
            base={"dataset": "cifar100", "num_tasks": 10, "epochs": 100, "update_frequency": UPDATE_FREQUENCY},
            grid={"sparse_init": INITS, "growth": GROWTHS, "density": [0.3, 0.15, 0.01]},
        ),
        Experiment(
            "mobilenetv2", "MobileNetV2, 10-task CIFAR-100",
            base={"dataset": "cifar100", "num_tasks": 10, "epochs": 100, "update_frequency": UPDATE_FREQUENCY,
                  "arch": "mobilenetv2"},
            grid={"sparse_init": INITS, "growth": GROWTHS, "density": [0.3, 0.2, 0.1]},
        ),
        Experiment(
            "vgg", "VGG-like, 10-task CIFAR-100",
            base={"dataset": "cifar100", "num_tasks": 10, "epochs": 100, "update_frequency": UPDATE_FREQUENCY, "arch": "vgg"},
            grid={"sparse_init": INITS, "growth": GROWTHS, "density": MAIN_DENSITIES},
        ),
        # Beyond the paper. The authors' BatchNorm normalizes test images with their test batch's
        # statistics (transductive: a prediction depends on the other test images); one BN per task
        # with running statistics keeps parameter isolation without that. Do the curves hold?
        Experiment(
            "batchnorm", "beyond the paper: BatchNorm with test-batch statistics vs one per task, "
                         "10-task CIFAR-100, random growth",
            # ERK only: the init the paper recommends at 80-90% sparsity; both BatchNorms at each sparsity
            base={"dataset": "cifar100", "num_tasks": 10, "epochs": 100, "update_frequency": UPDATE_FREQUENCY,
                  "growth": "random", "sparse_init": "ERK"},
            grid={"density": MAIN_DENSITIES, "bn": ["batch", "task"]},
            lines="bn",
        ),
    ]
}


# Every table and figure, once: which experiment's runs build it, its file and its notebook.
ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in [
        Artifact("table1", "cifar100-20", "table1_cifar100_20tasks", "analysis_tables"),
        Artifact("table2", "miniimagenet-10", "table2_miniimagenet_10tasks", "analysis_tables"),
        Artifact("table3", "cifar100-10", "table3_cifar100_10tasks", "analysis_tables"),
        Artifact("table4", "cifar100-5", "table4_cifar100_5tasks", "analysis_tables"),
        Artifact("findings", "adaptive", "findings", "analysis_tables",
                 "the paper's four findings and two of ours, with 95% intervals over seeds",
                 reads=("cifar100-20", "miniimagenet-10", "cifar100-10", "cifar100-5", "batchnorm")),
        Artifact("figure2", "cifar100-20", "figure2_cifar100_20tasks", "analysis_figures"),
        Artifact("figure3", "miniimagenet-10", "figure3_miniimagenet_10tasks", "analysis_figures"),
        Artifact("figure4", "cifar100-10", "figure4_cifar100_10tasks", "analysis_figures"),
        Artifact("figure5", "cifar100-5", "figure5_cifar100_5tasks", "analysis_figures"),
        Artifact("figure6", "adaptive", "figure6_adaptive", "analysis_adaptive"),
        Artifact("figureA", "update-frequency", "figureA_update_frequency", "analysis_appendix"),
        Artifact("figureB", "sparsity", "figureB_sparsity", "analysis_appendix"),
        Artifact("figureC", "mobilenetv2", "figureC_mobilenetv2", "analysis_appendix"),
        Artifact("figureD", "vgg", "figureD_vgg", "analysis_appendix"),
        Artifact("figureBN", "batchnorm", "figureBN_batchnorm", "analysis_appendix"),
        Artifact("capacity", "cifar100-10", "capacity", "analysis_capacity",
                 "backbone capacity and reuse, 10-task CIFAR-100"),
    ]
}


def artifacts_of(notebook: str) -> dict[str, Artifact]:
    """The artifacts one analysis notebook builds, by name, in registry order."""
    return {name: a for name, a in ARTIFACTS.items() if a.notebook == notebook}


@dataclass(frozen=True)
class Profile:
    name: str
    seeds: tuple[int, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    # update_frequency is divided by this, so a short task still sees several topology updates
    update_divisor: int = 1
    epochs: int | None = None  # None: the experiment's own epochs
    experiments: tuple[str, ...] | None = None  # the experiments it is sized for (None: all)
    note: str = ""  # what its numbers are, for captions

    def update_frequency(self, experiment_dt: int) -> int:
        """ΔT of a run: the experiment's divided by update_divisor, rounded up (distinct ΔT stay distinct),
        at least 1; an "update_frequency" override replaces it."""
        return int(self.overrides.get("update_frequency", max(1, math.ceil(experiment_dt / self.update_divisor))))


PROFILES: dict[str, Profile] = {
    # Every scale field is set here: Config's own defaults are a quick run, and never reach a profile's runs.
    "paper": Profile("paper", seeds=(0, 1, 2),
                     overrides={"width": 64, "variant": "authors", "image_size": 0, "train_per_class": 0,
                                "test_per_class": 0, "batch_size": 128, "lr": 0.001, "progress": False},
                     note="paper profile (the paper's datasets, ResNet-18 width 64, the paper's epochs)"),
    # The paper's findings on a CPU: the embedded synth100 in place of CIFAR-100, scaled so a 10-task
    # run is meaningful (benchmarks/calibrate_cpu.py states the criteria and the measurement that set
    # every number here), for the experiments behind the findings: Table 3 / Figure 4 (10 tasks),
    # Figure 6 (adaptive growth) and Figure BN.
    "cpu": Profile(
        "cpu",
        seeds=(0, 1, 2),
        overrides={
            "dataset": "synth100", "image_size": 32, "width": 8, "variant": "authors", "batch_size": 64,
            "train_per_class": 250, "test_per_class": 30, "lr": 3e-3, "update_frequency": 6, "progress": False,
        },
        epochs=1,  # 40 steps per 10-class task, a topology update every 6: 6 per task
        experiments=("cifar100-10", "adaptive", "batchnorm"),
        note="CPU PROFILE: embedded synth100 data (10-class tasks, chance 10%), ResNet-18 width 8 with the "
             "authors' stem at 32 px, 250 images per class, 1 epoch per task; the paper's method and code path "
             "at a CPU's scale, not the paper's CIFAR-100 numbers",
    ),
    "smoke": Profile(
        "smoke",
        seeds=(0,),
        overrides={
            "dataset": "synth100", "image_size": 16, "width": 8, "variant": "authors", "batch_size": 32,
            "train_per_class": 40, "test_per_class": 10, "progress": False,
            # 13 steps per 10-class task (1 epoch of 13 batches) instead of the paper's 4,000: Adam
            # needs a larger step to learn anything at all (a pipeline check, not a result).
            "lr": 0.01,
        },
        # ΔT 50/100/200/400 -> 1/2/3/6: every smoke run, down to the 7 steps of a 20-task run's task,
        # gets topology updates (a test checks)
        update_divisor=70,
        epochs=1,
        note="SMOKE PROFILE: embedded synth100 data, tiny network, 1 epoch per task; a pipeline check, "
             "not comparable to the paper's CIFAR-100/miniImageNet numbers",
    ),
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment {name!r} is not one of: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"profile {name!r} is not one of: {', '.join(PROFILES)}")
    return PROFILES[name]


def experiments_of(profile: str) -> list[str]:
    """The experiments a profile is sized for, in registry order."""
    prof = get_profile(profile)
    return [name for name in EXPERIMENTS if prof.experiments is None or name in prof.experiments]


def configs(name: str, profile: str = "paper", seeds: tuple[int, ...] | None = None) -> list[Config]:
    """Every configuration of experiment `name` under `profile`, validated, in a stable order."""
    exp, prof = get_experiment(name), get_profile(profile)
    if name not in experiments_of(profile):
        raise ConfigError(f"profile {profile!r} is sized for experiments {', '.join(experiments_of(profile))}, "
                          f"not {name!r}")
    keys = list(exp.grid)
    out = []
    for values in itertools.product(*(exp.grid[k] for k in keys)):
        for seed in seeds if seeds is not None else prof.seeds:
            fields = {**exp.base, **dict(zip(keys, values)), "seed": seed}
            if prof.epochs is not None:
                fields["epochs"] = prof.epochs
            fields["update_frequency"] = prof.update_frequency(fields.get("update_frequency", UPDATE_FREQUENCY))
            fields.update(prof.overrides)
            # One pool of runs per profile (papermill_runs/<profile>/<run id>): a configuration two
            # experiments share (batchnorm's bn=batch cells are cifar100-10's) is one run, read by both.
            fields["experiment"] = prof.name
            out.append(Config(**fields).validate())
    return out


def all_configs(profile: str = "paper", names: list[str] | None = None) -> list[Config]:
    """Every configuration of `names` (default: every experiment the profile is sized for), as the
    experiments list them: a run two experiments share appears twice (`distinct` keeps one)."""
    return [c for n in (names or experiments_of(profile)) for c in configs(n, profile)]


def distinct(cfgs: list[Config]) -> list[Config]:
    """The runs of `cfgs`, each once (first occurrence, order kept): what a sweep executes."""
    return list({c.run_id(): c for c in reversed(cfgs)}.values())[::-1]


@functools.cache
def cells(name: str, profile: str) -> frozenset[str]:
    """The grid points (Config.cell_id: identity less the seed) experiment `name` runs under `profile`;
    empty when the profile is not sized for it. A record belongs to the experiment when its cell is here,
    whatever its seed (a sweep with --seeds 0-5 adds runs to the same cells)."""
    if name not in experiments_of(profile):
        return frozenset()
    return frozenset(c.cell_id() for c in configs(name, profile, seeds=(0,)))
