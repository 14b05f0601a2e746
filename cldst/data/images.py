"""`ImageDataset`: a whole labelled dataset as uint8 tensors, and the operations every loader shares."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cldst.errors import ConfigError, DataError


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
