"""synth100: an embedded 100-class image dataset, generated on the fly (no download), for demos and tests.

Always the same data: everything is drawn from one CPU generator seeded with DATASET_SEED (not the
run's seed), so every run and every machine sees the same images. 32x32 RGB, 500 train + 100 test
images per class, stored class by class. Generation takes ~2 s for all 60k images (vectorized, in
chunks) and is cached per process.

Recipe, at 32 px on a 40x40 canvas (room for +-4 px of translation):
  class k:      a background colour, 2 sinusoidal gratings (orientation, 1-3.5 cycles per 32 px,
                colour) and 2 Gaussian blobs (sigma 2.5-6 px, colour). Colours come from a small
                palette shared by all classes, so colour alone only partly separates a task's classes.
  prototype p:  4 per class: the class's gratings with their own phase and +-0.25 rad orientation
                jitter, its blobs at their own positions (within 10 px of the centre).
  image:        a random prototype of its class, cut out at a random offset (+-4 px), then contrast
                x[0.6, 1.4] around the image mean, brightness +-0.15, per-channel gain x[0.7, 1.3],
                additive Gaussian noise (sigma 0.10), clipped to [0, 1] and rounded to uint8.
Other sizes (image_size) are the 32 px images resized with antialiasing.

Difficulty, measured on 10-class tasks (natural order) with a dense ResNet-18 from cldst.models,
one epoch of Adam (lr 1e-3, batch 128, crop + flip): 32 px width 16: 63-75% test accuracy (tasks 0,
3, 6); 32 px width 8: 42-55%; 16 px width 16: 47-52%; 16 px width 8: 30-47% (53-62% after 3 epochs,
tasks 0 and 6). For scale: nearest class mean gets 49-55% on colour statistics (per-channel mean and
std) and 60-72% on raw pixels; chance is 10%.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import torch

from cldst import data
from cldst.data.images import ImageDataset, resize_images
from cldst.paths import cache_dir

log = logging.getLogger(__name__)
VERSION = "v1"  # bump when the recipe below changes: the disk cache is keyed on it

DATASET_SEED = 20240101
NUM_CLASSES = data.NUM_CLASSES["synth100"]
TRAIN_PER_CLASS, TEST_PER_CLASS = 500, 100
SIZE, SHIFT = 32, 4
CANVAS = SIZE + 2 * SHIFT
PROTOTYPES, GRATINGS, BLOBS = 4, 2, 2
PALETTE = 12  # shared colours the classes draw from
NOISE = 0.10  # sigma of the additive Gaussian noise
CONTRAST, BRIGHTNESS, GAIN = 0.4, 0.15, 0.3  # per-image jitter: x[1-c, 1+c], +-b, per channel x[1-g, 1+g]
JITTER = 0.25  # rad of orientation jitter between prototypes
# Training-set statistics at 32 px (checked by tests/test_data_loaders.py).
MEAN = (0.5995, 0.5029, 0.4739)
STD = (0.2503, 0.2433, 0.2572)


def load_synth100(root: Path | None = None, *, image_size: int | None = None, download: bool = True,
                  seed: int = 0) -> ImageDataset:
    """Generated at image_size (default 32), the same for every root and seed (nothing is read or fetched)."""
    image_size = image_size or 32
    train_x, train_y, test_x, test_y = _images(image_size)
    names = [f"synth{k:02d}" for k in range(NUM_CLASSES)]
    # Clones: the cached tensors must not be changed through a dataset handed to the caller.
    return ImageDataset("synth100", train_x.clone(), train_y.clone(), test_x.clone(), test_y.clone(), names, MEAN, STD)


@functools.lru_cache(maxsize=4)
def _images(image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dataset at `image_size`, from the disk cache when there (each notebook kernel is a new
    process: reading 46 MB at 16 px takes ~0.1 s, generating 2-7 s)."""
    path = cache_dir() / f"synth100-{VERSION}-{image_size}px.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
            return cached["train_x"], cached["train_y"], cached["test_x"], cached["test_y"]
        except Exception as exc:  # a damaged cache is regenerated, never trusted
            log.warning("ignoring unreadable synth100 cache %s: %s", path, exc)
    images = _generate(image_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(dict(zip(("train_x", "train_y", "test_x", "test_y"), images)), tmp)
        os.replace(tmp, path)  # atomic: concurrent workers never read half a file
    except OSError as exc:
        log.warning("could not cache synth100 at %s: %s", path, exc)
    return images


def _generate(image_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if image_size != SIZE:
        train_x, train_y, test_x, test_y = _images(SIZE)
        return resize_images(train_x, image_size), train_y, resize_images(test_x, image_size), test_y
    g = torch.Generator().manual_seed(DATASET_SEED)
    protos = _prototypes(g)  # [K, P, 3, CANVAS, CANVAS] float in about [0, 1]
    train_y = torch.arange(NUM_CLASSES).repeat_interleave(TRAIN_PER_CLASS)
    test_y = torch.arange(NUM_CLASSES).repeat_interleave(TEST_PER_CLASS)
    return _samples(protos, train_y, g), train_y, _samples(protos, test_y, g), test_y


def _prototypes(g: torch.Generator) -> torch.Tensor:
    K, P, G, B = NUM_CLASSES, PROTOTYPES, GRATINGS, BLOBS
    rand = lambda *shape: torch.rand(shape, generator=g)
    pick = lambda *shape: torch.randint(0, PALETTE, shape, generator=g)
    palette = rand(PALETTE, 3)  # [PALETTE, 3] RGB in [0, 1]

    # Class-level choices.
    background = palette[pick(K)] * 0.6 + 0.2  # [K, 3]
    grating_color = palette[pick(K, G)] - 0.5  # [K, G, 3] signed: a grating adds and removes colour
    grating_theta = rand(K, G) * math.pi  # orientation
    grating_freq = 1.0 + 2.5 * rand(K, G)  # cycles per 32 px
    blob_color = palette[pick(K, B)] - background[:, None, :]  # [K, B, 3]: blobs pull toward their colour
    blob_sigma = 2.5 + 3.5 * rand(K, B)  # px

    # Prototype-level variation.
    theta = grating_theta[:, None] + JITTER * (2 * rand(K, P, G) - 1)  # [K, P, G]
    phase = 2 * math.pi * rand(K, P, G)
    centre = (2 * rand(K, P, B, 2) - 1) * 10.0  # px from the canvas centre

    coords = torch.arange(CANVAS, dtype=torch.float32) - (CANVAS - 1) / 2
    yy, xx = coords[:, None], coords[None, :]  # [CANVAS, 1], [1, CANVAS]
    along = xx * torch.cos(theta)[..., None, None] + yy * torch.sin(theta)[..., None, None]  # [K, P, G, C, C]
    wave = torch.sin(2 * math.pi * grating_freq[:, None, :, None, None] * along / SIZE + phase[..., None, None])
    gratings = torch.einsum("kpgyx,kgc->kpcyx", wave, grating_color * 0.5)

    dy = yy - centre[..., 0, None, None]  # [K, P, B, C, 1]
    dx = xx - centre[..., 1, None, None]  # [K, P, B, 1, C]
    bump = torch.exp(-(dy**2 + dx**2) / (2 * blob_sigma[:, None, :, None, None] ** 2))  # [K, P, B, C, C]
    blobs = torch.einsum("kpbyx,kbc->kpcyx", bump, blob_color)
    return background[:, None, :, None, None] + gratings + blobs  # [K, P, 3, C, C]


def _samples(protos: torch.Tensor, labels: torch.Tensor, g: torch.Generator, chunk: int = 2048) -> torch.Tensor:
    """One image per label: a random prototype of its class, shifted, photometrically jittered, noised."""
    n = len(labels)
    rand = lambda *shape: torch.rand(shape, generator=g)
    proto = torch.randint(0, PROTOTYPES, (n,), generator=g)
    offset = torch.randint(0, 2 * SHIFT + 1, (n, 2), generator=g)  # window corner on the canvas
    contrast = 1 - CONTRAST + 2 * CONTRAST * rand(n, 1, 1, 1)
    brightness = BRIGHTNESS * (2 * rand(n, 1, 1, 1) - 1)
    gain = 1 - GAIN + 2 * GAIN * rand(n, 3, 1, 1)

    # Work in 0..255 units with the +0.5 of rounding folded into the shift: uint8 conversion truncates.
    canvases = protos.mul(255).flatten(0, 1).contiguous()  # [K*P, 3, CANVAS, CANVAS]
    # Every SIZE x SIZE window of every canvas as a view (no copy): [K*P, 3, 9, 9, SIZE, SIZE].
    windows = canvases.unfold(2, SIZE, 1).unfold(3, SIZE, 1)
    out = torch.empty((n, 3, SIZE, SIZE), dtype=torch.uint8)
    for s in range(0, n, chunk):
        sl = slice(s, s + chunk)
        x = windows[labels[sl] * PROTOTYPES + proto[sl], :, offset[sl, 0], offset[sl, 1]]  # [b, 3, SIZE, SIZE]
        # ((x - m) * contrast + m + brightness) * gain, folded into one multiply-add per pixel.
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        scale = contrast[sl] * gain[sl]
        shift = (m * (1 - contrast[sl]) + 255 * brightness[sl]) * gain[sl] + 0.5
        x = torch.addcmul(shift, x, scale).add_(torch.randn(x.shape, generator=g), alpha=255 * NOISE)
        out[sl] = x.clamp_(0, 255)
    return out
