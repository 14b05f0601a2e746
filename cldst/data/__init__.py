"""Datasets as uint8 tensors, task splits, and device-resident batches with batched augmentation.

This module holds the dataset names (torch-free, so `cldst.config` validates without importing torch);
the loaders, batches and splits load on first use (cldst.lazy).
"""

from __future__ import annotations

from cldst.data.splits import ORDERS, check_divides
from cldst.errors import ConfigError
from cldst.lazy import exports

# dataset name -> "module:function" of its loader (cldst.data.dataset states the loader protocol)
LOADERS = {
    "synth100": "cldst.data.synth100:load_synth100",
    "cifar100": "cldst.data.cifar100:load_cifar100",
    "miniimagenet": "cldst.data.miniimagenet:load_miniimagenet",
}
DATASETS = tuple(LOADERS)
# dataset name -> its number of classes, known without loading it (Config.validate checks num_classes
# against it before anything runs; each loader checks the files it reads against it).
NUM_CLASSES = {"synth100": 100, "cifar100": 100, "miniimagenet": 100}
# Other spellings (the authors' code and README among them), matched case-insensitively.
ALIASES = {"miniimagenet100": "miniimagenet", "cifar-100": "cifar100"}


def canonical_name(name: str, field: str = "dataset") -> str:
    """'miniImageNet' / 'miniImagenet100' -> 'miniimagenet', 'CIFAR100' -> 'cifar100'; unknown -> ConfigError."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"{field}={name!r} is not one of: {', '.join(DATASETS)}")
    return key


__all__ = ["ALIASES", "DATASETS", "LOADERS", "NUM_CLASSES", "ORDERS", "canonical_name", "check_divides"]
__getattr__, __dir__ = exports(__name__, {
    "ImageDataset": ".images", "load_dataset": ".dataset",
    "TaskData": ".batches", "batch_bounds": ".batches", "crop_and_flip": ".batches", "eval_batches": ".batches",
    "task_tensors": ".batches", "train_batches": ".batches",
    "TaskSplit": ".splits", "make_split": ".splits",
})
