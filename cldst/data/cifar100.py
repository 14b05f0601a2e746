"""CIFAR-100, the official "python version" (Krizhevsky 2009): 100 classes, 500 train + 100 test each.

Looked for under `root`, in order: the extracted `cifar-100-python/` folder (files train, test, meta),
then the `cifar-100-python.tar.gz` archive, read straight from the tarball (nothing is extracted into
the user's folder). If neither is there and download=True, the archive is fetched with pooch (md5
checked) into `root`.

The files are Python-2 pickles of dicts with bytes keys: b"data" is uint8 [N, 3072] with each row
the 3 colour planes of a 32x32 image (CHW, row-major), b"fine_labels" the class ids; meta holds
b"fine_label_names".
"""

from __future__ import annotations

import io
import logging
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cldst import data
from cldst.data.images import ImageDataset
from cldst.errors import DataError

log = logging.getLogger(__name__)

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
FOLDER = "cifar-100-python"
ARCHIVE = "cifar-100-python.tar.gz"
MEMBERS = ("train", "test", "meta")
NUM_CLASSES = data.NUM_CLASSES["cifar100"]
MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)


def load_cifar100(root: Path, *, image_size: int | None = None, download: bool = True, seed: int = 0) -> ImageDataset:
    """The 32 px dataset (load_dataset resizes to image_size); seed is not used."""
    folder, archive = root / FOLDER, root / ARCHIVE
    if folder.is_dir():
        raw = {m: _read_file(folder / m) for m in MEMBERS}
    else:
        if not archive.is_file():
            if not download:
                raise DataError(
                    f"CIFAR-100 not found: looked for {folder}/ and {archive} (download=False); "
                    f"download {URL} and put it in {root}"
                )
            _download(root)
        raw = _read_tarball(archive)

    train_x, train_y = _parse_split(raw["train"])
    test_x, test_y = _parse_split(raw["test"])
    names = _parse_meta(raw["meta"])
    return ImageDataset("cifar100", train_x, train_y, test_x, test_y, names, MEAN, STD)


def _download(root: Path) -> None:
    import pooch  # only needed on first use

    log.info("downloading CIFAR-100 (161 MB) from %s into %s", URL, root)
    try:
        pooch.retrieve(URL, known_hash=f"md5:{MD5}", fname=ARCHIVE, path=root, progressbar=False)
    except Exception as err:  # network errors, hash mismatch, unwritable folder: all mean "not available"
        reason = " ".join(str(err).split())
        raise DataError(
            f"CIFAR-100 not found in {root} ({FOLDER}/ or {ARCHIVE}) and the download failed ({reason}); "
            f"download {URL} by hand and put it in {root}"
        ) from None


def _read_file(path: Path) -> tuple[str, bytes]:
    try:
        return str(path), path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read CIFAR-100 file ({err.strerror or err})") from None


def _read_tarball(archive: Path) -> dict[str, tuple[str, bytes]]:
    """One pass over the tarball, keeping the three members (any top folder name)."""
    found: dict[str, tuple[str, bytes]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in MEMBERS:
                    data = tar.extractfile(member)
                    assert data is not None  # regular file
                    found[base] = (f"{archive}:{member.name}", data.read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"{archive}: not a readable tar.gz archive ({' '.join(str(err).split())})") from None
    missing = [m for m in MEMBERS if m not in found]
    if missing:
        raise DataError(f"{archive}: member(s) {', '.join(f'{FOLDER}/{m}' for m in missing)} missing")
    return found


def _unpickle(source: tuple[str, bytes]) -> dict[bytes, Any]:
    where, payload = source
    try:
        obj = pickle.load(io.BytesIO(payload), encoding="bytes")
    except Exception as err:  # UnpicklingError, EOFError, ValueError...: all mean a damaged file
        raise DataError(f"{where}: not a valid CIFAR-100 pickle ({type(err).__name__})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _parse_split(source: tuple[str, bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    where = source[0]
    obj = _unpickle(source)
    for key in (b"data", b"fine_labels"):
        if key not in obj:
            raise DataError(f"{where}: key {key!r} missing")
    data = np.asarray(obj[b"data"])
    labels = np.asarray(obj[b"fine_labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: b'data' must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: b'fine_labels' must be {data.shape[0]} integers, got {labels.dtype} {list(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{where}: b'fine_labels' outside 0..{NUM_CLASSES - 1}")
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows are CHW planes
    return x, torch.from_numpy(labels.astype(np.int64))


def _parse_meta(source: tuple[str, bytes]) -> list[str]:
    where = source[0]
    obj = _unpickle(source)
    names = obj.get(b"fine_label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise DataError(f"{where}: b'fine_label_names' must be a list of {NUM_CLASSES} names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
