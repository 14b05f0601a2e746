"""The one configuration of a run.

`Config` is at once the parameters cell of `notebooks/train.ipynb` (a test compares the two with
`papermill.inspect_notebook`), the flags of `cldst run` (the authors' flag names are accepted too:
`--sparse_init`, `--num_classes_per_task`, ...) and the `config.json` of a run record. Every field is a
plain JSON scalar so papermill can inject it. `validate()` turns every bad value into one clear line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

# The choices come from the modules that own them, asked at validation time (a criterion registered in a
# notebook after this import is accepted). None of these imports torch or pandas: `cldst --help` and a
# one-line error answer at once (cldst.lazy).
from cldst import data, models, sparse
from cldst.errors import ConfigError, check_choice
from cldst.sparse import registry
from cldst.sparse.schedule import GrowthSchedule, check_update_schedule

ARCH_ALIASES = {"vgg16": "vgg"}  # the authors' --net_name for their VGG-like
# Choices that belong to the run itself (the loop in cldst.train, the device).
EVAL_LOGITS = ("task", "all")
CHECKPOINTS = ("final", "best_train")
LR_MILESTONES = ("distinct", "authors")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass
class Config:
    """One continual DST run.

    The defaults are a QUICK run, not the paper's: 10 tasks of the embedded synth100 (no download) at
    16 px, 200 training images per class, ResNet-18 width 16 with the authors' stem, 2 epochs per task
    of batch 32 with 12 topology updates each (1,260 optimizer steps in all). The paper's run is
    `cldst sweep cifar100-10 --profile paper` (CIFAR-100, width 64, 32 px, all images, 100 epochs,
    batch 128, lr 0.001, ΔT 400): every field the quick defaults change is set there."""

    # --- bookkeeping (not part of the run id) ---
    experiment: str = "default"  # group of runs: papermill_runs/<experiment>/<run id>/
    device: str = "auto"  # auto | cpu | cuda
    data_root: str = ""  # where datasets are looked for (empty: cldst.paths.data_dir())
    progress: bool = True  # tqdm progress bars over tasks and epochs
    save_masks: bool = True  # keep every task's mask (bit-packed) in the run record
    # --- data ---
    dataset: str = "synth100"  # synth100 (embedded, no download) | cifar100 | miniimagenet
    num_tasks: int = 10  # tasks the classes are split into (must divide num_classes)
    num_classes: int = 100  # classes of the dataset used (all of them)
    num_classes_per_task: int = 0  # 0: num_classes // num_tasks; else must equal it
    class_order: str = "natural"  # natural (authors) | random (seeded by class_order_seed)
    class_order_seed: int = 0  # seed of the class permutation when class_order is random
    image_size: int = 16  # 0: the dataset's native size (paper: 32); else resize to this many pixels
    train_per_class: int = 200  # 0: all training images (paper); else the first n per class
    test_per_class: int = 50  # 0: all test images (paper); else the first n per class
    # --- model ---
    arch: str = "resnet18"  # resnet18 | vgg (VGG-like) | mobilenetv2
    width: int = 16  # base channel width (paper: 64, the standard network)
    variant: str = "authors"  # cifar: 3x3 stride-1 first convs | authors: the authors' networks (ResNet-18 7x7 stride-2 stem; MobileNetV2 ImageNet strides, ReLU6)
    weight_init: str = "torch"  # torch: PyTorch's default init (authors) | kaiming: Kaiming-normal fan_out convs
    bn: str = "batch"  # batch: no affine, batch statistics (authors) | standard: affine + running stats, shared | task: one standard BN per task
    head: str = "shared"  # shared: one masked 100-way head sliced per task (authors) | multi: a dense head per task
    eval_logits: str = "task"  # task: argmax over the task's classes | all: over all logits (authors)
    eval_batch_size: int = 0  # test batch size (0: batch_size; authors: 128); with bn batch it changes the numbers
    # --- sparse training ---
    sparse_init: str = "ERK"  # uniform | ERK: per-layer density of each task's mask
    density: float = 0.1  # fraction of weights in each task's mask (sparsity is 1 - density)
    growth: str = "random"  # random | unfired | gradient | momentum, or a schedule: "0:random,5:gradient", "random,free<0.4:gradient"
    drop: str = "magnitude"  # drop criterion
    update_frequency: int = 10  # batches between topology updates (paper: 400, docs/authors_code.md)
    drop_fraction: float = 0.5  # alpha: initial fraction of a layer's active weights dropped per update
    drop_fraction_min: float = 0.0  # floor of the cosine schedule (authors: 0.005)
    t_end: float = 1.0  # topology updates stop after this fraction of a task's batches (authors: 1.0)
    frozen_grad: str = "zero"  # zero: frozen positions get no gradient score (authors) | keep: dense scores
    new_weights: str = "random"  # random: free weights start from their initial values | zero: tasks from 1 on start at 0 (authors)
    reuse: str = "static"  # frozen positions in updates: static | separate | value | authors (docs/authors_code.md)
    drop_count: str = "round"  # weights dropped per update: round(f * k) | ceil(f * k) (authors)
    score_fill: str = "random"  # too few non-zero growth scores: random fill | authors (re-picks active positions: density leaks)
    update_at_end: bool = False  # also update the topology at a task's last step (authors)
    checkpoint: str = "final"  # weights each task keeps: final | best_train (the epoch of best training accuracy: authors)
    # --- optimization ---
    epochs: int = 2  # epochs per task (paper: 100; 25 for 20-task CIFAR-100)
    batch_size: int = 32  # training batch size (paper: 128)
    lr: float = 0.003  # Adam (paper: 0.001), x0.1 at 1/2 and 3/4 of the epochs, fresh optimizer per task
    lr_milestones: str = "distinct"  # distinct: x0.1 at E//2 and 3E//4, each once, never at 0 | authors: both as they are (1 epoch: x0.01 from the start; 2 epochs: x0.01 at the second)
    weight_decay: float = 0.0  # Adam's L2 penalty (never reaches frozen weights)
    seed: int = 0  # seeds masks, growth, initialization, shuffling and augmentation
    # --- speed (GPU fast path; all checked for correctness on CPU) ---
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    channels_last: bool = False  # NHWC memory layout (faster convolutions on recent GPUs)
    compile: bool = False  # torch.compile the backbone (its graphs serve every task)

    # Fields that do not change the numbers a run produces: left out of the run id.
    NON_IDENTITY = ("experiment", "device", "data_root", "progress", "save_masks")

    def __post_init__(self) -> None:
        """Other spellings of a value become its canonical name (unknown values are left for validate)."""
        key = str(self.dataset).strip().lower()
        key = data.ALIASES.get(key, key)
        if key in data.DATASETS:
            self.dataset = key
        if str(self.sparse_init).lower() == "erk":
            self.sparse_init = "ERK"
        self.arch = ARCH_ALIASES.get(self.arch, self.arch)
        if isinstance(self.growth, str):  # the authors' names, alone or inside a schedule
            for alias, name in registry.GROWTH_ALIASES.items():
                self.growth = re.sub(rf"\b{alias}\b", name, self.growth)

    # ------------------------------------------------------------------ validation
    def validate(self) -> Config:
        """Raise ConfigError with one line naming the first bad field and what is allowed."""
        for name, allowed in (
            ("dataset", data.DATASETS), ("class_order", data.ORDERS),
            ("arch", models.ARCHS), ("variant", models.VARIANTS), ("weight_init", models.WEIGHT_INITS),
            ("bn", models.BNS), ("head", models.HEADS), ("eval_logits", EVAL_LOGITS),
            ("sparse_init", sparse.INITS), ("frozen_grad", sparse.FROZEN_GRADS), ("new_weights", sparse.NEW_WEIGHTS),
            ("reuse", sparse.REUSES), ("drop_count", sparse.DROP_COUNTS), ("score_fill", sparse.SCORE_FILLS),
            ("checkpoint", CHECKPOINTS), ("lr_milestones", LR_MILESTONES), ("device", DEVICES), ("precision", PRECISIONS),
        ):
            check_choice(name, getattr(self, name), allowed)
        registry.check_name("drop", self.drop)
        if self.eval_logits == "all" and self.head != "shared":
            raise ConfigError("eval_logits='all' needs head='shared' (got head='multi')")
        if not 0.0 < self.density <= 1.0:
            raise ConfigError(f"density={self.density} must be in (0, 1] (it is 1 - sparsity; e.g. 0.1 for 90% sparsity)")
        for name in ("num_tasks", "num_classes", "epochs", "batch_size", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be a positive integer")
        for name in ("train_per_class", "test_per_class", "image_size", "num_classes_per_task", "eval_batch_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0 (0 = default)")
        if self.num_classes > data.NUM_CLASSES[self.dataset]:
            raise ConfigError(f"num_classes={self.num_classes} is more than dataset {self.dataset!r} has "
                              f"({data.NUM_CLASSES[self.dataset]})")
        data.check_divides(self.num_classes, self.num_tasks)
        per_task = self.num_classes // self.num_tasks
        if self.num_classes_per_task not in (0, per_task):
            raise ConfigError(
                f"num_classes_per_task={self.num_classes_per_task} must equal num_classes/num_tasks = {per_task} (or 0)"
            )
        check_update_schedule(self.update_frequency, self.drop_fraction, self.drop_fraction_min, self.t_end)
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"lr={self.lr} must be > 0 and weight_decay={self.weight_decay} >= 0")
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]+", self.experiment) or ".." in self.experiment:
            raise ConfigError(f"experiment={self.experiment!r} may hold only letters, digits, '_', '-', '.', '/'")
        GrowthSchedule.parse(self.growth)
        return self

    # ------------------------------------------------------------------ identity
    def identity(self) -> dict[str, Any]:
        """What determines the results: every field of the first run ids (ID_FIELDS), and each field
        added since (ADDED_FIELDS) only where its value differs from the behaviour before it existed."""
        values = asdict(self)
        out = {k: values[k] for k in ID_FIELDS}
        out.update({k: values[k] for k, before in ADDED_FIELDS.items() if values[k] != before})
        return out

    def run_id(self) -> str:
        """A pure function of what the run computes: readable prefix + hash of identity()."""
        return f"{self.readable_prefix()}-{_digest(self.identity())}"

    def cell_id(self) -> str:
        """The run's grid point: its identity less the seed (the runs a summary averages over share it)."""
        return _digest({k: v for k, v in self.identity().items() if k != "seed"})

    def readable_prefix(self) -> str:
        growth = re.sub(r"[^A-Za-z0-9]+", "-", self.growth).strip("-")
        return f"{self.dataset}-T{self.num_tasks}-{self.arch}-{self.sparse_init}-{growth}-d{self.density:g}-s{self.seed}"

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> Config:
        """Build from a mapping (JSON, papermill parameters), coercing and naming unknown keys.
        Missing fields take today's defaults."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; see `cldst run --help`")
        return cls(**{k: coerce(k, v, known[k].type) for k, v in values.items()})

    @classmethod
    def from_record(cls, values: dict[str, Any], *, source: str = "config") -> Config:
        """A run record's config.json -> Config. A field added after the record was written is absent
        from it: it takes the value that reproduces what the run did (ADDED_FIELDS), not today's default."""
        return cls.from_dict({**{k: v for k, v in ADDED_FIELDS.items() if k not in values}, **values},
                             source=source)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> Config:
        """The training notebook's parameters (its globals, after papermill's injection) -> Config."""
        return cls.from_dict({f.name: namespace[f.name] for f in fields(cls) if f.name in namespace})

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------- run identity
# A run id must outlive the code that wrote it: records are hours of compute, and a sweep skips exactly the
# runs whose ids it finds complete. So the id hashes a fixed list of fields, not "every field Config has
# today". ID_FIELDS are the fields of the first run ids (hashed always, so those ids never change).
ID_FIELDS = (
    "dataset", "num_tasks", "num_classes", "num_classes_per_task", "class_order", "class_order_seed",
    "image_size", "train_per_class", "test_per_class", "arch", "width", "variant", "weight_init", "bn", "head",
    "eval_logits", "eval_batch_size", "sparse_init", "density", "growth", "drop", "update_frequency",
    "drop_fraction", "drop_fraction_min", "t_end", "frozen_grad", "new_weights", "reuse", "drop_count",
    "score_fill", "update_at_end", "checkpoint", "epochs", "batch_size", "lr", "weight_decay", "seed",
    "precision", "channels_last", "compile",
)
# Every field added since: name -> the value that reproduces what runs did before the field existed. A
# run with that value keeps its id (and an old record, whose config.json lacks the field, reads it so);
# any other value enters the hash. A new field that changes the numbers goes here, never in ID_FIELDS.
ADDED_FIELDS: dict[str, Any] = {
    "lr_milestones": "distinct",  # December 2026: the authors' rule (it differs only at 1 and 2 epochs a task)
}


def _digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def check_identity_fields(cls: type = Config) -> None:
    """Every field is bookkeeping, an original identity field or a registered added one; raised at import,
    so a field added without saying what it changes cannot silently orphan every record."""
    names = [f.name for f in fields(cls)]
    unclassified = [n for n in names if n not in ID_FIELDS and n not in ADDED_FIELDS and n not in cls.NON_IDENTITY]
    if unclassified:
        raise TypeError(f"Config field(s) {', '.join(unclassified)}: add each to ADDED_FIELDS (the value that "
                        "reproduces the behaviour before it existed) or to Config.NON_IDENTITY")
    gone = [n for n in (*ID_FIELDS, *ADDED_FIELDS) if n not in names]
    if gone:
        raise TypeError(f"Config lost identity field(s) {', '.join(gone)}: every stored run id hashes them")


check_identity_fields()


def field_help() -> dict[str, str]:
    """Each field's one-line meaning: the comment after it in Config's source (the one place they are written)."""
    import inspect
    import io
    import tokenize

    comments, names = {}, {}
    for token in tokenize.generate_tokens(io.StringIO(inspect.getsource(Config)).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type == tokenize.NAME and token.start[1] == 4:  # a class-body statement
            names.setdefault(token.start[0], token.string)
    by_name = {names[line]: text for line, text in comments.items() if line in names}
    return {f.name: by_name.get(f.name, "") for f in fields(Config)}


def parameters_cell() -> str:
    """The source of notebooks/train.ipynb's parameters cell: every field, its default and its help.

    Papermill reads `name = value  # help` lines (a second "=" on a line hides it, so help texts have none)."""
    helps = field_help()
    lines = ["# Parameters: exactly the fields of cldst.config.Config (papermill injects overrides below)."]
    for f in fields(Config):
        lines.append(f"{f.name} = {getattr(Config, f.name)!r}" + (f"  # {helps[f.name]}" if helps[f.name] else ""))
    return "\n".join(lines)


def write_parameters_cell() -> None:
    """Rewrite notebooks/train.ipynb's parameters cell from Config (after a field changed)."""
    import nbformat

    from cldst.paths import NOTEBOOKS_DIR

    path = NOTEBOOKS_DIR / "train.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = parameters_cell()
    nbformat.write(nb, path)


def coerce(name: str, value: Any, type_name: Any) -> Any:
    """Coerce `value` (a string from the CLI, or JSON) to the field's type, with a one-line error."""
    kind = {"str": str, "int": int, "float": float, "bool": bool}.get(str(type_name), type_name)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={value!r} must be a boolean (true/false)")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} must be {'an integer' if kind is int else 'a number'}") from None
    return str(value)


# Presets: named groups of field values. `authors` reproduces what the authors' code does where it
# changes the numbers (docs/authors_code.md lists each difference and the bugs we fix instead).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},  # the paper's method as stated, with the known bugs fixed (the defaults)
    "authors": {
        "variant": "authors",
        "weight_init": "torch",
        "bn": "batch",
        "head": "shared",
        "eval_logits": "all",
        "eval_batch_size": 128,
        "new_weights": "zero",
        "reuse": "authors",
        "drop": "magnitude_threshold",
        "drop_count": "ceil",
        "score_fill": "authors",
        "update_at_end": True,
        "checkpoint": "best_train",
        "t_end": 1.0,
        "drop_fraction_min": 0.005,
        "frozen_grad": "zero",
        "lr_milestones": "authors",
    },
}


def preset(name: str, **overrides: Any) -> Config:
    check_choice("preset", name, PRESETS)
    return Config(**{**PRESETS[name], **overrides})
