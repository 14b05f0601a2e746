"""Dataset loaders on tiny files written in the real formats (no downloads), and the embedded synth100."""

from __future__ import annotations

import io
import logging
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from cldst.data import DATASETS, ImageDataset, load_dataset
from cldst.data import cifar100 as cifar_module
from cldst.data import miniimagenet as mini_module
from cldst.data import synth100 as synth_module
from cldst.errors import ConfigError, DataError

# ----------------------------------------------------------------------------------------- CIFAR-100

CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS = 2, 1


def cifar_rows(n: int, salt: int) -> np.ndarray:
    """uint8 [n, 3072]: row i, flat position j holds (7 i + j + salt) mod 256, so every pixel is traceable."""
    return ((7 * np.arange(n)[:, None] + np.arange(3072)[None, :] + salt) % 256).astype(np.uint8)


def cifar_labels(per_class: int) -> list[int]:
    return [(i * 37) % 100 for i in range(100 * per_class)]  # interleaved classes, like the real files


def cifar_pickles() -> dict[str, bytes]:
    """train/test/meta as Python 2 pickled them: protocol 2, bytes keys, label names as bytes."""
    def split(per_class: int, salt: int) -> bytes:
        labels = cifar_labels(per_class)
        obj = {
            b"filenames": [b"img_%d.png" % i for i in range(len(labels))],
            b"batch_label": b"training batch 1 of 1",
            b"fine_labels": labels,
            b"coarse_labels": [k // 5 for k in labels],
            b"data": cifar_rows(len(labels), salt),
        }
        return pickle.dumps(obj, protocol=2)

    meta = {b"fine_label_names": [b"class_%02d" % k for k in range(100)],
            b"coarse_label_names": [b"super_%02d" % k for k in range(20)]}
    return {"train": split(CIFAR_TRAIN_PER_CLASS, 0), "test": split(CIFAR_TEST_PER_CLASS, 3),
            "meta": pickle.dumps(meta, protocol=2)}


def write_cifar_folder(root, files: dict[str, bytes]) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, payload in files.items():
        (folder / name).write_bytes(payload)


def write_cifar_tarball(root, files: dict[str, bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
        for name, payload in {"file.txt~": b"", **files}.items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def snapshot(folder) -> dict[str, tuple[bytes, int]]:
    """Every file under folder -> (bytes, mtime_ns): to prove the loader changed nothing."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def check_cifar(ds) -> None:
    assert ds.name == "cifar100" and ds.num_classes == 100 and ds.image_size == 32
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (100, 3, 32, 32)
    assert ds.train_y.tolist() == cifar_labels(2) and ds.train_y.dtype == torch.int64
    assert ds.test_y.tolist() == cifar_labels(1)
    # Row i is the 3 colour planes: pixel (c, h, w) sits at flat position c*1024 + h*32 + w.
    assert int(ds.train_x[1, 2, 3, 5]) == (7 * 1 + 2 * 1024 + 3 * 32 + 5) % 256 == 108
    assert int(ds.test_x[0, 1, 0, 0]) == (1024 + 3) % 256 == 3
    assert torch.equal(ds.train_x.reshape(200, -1), torch.from_numpy(cifar_rows(200, 0)))
    assert torch.equal(ds.test_x.reshape(100, -1), torch.from_numpy(cifar_rows(100, 3)))
    assert ds.class_names[:2] == ["class_00", "class_01"] and len(ds.class_names) == 100
    assert ds.mean == (0.5071, 0.4865, 0.4409) and ds.std == (0.2673, 0.2564, 0.2762)


def test_cifar_folder_and_tarball_give_the_exact_pixels(tmp_path):
    files = cifar_pickles()
    write_cifar_folder(tmp_path / "a", files)
    write_cifar_tarball(tmp_path / "b", files)
    before = snapshot(tmp_path / "b")
    from_folder = load_dataset("cifar100", root=tmp_path / "a", download=False)
    from_tarball = load_dataset("CIFAR100", root=tmp_path / "b", download=False)
    check_cifar(from_folder)
    check_cifar(from_tarball)
    assert snapshot(tmp_path / "b") == before  # nothing extracted next to the user's tarball


def test_cifar_subsample_and_resize(tmp_path):
    write_cifar_folder(tmp_path, cifar_pickles())
    ds = load_dataset("cifar100", root=tmp_path, download=False, train_per_class=1, image_size=16)
    assert ds.train_x.shape == (100, 3, 16, 16) and ds.test_x.shape == (100, 3, 16, 16)
    assert ds.train_y.tolist() == cifar_labels(2)[:100]  # the first image of each class, in stored order
    full = torch.from_numpy(cifar_rows(100, 0)).reshape(100, 3, 32, 32).float()
    expected = torch.nn.functional.interpolate(full, size=(16, 16), mode="bilinear", antialias=True)
    assert torch.equal(ds.train_x, expected.round().clamp(0, 255).to(torch.uint8))


def test_cifar_missing_files_say_where_they_were_looked_for(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar100", root=tmp_path, download=False)
    message = str(err.value)
    assert str(tmp_path / "cifar-100-python") in message and str(tmp_path / "cifar-100-python.tar.gz") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message and "\n" not in message


def test_cifar_failed_download_is_a_data_error(tmp_path, monkeypatch):
    import pooch

    calls = []

    def offline(url, known_hash, **kwargs):
        calls.append((url, known_hash, kwargs["path"]))
        raise ConnectionError("network unreachable\nsecond line")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DataError, match="download failed \\(network unreachable second line\\)"):
        load_dataset("cifar100", root=tmp_path, download=True)
    assert calls == [(cifar_module.URL, "md5:eb9058c3a382ffc7106e4002c42a8d85", tmp_path)]


@pytest.mark.parametrize(
    ("member", "payload", "complaint"),
    [
        ("train", b"\x80\x02garbage", "not a valid CIFAR-100 pickle"),
        ("train", pickle.dumps({b"data": cifar_rows(2, 0)}, protocol=2), "key b'fine_labels' missing"),
        ("test", pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"fine_labels": [0, 1]}, protocol=2),
         "b'data' must be uint8 [N, 3072], got uint8 [2, 3000]"),
        ("test", pickle.dumps({b"data": cifar_rows(2, 0), b"fine_labels": [0, 100]}, protocol=2), "outside 0..99"),
        ("meta", pickle.dumps({b"fine_label_names": [b"a"]}, protocol=2), "list of 100 names"),
    ],
)
def test_cifar_corrupt_content_names_the_file(tmp_path, member, payload, complaint):
    write_cifar_folder(tmp_path, {**cifar_pickles(), member: payload})
    with pytest.raises(DataError) as err:
        load_dataset("cifar100", root=tmp_path, download=False)
    assert str(tmp_path / "cifar-100-python" / member) in str(err.value) and complaint in str(err.value)


def test_cifar_tarball_missing_a_member_or_not_a_tarball(tmp_path):
    files = cifar_pickles()
    del files["test"]
    write_cifar_tarball(tmp_path, files)
    with pytest.raises(DataError, match="member\\(s\\) cifar-100-python/test missing"):
        load_dataset("cifar100", root=tmp_path, download=False)
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"not a tarball at all")
    with pytest.raises(DataError, match="not a readable tar.gz archive"):
        load_dataset("cifar100", root=tmp_path, download=False)


# ------------------------------------------------------------------------------------- miniImageNet

MINI_CLASSES = ["n03", "n01", "n04", "n02"]  # written unsorted: the loader must sort them
MINI_IMAGES = 6


def solid_jpeg(rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def colour(class_name: str, image: int) -> tuple[int, int, int]:
    """Class in the red channel, image number in the green one: every image identifiable after decoding."""
    return (40 * int(class_name[1:]), 30 * image + 20, 128)


def write_mini_zip(path, *, top: str = "", folder_entries: bool = False, extra: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        if folder_entries and top:
            zf.writestr(f"{top}/", b"")
        for c in MINI_CLASSES:
            if folder_entries:
                zf.writestr(f"{top}/{c}/".lstrip("/"), b"")
            for i in reversed(range(MINI_IMAGES)):  # unsorted members too
                zf.writestr(f"{top}/{c}/{c}_{i:03d}.jpg".lstrip("/"), solid_jpeg(colour(c, i)))
        for name, payload in (extra or {}).items():
            zf.writestr(name, payload)


def identify(x: torch.Tensor) -> list[tuple[int, int]]:
    """Decoded solid 8x8 images [N, 3, 8, 8] -> (class number, image number) of each, read back from colour."""
    mean = x.float().mean(dim=(2, 3))
    return [(round(r / 40), round((g - 20) / 30)) for r, g, _ in mean.tolist()]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CLDST_CACHE", str(folder))
    return folder


@pytest.mark.parametrize(
    ("zip_name", "top", "folder_entries"),
    [("miniImageNet.zip", "miniImageNet", True), ("miniImageNet100.zip", "", False), ("miniImageNet.zip", "", True)],
)
def test_miniimagenet_layouts_classes_and_split(tmp_path, cache, caplog, zip_name, top, folder_entries):
    root = tmp_path / "data"
    root.mkdir()
    write_mini_zip(root / zip_name, top=top, folder_entries=folder_entries)
    with caplog.at_level(logging.WARNING, logger="cldst.data.miniimagenet"):
        ds = load_dataset("miniImageNet", root=root, image_size=8)
    assert ds.name == "miniimagenet" and ds.class_names == ["n01", "n02", "n03", "n04"]
    assert ds.train_x.shape == (20, 3, 8, 8) and ds.test_x.shape == (4, 3, 8, 8)  # 6 images: 5 train, 1 test
    assert ds.train_y.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5 and ds.test_y.tolist() == [0, 1, 2, 3]
    assert sum("has 6 images (< 600): split 5 train / 1 test" in r.message for r in caplog.records) == 4
    train, test = identify(ds.train_x), identify(ds.test_x)
    for k in range(4):  # label k is folder n0{k+1}; its 6 images are split, each used exactly once
        assert {c for c, _ in train[5 * k : 5 * k + 5]} == {k + 1} and test[k][0] == k + 1
        images = [i for _, i in train[5 * k : 5 * k + 5]]
        assert images == sorted(images) and sorted(images + [test[k][1]]) == list(range(6))
    assert [i for _, i in test] == [4, 1, 0, 4]  # pinned: seed 0's test image per class
    assert (ds.train_x.float().mean(dim=(2, 3)) - torch.tensor([colour(f"n0{c}", i) for c, i in train])).abs().max() <= 3


def test_miniimagenet_split_depends_only_on_seed(tmp_path, cache):
    write_mini_zip(tmp_path / "miniImageNet.zip")
    a = load_dataset("miniimagenet", root=tmp_path, image_size=8, seed=0)
    b = load_dataset("miniImagenet100", root=tmp_path, image_size=8, seed=0)
    c = load_dataset("miniimagenet", root=tmp_path, image_size=8, seed=1)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert identify(c.test_x) != identify(a.test_x)
    assert sorted(identify(c.train_x) + identify(c.test_x)) == sorted(identify(a.train_x) + identify(a.test_x))


def test_miniimagenet_second_load_uses_the_cache_and_leaves_user_files_alone(tmp_path, cache, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    write_mini_zip(root / "miniImageNet.zip", top="miniImageNet")
    before = snapshot(root)
    first = load_dataset("miniimagenet", root=root, image_size=8)
    assert len(list(cache.glob("miniimagenet-8px-*.npz"))) == 1

    def no_decoding(data: bytes, size: int):
        raise AssertionError("decoded although the cache was there")

    monkeypatch.setattr(mini_module, "decode_image", no_decoding)
    second = load_dataset("miniimagenet", root=root, image_size=8)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_x, second.test_x)
    with pytest.raises(DataError, match="cannot decode miniImageNet/n01/n01_000.jpg"):
        load_dataset("miniimagenet", root=root, image_size=4)  # another size is another cache entry
    assert snapshot(root) == before and sorted(os.listdir(root)) == ["miniImageNet.zip"]


def test_miniimagenet_unwritable_cache_only_warns(tmp_path, monkeypatch, caplog):
    write_mini_zip(tmp_path / "miniImageNet.zip")
    (tmp_path / "not_a_folder").write_bytes(b"")
    monkeypatch.setenv("CLDST_CACHE", str(tmp_path / "not_a_folder"))
    with caplog.at_level(logging.WARNING, logger="cldst.data.miniimagenet"):
        ds = load_dataset("miniimagenet", root=tmp_path, image_size=8)
    assert ds.train_x.shape == (20, 3, 8, 8)
    assert sum("could not write the miniImageNet cache" in r.message for r in caplog.records) == 1


def test_miniimagenet_default_size_is_32(tmp_path, cache):
    write_mini_zip(tmp_path / "miniImageNet.zip")
    ds = load_dataset("miniimagenet", root=tmp_path, test_per_class=1, train_per_class=2)
    assert ds.train_x.shape == (8, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.mean == (0.485, 0.456, 0.406) and ds.std == (0.229, 0.224, 0.225)


def test_miniimagenet_missing_zip_lists_names_folder_and_url(tmp_path, cache):
    with pytest.raises(DataError) as err:
        load_dataset("miniimagenet", root=tmp_path)
    message = str(err.value)
    assert "miniImageNet.zip" in message and "miniImageNet100.zip" in message and str(tmp_path) in message
    assert "https://www.kaggle.com/datasets/arjunashok33/miniimagenet" in message


def test_miniimagenet_bad_archives(tmp_path, cache):
    archive = tmp_path / "miniImageNet.zip"
    archive.write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match=f"{archive}: not a readable zip file"):
        load_dataset("miniimagenet", root=tmp_path)

    with zipfile.ZipFile(archive, "w") as zf:  # images, but no class folders
        zf.writestr("a.jpg", solid_jpeg((1, 2, 3)))
        zf.writestr("readme.txt", b"hello")
    with pytest.raises(DataError, match="no class folders of images found"):
        load_dataset("miniimagenet", root=tmp_path)

    write_mini_zip(archive, folder_entries=True, extra={"n09/": b""})
    with pytest.raises(DataError, match="class folder\\(s\\) n09 contain no images"):
        load_dataset("miniimagenet", root=tmp_path)

    write_mini_zip(archive, extra={"n02/n02_zzz.jpg": b"\xff\xd8 truncated jpeg"})
    with pytest.raises(DataError, match="cannot decode n02/n02_zzz.jpg"):
        load_dataset("miniimagenet", root=tmp_path, image_size=8)
    assert not list(cache.glob("*.npz"))  # a failed decode leaves no cache behind


# ------------------------------------------------------------------------------------------- synth100


def test_synth100_shapes_balance_and_statistics():
    ds = load_dataset("synth100")
    assert ds.name == "synth100" and ds.num_classes == 100 and ds.image_size == 32
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert torch.bincount(ds.train_y).tolist() == [500] * 100 and torch.bincount(ds.test_y).tolist() == [100] * 100
    # Per-channel statistics from value histograms (exact, and no 1 GB float copy).
    levels = torch.arange(256, dtype=torch.float64) / 255
    for c in range(3):
        counts = torch.bincount(ds.train_x[:, c].flatten(), minlength=256).double()
        mean = (counts * levels).sum() / counts.sum()
        std = ((counts * (levels - mean) ** 2).sum() / (counts.sum() - 1)).sqrt()
        assert (round(mean.item(), 3), round(std.item(), 3)) == (round(ds.mean[c], 3), round(ds.std[c], 3))
    assert ds.train_x.min() == 0 and ds.train_x.max() == 255  # the full range is used


def test_synth100_is_deterministic_and_subsamples_the_first_images():
    cached = load_dataset("synth100")
    fresh = synth_module._images.__wrapped__(32)  # generated again, bypassing the per-process cache
    assert torch.equal(cached.train_x, fresh[0]) and torch.equal(cached.test_x, fresh[2])
    cached.train_x.zero_()  # a caller's changes must not reach the cache
    small = load_dataset("synth100", train_per_class=3, test_per_class=2)
    assert small.train_y.tolist() == sorted(list(range(100)) * 3) and small.test_x.shape == (200, 3, 32, 32)
    assert torch.equal(small.train_x[:3], fresh[0][:3]) and torch.equal(small.train_x[3:6], fresh[0][500:503])
    assert torch.equal(small.test_x[2:4], fresh[2][100:102])


def test_synth100_smaller_images():
    ds = load_dataset("synth100", image_size=16, train_per_class=2, test_per_class=1)
    assert ds.train_x.shape == (200, 3, 16, 16) and ds.test_x.shape == (100, 3, 16, 16)


def test_synth100_classes_differ():
    ds = load_dataset("synth100", test_per_class=100)
    class_means = torch.stack([ds.test_x[ds.test_y == k].float().mean(0) for k in range(100)])  # [100, 3, 32, 32]
    gaps = torch.cdist(class_means.flatten(1), class_means.flatten(1)) + torch.eye(100) * 1e9
    assert gaps.min() > 300  # no two classes share a mean image (pixel units, 3072 dims)


# ------------------------------------------------------------------------------------------- dispatch


def test_image_dataset_checks_its_tensors():
    x, y = torch.zeros((2, 3, 4, 4), dtype=torch.uint8), torch.tensor([0, 1])
    ImageDataset("ok", x, y, x, y, ["a", "b"], (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(DataError, match="bad: train_x must be uint8 \\[N, 3, H, W\\], got torch.float32 \\[2, 3, 4, 4\\]"):
        ImageDataset("bad", x.float(), y, x, y, ["a", "b"], (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(DataError, match="bad: test_y has labels outside 0..1"):
        ImageDataset("bad", x, y, x, y + 1, ["a", "b"], (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(DataError, match="bad: test_y must be int64 \\[2\\]"):
        ImageDataset("bad", x, y, x, y[:1], ["a", "b"], (0.5,) * 3, (0.5,) * 3)


def test_unknown_dataset_and_bad_arguments():
    assert DATASETS == ("synth100", "cifar100", "miniimagenet")
    with pytest.raises(ConfigError, match="dataset='imagenet' is not one of: synth100, cifar100, miniimagenet"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="train_per_class=-1 is not allowed"):
        load_dataset("synth100", train_per_class=-1)
    with pytest.raises(ConfigError, match="image_size=0 is not allowed"):
        load_dataset("synth100", image_size=0)
    with pytest.raises(ConfigError, match="test_per_class=101 but some class has only 100 images"):
        load_dataset("synth100", test_per_class=101)
