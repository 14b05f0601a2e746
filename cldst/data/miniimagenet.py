"""miniImageNet from the Kaggle zip the authors point to: 100 class folders (n01532829/, ...) of JPEGs.

The zip (`miniImageNet.zip` or `miniImageNet100.zip` in `root`, class folders at the top or inside
one top-level folder) is read in place, never extracted, moved or modified. The first load decodes
every image (Pillow, in a thread pool), resizes it to `image_size` (bilinear, antialiased) and
stores the uint8 array in cache_dir() as an .npz keyed by a hash of the zip's listing (member names,
sizes, CRCs) and the image size; later loads read that file instead.

Split (deterministic, unlike the authors' code that moved random files on first run): classes sorted
by folder name; per class the images sorted by name, then a permutation drawn from a generator
seeded with `seed` picks 500 train and the next 100 test images. A class with fewer than 600 images
gives 1/6 of them (rounded down) to test and the rest to train, with a warning. Within each part the
images keep their name order.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from cldst.data.images import ImageDataset
from cldst.errors import DataError
from cldst.paths import cache_dir

log = logging.getLogger(__name__)

ZIP_NAMES = ("miniImageNet.zip", "miniImageNet100.zip")
KAGGLE_URL = "https://www.kaggle.com/datasets/arjunashok33/miniimagenet"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TRAIN_PER_CLASS, TEST_PER_CLASS = 500, 100
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics
STD = (0.229, 0.224, 0.225)


def load_miniimagenet(root: Path, *, image_size: int | None = None, download: bool = True, seed: int = 0) -> ImageDataset:
    """Decoded at image_size (default 32, the authors'), split by seed; nothing can be downloaded."""
    image_size = image_size or 32
    archive = find_zip(root)
    try:
        with zipfile.ZipFile(archive) as zf:
            classes = list_classes(zf, archive)
            cache = cache_dir() / f"miniimagenet-{image_size}px-{listing_digest(zf)}.npz"
            if cache.is_file():
                images, counts = _read_cache(cache)
            else:
                images, counts = _decode_all(zf, archive, classes, image_size)
                _write_cache(cache, images, counts)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise DataError(f"{archive}: not a readable zip file ({err})") from None
    names = sorted(classes)
    if counts != [len(classes[c]) for c in names] or images.shape != (sum(counts), 3, image_size, image_size):
        raise DataError(f"{cache}: cached arrays do not match {archive}; delete the cache file")
    train_idx, test_idx = split_indices(counts, names, seed)
    labels = torch.repeat_interleave(torch.arange(len(names)), torch.as_tensor(counts))
    return ImageDataset(
        "miniimagenet",
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], names, MEAN, STD,
    )


def find_zip(root: Path) -> Path:
    for name in ZIP_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"miniImageNet not found: looked for {' or '.join(ZIP_NAMES)} in {root}; "
        f"download the zip from {KAGGLE_URL} and put it there"
    )


def list_classes(zf: zipfile.ZipFile, archive: Path) -> dict[str, list[str]]:
    """class folder name -> its image members, sorted by name. Accepts one optional top-level folder."""
    infos = [i for i in zf.infolist() if not any(part.startswith((".", "__MACOSX")) for part in i.filename.split("/"))]
    dirs = [PurePosixPath(i.filename) for i in infos if i.is_dir()]
    files = [PurePosixPath(i.filename) for i in infos if not i.is_dir()]
    files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    tops = {p.parts[0] for p in files} | {p.parts[0] for p in dirs}
    strip = 1 if len(tops) == 1 and all(len(p.parts) >= 3 for p in files) else 0

    classes: dict[str, list[str]] = {}
    for d in dirs:  # explicit folder entries let an empty class folder be reported
        if len(d.parts) == strip + 1:
            classes.setdefault(d.parts[strip], [])
    for f in files:
        if len(f.parts) == strip + 2:
            classes.setdefault(f.parts[strip], []).append(str(f))
    if not classes:
        raise DataError(
            f"{archive}: no class folders of images found (expected <class>/<image>.jpg, "
            f"optionally inside one top-level folder)"
        )
    empty = sorted(c for c, members in classes.items() if not members)
    if empty:
        raise DataError(f"{archive}: class folder(s) {', '.join(empty)} contain no images")
    return {c: sorted(members) for c, members in classes.items()}


def listing_digest(zf: zipfile.ZipFile) -> str:
    """sha256 of the central directory (name, size, CRC): changes when any member changes, reads no image."""
    h = hashlib.sha256()
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        h.update(f"{info.filename}\0{info.file_size}\0{info.CRC}\n".encode())
    return h.hexdigest()[:16]


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Encoded image bytes -> uint8 [3, size, size] (RGB, bilinear antialiased resize)."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size, size))  # JPEG: let libjpeg decode at a reduced scale >= size (much faster)
        img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img).transpose(2, 0, 1)


def _decode_all(
    zf: zipfile.ZipFile, archive: Path, classes: dict[str, list[str]], size: int
) -> tuple[torch.Tensor, list[int]]:
    members = [m for c in sorted(classes) for m in classes[c]]
    counts = [len(classes[c]) for c in sorted(classes)]
    log.info("decoding %d images of %s at %d px (cached afterwards)", len(members), archive, size)

    def decode(member: str) -> np.ndarray:
        try:
            return decode_image(zf.read(member), size)  # ZipFile reads are serialized by its own lock
        except Exception as err:
            raise DataError(f"{archive}: cannot decode {member} ({type(err).__name__}: {err})") from None

    out = np.empty((len(members), 3, size, size), dtype=np.uint8)
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)  # Pillow releases the GIL while decoding
    try:
        for i, img in enumerate(pool.map(decode, members)):
            out[i] = img
    finally:
        pool.shutdown(cancel_futures=True)  # after a bad image, don't decode the rest
    return torch.from_numpy(out), counts


def _write_cache(path: Path, images: torch.Tensor, counts: list[int]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, images=images.numpy(), counts=np.asarray(counts, dtype=np.int64))
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache that looks complete
    except OSError as err:  # the images are fine; only the next load will be slow
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.warning("could not write the miniImageNet cache %s (%s); set CLDST_CACHE to a writable folder", path, err)


def _read_cache(path: Path) -> tuple[torch.Tensor, list[int]]:
    try:
        with np.load(path) as z:
            return torch.from_numpy(z["images"]), z["counts"].tolist()
    except Exception as err:
        raise DataError(f"{path}: unreadable cache file ({type(err).__name__}); delete it to rebuild") from None


def split_indices(counts: list[int], names: list[str], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into the class-by-class image array: per class a seeded permutation picks train, then test."""
    generator = torch.Generator().manual_seed(seed)
    train, test, start = [], [], 0
    for name, n in zip(names, counts):
        if n >= TRAIN_PER_CLASS + TEST_PER_CLASS:
            n_train, n_test = TRAIN_PER_CLASS, TEST_PER_CLASS
        else:
            n_test = n // 6
            n_train = n - n_test
            log.warning("miniImageNet class %s has %d images (< 600): split %d train / %d test", name, n, n_train, n_test)
        perm = torch.randperm(n, generator=generator)
        train.append(start + perm[:n_train].sort().values)
        test.append(start + perm[n_train : n_train + n_test].sort().values)
        start += n
    return torch.cat(train), torch.cat(test)
