"""Datasets as uint8 tensors, task splits, and device-resident batches with batched augmentation."""

from __future__ import annotations

from cldst.data.batches import (
    TaskData,
    batch_bounds,
    crop_and_flip,
    eval_batches,
    task_tensors,
    train_batches,
)
from cldst.data.dataset import DATASETS, ImageDataset, canonical_name, load_dataset
from cldst.data.splits import ORDERS, TaskSplit, make_split

__all__ = [
    "DATASETS",
    "ORDERS",
    "ImageDataset",
    "TaskData",
    "TaskSplit",
    "batch_bounds",
    "canonical_name",
    "crop_and_flip",
    "eval_batches",
    "load_dataset",
    "make_split",
    "task_tensors",
    "train_batches",
]
