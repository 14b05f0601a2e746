"""Task tensors and batch iterators: exact crops/flips against a slow per-sample reference."""

from __future__ import annotations

import pytest
import torch

from cldst.data import ImageDataset, TaskSplit, crop_and_flip, eval_batches, task_tensors, train_batches
from cldst.data.batches import batch_bounds
from cldst.errors import ConfigError

MEAN, STD = (0.5, 0.25, 0.125), (0.25, 0.5, 0.125)


def normalized(x_u8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x_u8.float() / 255 - mean) / std


def slow_augment(x_u8: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-sample reference: zero-pad, cut the window at (dy, dx), flip left-right when asked."""
    out = []
    for img, (dy, dx), flip in zip(x_u8, offsets.tolist(), flips.tolist()):
        c, h, w = img.shape
        padded = torch.zeros((c, h + 2 * pad, w + 2 * pad), dtype=img.dtype)
        padded[:, pad : pad + h, pad : pad + w] = img
        crop = padded[:, dy : dy + h, dx : dx + w]
        out.append(crop[:, :, list(reversed(range(w)))] if flip else crop)
    return torch.stack(out)


def images(n: int, size: int = 5) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(1, 256, (n, 3, size, size), dtype=torch.uint8)  # no zeros: padding shows up


def test_crop_and_flip_hand_computed():
    x = torch.arange(1, 10, dtype=torch.uint8).view(1, 1, 3, 3).expand(4, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    offsets = torch.tensor([[0, 0], [2, 2], [1, 1], [0, 2]])
    no_flip = torch.zeros(4, dtype=torch.bool)
    assert crop_and_flip(x, offsets, no_flip, pad=1)[:, 0].tolist() == [
        [[0, 0, 0], [0, 1, 2], [0, 4, 5]],
        [[5, 6, 0], [8, 9, 0], [0, 0, 0]],
        [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        [[0, 0, 0], [2, 3, 0], [5, 6, 0]],
    ]
    flipped = crop_and_flip(x, offsets, torch.tensor([True, False, True, False]), pad=1)[:, 0].tolist()
    assert flipped[0] == [[0, 0, 0], [2, 1, 0], [5, 4, 0]] and flipped[2] == [[3, 2, 1], [6, 5, 4], [9, 8, 7]]
    assert flipped[1] == [[5, 6, 0], [8, 9, 0], [0, 0, 0]]
    assert torch.equal(crop_and_flip(x, torch.zeros(4, 2, dtype=torch.long), no_flip, pad=0), x)


def test_train_batches_match_the_slow_reference_exactly():
    x, y = images(10), torch.arange(10) * 3
    got = list(train_batches(x, y, 4, mean=MEAN, std=STD, generator=torch.Generator().manual_seed(7), pad=2))
    # Same seed, same documented draw order: permutation, offsets [N, 2], flips.
    g = torch.Generator().manual_seed(7)
    perm = torch.randperm(10, generator=g)
    offsets = torch.randint(0, 5, (10, 2), generator=g)
    flips = torch.rand(10, generator=g) < 0.5
    assert 0 < int(flips.sum()) < 10 and len(set(map(tuple, offsets.tolist()))) > 5  # the draw exercises both
    expected = normalized(slow_augment(x[perm], offsets, flips, pad=2))
    assert [len(b) for _, b in got] == [4, 4, 2]  # last partial batch included
    assert torch.equal(torch.cat([b for _, b in got]), y[perm])
    assert torch.equal(torch.cat([b for b, _ in got]), expected)  # bitwise
    assert got[0][0].dtype == torch.float32 and got[0][0].shape == (4, 3, 5, 5)


def test_train_batches_without_augmentation_only_shuffle():
    x, y = images(7), torch.arange(7)
    got = list(train_batches(x, y, 3, mean=MEAN, std=STD, generator=torch.Generator().manual_seed(1), augment=False))
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat([b for _, b in got]), perm)
    assert torch.equal(torch.cat([b for b, _ in got]), normalized(x[perm]))


def test_same_generator_state_same_batches_and_epochs_differ():
    x, y = images(9), torch.arange(9)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    run = lambda g: [b for b, _ in train_batches(x, y, 4, mean=MEAN, std=STD, generator=g)]
    first, again = run(g1), run(g2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    second_epoch = run(g1)
    assert not all(torch.equal(a, b) for a, b in zip(first, second_epoch))


def test_batch_bounds_never_leave_a_single_image_alone():
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(9, 4) == [(0, 4), (4, 9)]
    assert batch_bounds(8, 4) == [(0, 4), (4, 8)]
    assert batch_bounds(1, 4) == [(0, 1)]  # nothing to join
    assert batch_bounds(0, 4) == []
    x, y = images(9), torch.arange(9)
    got = list(train_batches(x, y, 4, mean=MEAN, std=STD, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for _, b in got] == [4, 5]


def test_eval_batches_in_order_unaugmented_exact():
    x = images(5)
    x[0] = 255
    x[1] = 0
    y = torch.tensor([4, 3, 2, 1, 0])
    got = list(eval_batches(x, y, 2, mean=MEAN, std=STD))
    assert [len(b) for _, b in got] == [2, 3]  # the lone fifth image joins the batch before it
    assert torch.equal(torch.cat([b for _, b in got]), y)
    assert torch.equal(torch.cat([b for b, _ in got]), normalized(x))
    # (1 - mean) / std and (0 - mean) / std per channel, by hand:
    assert got[0][0][0, :, 0, 0].tolist() == [2.0, 1.5, 7.0]
    assert got[0][0][1, :, 0, 0].tolist() == [-2.0, -0.5, -1.0]


def test_channels_last():
    x, y = images(4), torch.arange(4)
    plain = next(eval_batches(x, y, 4, mean=MEAN, std=STD))[0]
    cl = next(eval_batches(x, y, 4, mean=MEAN, std=STD, channels_last=True))[0]
    assert cl.is_contiguous(memory_format=torch.channels_last) and not plain.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(cl, plain)
    g = torch.Generator().manual_seed(0)
    xb, _ = next(train_batches(x, y, 4, mean=MEAN, std=STD, generator=g, channels_last=True))
    assert xb.is_contiguous(memory_format=torch.channels_last)


def test_bad_batch_size_or_pad():
    x, y = images(2), torch.arange(2)
    with pytest.raises(ConfigError, match="batch_size=0 must be at least 1"):
        next(eval_batches(x, y, 0, mean=MEAN, std=STD))
    with pytest.raises(ConfigError, match="pad=-1"):
        next(train_batches(x, y, 2, mean=MEAN, std=STD, generator=torch.Generator(), pad=-1))


def make_dataset() -> ImageDataset:
    train_y = torch.tensor([5, 0, 3, 1, 0, 2, 4, 5, 3, 1, 2, 4])
    test_y = torch.tensor([3, 5, 0, 1, 2, 4])
    mark = lambda n: torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()  # image i is all i
    names = [f"c{k}" for k in range(6)]
    return ImageDataset("toy", mark(12), train_y, 100 + mark(6), test_y, names, MEAN, STD)


def test_task_tensors_local_labels_in_stored_order():
    ds = make_dataset()
    split = TaskSplit((3, 5, 0, 1, 2, 4), num_tasks=3)
    task = task_tensors(ds, split, 0, "cpu")
    assert task.task == 0 and task.classes == (3, 5)
    assert task.train_x[:, 0, 0, 0].tolist() == [0, 2, 7, 8]  # images of classes 5, 3, 5, 3 in stored order
    assert task.train_y.tolist() == [1, 0, 1, 0]  # class 3 -> 0, class 5 -> 1
    assert task.test_x[:, 0, 0, 0].tolist() == [100, 101] and task.test_y.tolist() == [0, 1]
    assert task.train_x.dtype == torch.uint8 and task.train_y.dtype == torch.int64
    last = task_tensors(ds, split, 2, torch.device("cpu"))
    assert last.classes == (2, 4) and last.train_y.tolist() == [0, 1, 0, 1] and last.test_y.tolist() == [0, 1]


def test_task_tensors_checks_the_split_fits_the_dataset():
    with pytest.raises(ConfigError, match="split has 4 classes but dataset 'toy' has 6"):
        task_tensors(make_dataset(), TaskSplit((0, 1, 2, 3), 2), 0, "cpu")
    with pytest.raises(ConfigError, match="task 3 is out of range"):
        task_tensors(make_dataset(), TaskSplit(tuple(range(6)), 3), 3, "cpu")


def test_crop_and_flip_on_a_real_sized_batch_equals_the_reference():
    torch.manual_seed(1)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    offsets, flips = torch.randint(0, 9, (64, 2)), torch.rand(64) < 0.5
    offsets[0], flips[0] = torch.tensor([4, 4]), False
    fast = crop_and_flip(x, offsets, flips, pad=4)
    assert torch.equal(fast, slow_augment(x, offsets, flips, pad=4))
    centre = offsets.eq(4).all(1) & ~flips
    assert torch.equal(fast[centre], x[centre]) and centre[0]  # centre offset, no flip = the image itself
