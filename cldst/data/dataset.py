"""`ImageDataset` (a whole dataset as uint8 tensors) and `load_dataset`, which picks the loader by name.

Every loader returns the full dataset at its native resolution; this module then applies what is
common to all of them: resizing (`image_size`) and keeping the first n images per class
(`train_per_class` / `test_per_class`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cldst.errors import ConfigError, DataError
from cldst.paths import data_dir

log = logging.getLogger(__name__)

DATASETS = ("synth100", "cifar100", "miniimagenet")
# Spellings used by the authors' code and README; matched case-insensitively.
ALIASES = {"miniimagenet100": "miniimagenet"}


@dataclass
class ImageDataset:
    """A labelled image dataset held in memory: images uint8 NCHW on the CPU, labels int64."""

    name: str
    train_x: torch.Tensor  # uint8 [N, 3, H, W]
    train_y: torch.Tensor  # int64 [N], class ids 0..num_classes-1
    test_x: torch.Tensor  # uint8 [M, 3, H, W]
    test_y: torch.Tensor  # int64 [M]
    class_names: list[str]
    mean: tuple[float, float, float]  # per channel, in [0, 1] pixel units
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        for part, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
                raise DataError(f"{self.name}: {part}_x must be uint8 [N, 3, H, W], got {x.dtype} {list(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DataError(f"{self.name}: {part}_y must be int64 [{x.shape[0]}], got {y.dtype} {list(y.shape)}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.class_names)):
                raise DataError(f"{self.name}: {part}_y has labels outside 0..{len(self.class_names) - 1}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(f"{self.name}: train and test images differ in shape")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])


def canonical_name(name: str) -> str:
    """'miniImageNet' / 'miniImagenet100' -> 'miniimagenet', 'CIFAR100' -> 'cifar100'; unknown -> ConfigError."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"dataset {name!r} is not one of: {', '.join(DATASETS)}")
    return key


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    image_size: int | None = None,
    download: bool = True,
    train_per_class: int = 0,
    test_per_class: int = 0,
    seed: int = 0,
) -> ImageDataset:
    """Load a dataset by name (see DATASETS); `root` is where files are looked for (default data_dir()).

    image_size: None = native (32 for all three); another size resizes every image to that square.
    train_per_class / test_per_class: 0 = all; n > 0 keeps the first n images of each class.
    seed: only miniImageNet uses it, to pick its per-class train/test split.
    """
    key = canonical_name(name)
    for field, value in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{field}={value!r} is not allowed (0 = all images, or a positive count)")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image_size={image_size!r} is not allowed (None = native, or a positive pixel count)")
    root = Path(root).expanduser() if root is not None else data_dir()

    # Imported here: each loader module imports ImageDataset from this one.
    if key == "cifar100":
        from cldst.data.cifar100 import load_cifar100

        ds = load_cifar100(root, download=download)
    elif key == "miniimagenet":
        from cldst.data.miniimagenet import load_miniimagenet

        ds = load_miniimagenet(root, image_size=image_size or 32, seed=seed)
    else:
        from cldst.data.synth100 import load_synth100

        ds = load_synth100(image_size=image_size or 32)

    if image_size is not None and image_size != ds.image_size:
        ds.train_x, ds.test_x = resize_images(ds.train_x, image_size), resize_images(ds.test_x, image_size)
    if train_per_class:
        ds.train_x, ds.train_y = first_per_class(ds.train_x, ds.train_y, train_per_class, f"{key} train_per_class")
    if test_per_class:
        ds.test_x, ds.test_y = first_per_class(ds.test_x, ds.test_y, test_per_class, f"{key} test_per_class")
    log.info(
        "%s: %d train / %d test images, %d classes, %d px",
        key, len(ds.train_y), len(ds.test_y), ds.num_classes, ds.image_size,
    )
    return ds


def resize_images(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> uint8 [N, 3, size, size], bilinear with antialiasing (chunked: float copies are 4x)."""
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def first_per_class(x: torch.Tensor, y: torch.Tensor, n: int, field: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the first n images of every class, in stored order. A class with fewer than n -> ConfigError."""
    order = torch.argsort(y, stable=True)  # indices grouped by class, stored order within a class
    counts = torch.bincount(y)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(y)
    rank[order] = torch.arange(len(y)) - starts[y[order]]  # position of each image within its class
    present = counts[counts > 0]
    if len(present) and int(present.min()) < n:
        raise ConfigError(f"{field}={n} but some class has only {int(present.min())} images (use a smaller count or 0)")
    keep = rank < n
    return x[keep], y[keep]
