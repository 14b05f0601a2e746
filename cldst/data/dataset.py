"""`load_dataset`: a dataset by name, through the loader registered for it in `cldst.data.LOADERS`.

A loader is `load(root: Path, *, image_size: int | None, download: bool, seed: int) -> ImageDataset`
and returns the whole dataset; it may use the arguments it needs and ignore the others (only
miniImageNet decodes at `image_size` and splits by `seed`; only CIFAR-100 downloads). This module
then applies what is common to all of them: resizing to `image_size` and keeping the first n images
per class (`train_per_class` / `test_per_class`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cldst.data import LOADERS, canonical_name
from cldst.data.images import ImageDataset, first_per_class, resize_images
from cldst.errors import ConfigError
from cldst.lazy import resolve
from cldst.paths import data_dir

log = logging.getLogger(__name__)


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
    key = canonical_name(name, field="dataset")
    for field, value in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{field}={value!r} is not allowed (0 = all images, or a positive count)")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image_size={image_size!r} is not allowed (None = native, or a positive pixel count)")
    root = Path(root).expanduser() if root is not None else data_dir()

    ds = resolve(LOADERS[key])(root, image_size=image_size, download=download, seed=seed)

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
