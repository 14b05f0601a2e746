"""Device-resident task data and batch iterators with batched augmentation.

A task's images stay uint8 on the device (a 10-class CIFAR task is 15 MB); each batch is indexed,
cropped and flipped as uint8 with tensor ops (no per-sample Python), then turned into normalized
float32. Augmentation is the usual CIFAR recipe: zero-pad `pad` pixels on each side, take an HxW
window at a uniform offset (dy, dx) in [0, 2*pad]^2, flip horizontally with probability 1/2.

All randomness of an epoch comes from the caller's generator, drawn up front in this order:
permutation (randperm N), crop offsets (randint [N, 2], columns dy, dx), flips (rand N < 0.5).
Draws happen on the generator's device and are moved to the data's device, so a CPU generator gives
the same batches on CPU and CUDA.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cldst.data.images import ImageDataset
from cldst.data.splits import TaskSplit
from cldst.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]  # float32 [B, 3, H, W] normalized, int64 [B] local labels


@dataclass
class TaskData:
    task: int
    classes: tuple[int, ...]  # global class ids; local label i is classes[i]
    train_x: torch.Tensor  # uint8 [N, 3, H, W] on the device
    train_y: torch.Tensor  # int64 [N] local labels on the device
    test_x: torch.Tensor  # uint8 [M, 3, H, W]
    test_y: torch.Tensor  # int64 [M]


EVAL_ORDER_SEED = 0  # fixed: the test order is part of the task, not of the run


def task_tensors(ds: ImageDataset, split: TaskSplit, t: int, device: torch.device | str) -> TaskData:
    """Task t's images on `device`, labels mapped to their position in split.classes(t).

    Training images keep the stored order (train_batches shuffles them). Test images are put in one
    fixed, seeded permutation: evaluation stays deterministic and unshuffled, yet every test batch
    mixes the task's classes. This matters with batch-statistics BatchNorm (bn="batch", the authors'
    choice): on class-sorted batches it would normalize the class signal away (accuracy ~ chance)."""
    classes = split.classes(t)
    if split.num_classes != ds.num_classes:
        raise ConfigError(f"split has {split.num_classes} classes but dataset {ds.name!r} has {ds.num_classes}")
    local = torch.full((ds.num_classes,), -1, dtype=torch.int64)  # global class id -> local label or -1
    local[list(classes)] = torch.arange(len(classes))

    def select(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_local = local[y]
        keep = y_local >= 0
        return x[keep].to(device), y_local[keep].to(device)

    train_x, train_y = select(ds.train_x, ds.train_y)
    test_x, test_y = select(ds.test_x, ds.test_y)
    order = torch.randperm(len(test_y), generator=torch.Generator().manual_seed(EVAL_ORDER_SEED)).to(test_y.device)
    return TaskData(t, classes, train_x, train_y, test_x[order], test_y[order])


def train_batches(
    x_u8: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator,
    augment: bool = True,
    pad: int = 4,
    channels_last: bool = False,
) -> Iterator[Batch]:
    """One epoch in a random order (last batch may be smaller, never a single image: see batch_bounds);
    random crop + flip when augment=True."""
    _check(batch_size, pad)
    n, device = len(y), x_u8.device
    perm = torch.randperm(n, generator=generator, device=generator.device).to(device)
    if augment:
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=generator.device).to(device)
        flips = (torch.rand(n, generator=generator, device=generator.device) < 0.5).to(device)
    mean_t, std_t = _stats(mean, std, device)
    for start, stop in batch_bounds(n, batch_size):
        idx = perm[start:stop]
        xb = x_u8[idx]
        if augment:
            xb = crop_and_flip(xb, offsets[start:stop], flips[start:stop], pad)
        yield _normalize(xb, mean_t, std_t, channels_last), y[idx]


def eval_batches(
    x_u8: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    channels_last: bool = False,
) -> Iterator[Batch]:
    """The data in stored order, unaugmented: ((x / 255 - mean) / std, y) per batch."""
    _check(batch_size, 0)
    mean_t, std_t = _stats(mean, std, x_u8.device)
    for start, stop in batch_bounds(len(y), batch_size):
        yield _normalize(x_u8[start:stop], mean_t, std_t, channels_last), y[start:stop]


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) of each batch over n items. A lone last item joins the batch before it: BatchNorm
    with batch statistics cannot normalize one image on a 1x1 map (or a [1, C] feature), and the
    authors' stem and VGG-like's hidden layer both end there."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def crop_and_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """x [B, C, H, W] -> [B, C, H, W]: the HxW window at offsets[i] = (dy, dx) of the zero-padded x[i],
    mirrored left-right where flips[i]. One gather for the whole batch (flip = reversed column index)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).flatten(2)  # [B, C, (H+2p)*(W+2p)], zeros outside
    ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    rows = offsets[:, 0, None] + ar_h  # [B, H]
    cols = offsets[:, 1, None] + torch.where(flips[:, None], w - 1 - ar_w, ar_w)  # [B, W]
    index = rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]  # [B, H, W] into the flattened padded image
    return torch.gather(padded, 2, index.view(b, 1, h * w).expand(-1, c, -1)).view(b, c, h, w)


def _stats(mean: Sequence[float], std: Sequence[float], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    as_tensor = lambda v: torch.as_tensor(v, dtype=torch.float32).reshape(1, -1, 1, 1).to(device)
    return as_tensor(mean), as_tensor(std)


def _normalize(x_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = x_u8.float().div_(255).sub_(mean).div_(std)  # (x / 255 - mean) / std, in place: no temporaries
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _check(batch_size: int, pad: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    if pad < 0:
        raise ConfigError(f"pad={pad} must be 0 or more")
