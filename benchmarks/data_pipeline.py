"""Throughput of the training batch pipeline (cldst.data.train_batches) against two reference points.

  train_batches   device-resident uint8, batched random crop (pad 4) + flip, normalize    (what cldst uses)
  plain_index     device-resident uint8, shuffled indexing + float + normalize, no augmentation (the floor)
  dataloader      torch DataLoader over a CPU TensorDataset with per-sample Python crop/flip and
                  normalize, then .to(device)        (what a torchvision-style pipeline does)

Each pipeline runs whole epochs over N random 32x32 images (N = one 10-class CIFAR-100 task) with
batch 128; the table gives batches/s, images/s and the speed relative to train_batches.

    python benchmarks/data_pipeline.py            # CPU, and CUDA when available
    python benchmarks/data_pipeline.py --quick    # tiny run (seconds), for smoke tests
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cldst.data import train_batches

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def plain_index(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterable:
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    perm = torch.randperm(len(y), generator=generator).to(x.device)
    for start in range(0, len(y), batch_size):
        idx = perm[start : start + batch_size]
        yield x[idx].float().div_(255).sub_(mean).div_(std), y[idx]


class PerSampleAugment(Dataset):
    """One image at a time, as torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip + Normalize."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, pad: int = 4):
        self.x, self.y, self.pad = x, y, pad
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = F.pad(self.x[i], (self.pad,) * 4)
        dy, dx = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        h, w = self.x.shape[-2:]
        img = img[:, dy : dy + h, dx : dx + w]
        if torch.rand(()) < 0.5:
            img = img.flip(2)
        return (img.float() / 255 - self.mean) / self.std, self.y[i]


def dataloader(x_cpu: torch.Tensor, y_cpu: torch.Tensor, batch_size: int, device: torch.device) -> Iterable:
    loader = DataLoader(PerSampleAugment(x_cpu, y_cpu), batch_size=batch_size, shuffle=True, num_workers=0)
    for xb, yb in loader:
        yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


def measure(epoch: Callable[[], Iterable], device: torch.device, epochs: int) -> tuple[float, int]:
    """Seconds of the fastest of `epochs` timed epochs (after one warm-up), and batches per epoch.

    The fastest, not the mean: on a shared machine other processes only ever add time."""

    def run() -> int:
        n = 0
        for _ in epoch():
            n += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n

    batches = run()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times), batches


def bench_device(device: torch.device, n: int, batch_size: int, epochs: int) -> list[tuple[str, str, float, float]]:
    torch.manual_seed(0)
    x_cpu = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    y_cpu = torch.randint(0, 10, (n,))
    x, y = x_cpu.to(device), y_cpu.to(device)
    g = torch.Generator().manual_seed(0)
    pipelines = {
        "train_batches": lambda: train_batches(x, y, batch_size, mean=MEAN, std=STD, generator=g),
        "plain_index": lambda: plain_index(x, y, batch_size, g),
        "dataloader": lambda: dataloader(x_cpu, y_cpu, batch_size, device),
    }
    rows = []
    for name, epoch in pipelines.items():
        seconds, batches = measure(epoch, device, epochs)
        rows.append((device.type, name, batches / seconds, n / seconds))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run: 512 images, 1 timed epoch")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto = cpu, plus cuda if present")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=5000, help="images per epoch (5000 = one 10-class CIFAR task)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per pipeline (the fastest is reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, epochs = (512, 1) if args.quick else (args.images, args.epochs)
    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {n} images 3x32x32, batch {args.batch_size}")
    print(f"{'device':<7}{'pipeline':<16}{'batches/s':>12}{'images/s':>13}{'vs train_batches':>18}")
    for device in devices:
        rows = bench_device(torch.device(device), n, args.batch_size, epochs)
        ours = rows[0][3]
        for dev, name, bps, ips in rows:
            print(f"{dev:<7}{name:<16}{bps:>12.1f}{ips:>13.0f}{ips / ours:>17.2f}x")


if __name__ == "__main__":
    main()
