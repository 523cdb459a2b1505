"""Data sets the paper uses, read from one data root.

The root is ``$WNA_DATA`` (default ``data/`` under the current directory).
Where the machine is online, missing files are downloaded from the official
mirrors by torchvision; offline, a missing file raises :class:`DataNotFoundError`
naming the files and where to put them.

Images come back as float32 tensors in [0, 1] of shape ``(N, 1, 28, 28)``
(MNIST, Fashion-MNIST), ``(N, 3, 32, 32)`` (CIFAR-10) or ``(N, 3, size, size)``
(the ImageNet validation images, :func:`imagenet_val`) (the paper feeds raw
[0, 1] pixels, no mean/std normalisation) and labels as int64 tensors of shape
``(N,)``.

CIFAR-10 has two sources: the official python batches
(``$WNA_DATA/cifar-10-batches-py``, downloaded by torchvision where online),
preferred, and an offline JPEG copy (``$WNA_DATA/cifar10/cifar10-jpeg-q75.zip``,
lossy: quality 75), decoded once into a uint8 cache under ``$WNA_CACHE/data``.
:func:`cifar10_source` says which one :func:`cifar10` reads.

ImageNet's 50,000 validation images need an account and are never
downloaded; its public 1,300-image subset is downloaded where missing, from
a pinned copy checked image by image against a manifest (:func:`imagenet_val`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ._idx import read_split  # checked reads of the IDX files, uncompressed or .gz
from ._imagenet import (IMAGENET_FOLDER, IMAGENET_MIRROR, IMAGENET_URL,  # noqa: F401 (IMAGENET_URL re-exported)
                        imagenet_classes, imagenet_source, imagenet_val)
from .paths import DataCorruptError, DataNotFoundError, cache_dir, data_root

__all__ = ["DataNotFoundError", "DataCorruptError", "data_root", "mnist", "fashion_mnist", "cifar10",
           "cifar10_source", "MNIST_FILES", "CIFAR10_CLASSES", "CIFAR10_FILES", "CIFAR10_MIRROR",
           "FASHION_MNIST_CLASSES", "CLASS_NAMES", "imagenet_val", "imagenet_classes", "imagenet_source",
           "IMAGENET_MIRROR", "IMAGENET_FOLDER"]

FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "boot")

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _missing(folder: Path) -> list[Path]:
    return [folder / name for name in MNIST_FILES
            if not (folder / name).is_file() and not (folder / f"{name}.gz").is_file()]


def _load_idx_dataset(cls_name: str, folder_name: str, train: bool, download: bool | None):
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = data_root()
    raw = root / folder_name / "raw"
    missing = _missing(raw)
    if missing and download is not False:
        try:
            cls(str(root), train=train, download=True)
        except Exception as exc:  # offline, read-only root, mirror down
            raise DataNotFoundError(_missing_message(folder_name, raw, _missing(raw), exc)) from exc
        missing = _missing(raw)
    if missing:
        raise DataNotFoundError(_missing_message(folder_name, raw, missing, None))

    return read_split(folder_name, raw, train)


def _missing_message(name: str, raw: Path, missing: list[Path], exc: Exception | None) -> str:
    files = "\n".join(f"  {p}" for p in missing)
    why = f" (download failed: {exc})" if exc is not None else ""
    return (f"{name} files are missing{why}:\n{files}\n"
            f"Put the four IDX files (uncompressed or .gz) in {raw}/, or point "
            f"WNA_DATA at a folder holding {name}/raw/ (now WNA_DATA={data_root()}).")


def mnist(train: bool = True, download: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``.

    ``download=None`` (default) downloads only when files are missing;
    ``False`` never downloads. Each IDX file is read uncompressed where
    present, else from its ``.gz`` (decompressed once into ``$WNA_CACHE/data``
    and checked against the official MD5); a truncated or foreign file raises
    :class:`DataCorruptError` naming it (see :mod:`wna._idx`).
    """
    return _load_idx_dataset("MNIST", "MNIST", train, download)


def fashion_mnist(train: bool = True, download: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``."""
    return _load_idx_dataset("FashionMNIST", "FashionMNIST", train, download)


# ---------------------------------------------------------------- CIFAR-10

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta")
CIFAR10_OFFICIAL = "cifar-10-batches-py"  # torchvision's folder under the data root
CIFAR10_MIRROR = "cifar10/cifar10-jpeg-q75.zip"  # the offline JPEG copy, relative to the data root
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_DOWNLOAD_TIMEOUT_S = 30  # per socket operation while downloading: a stalled mirror fails, not hangs
_download_failed: dict[str, str] = {}  # data root -> why the download failed (tried once per process)


def _official_present(root: Path) -> bool:
    return all((root / CIFAR10_OFFICIAL / f).is_file() for f in CIFAR10_FILES)


def _download_cifar10(root: Path) -> None:
    """Download and extract the official batches into ``root``, all or nothing.

    The archive goes to a temporary folder under ``root`` that is removed
    afterwards; only a complete, checksummed ``cifar-10-batches-py`` is moved
    into place, so a failed download leaves nothing behind.
    """
    import torchvision.datasets as tvd

    tmp = root / f".cifar10-download-{os.getpid()}"
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        tvd.CIFAR10(str(tmp), train=False, download=True)  # checks the MD5 of every batch
        if not _official_present(root):
            os.replace(tmp / CIFAR10_OFFICIAL, root / CIFAR10_OFFICIAL)
    finally:
        socket.setdefaulttimeout(before)
        shutil.rmtree(tmp, ignore_errors=True)


def _cifar10_copy(download: bool | None) -> tuple[str, Path]:
    root = data_root()
    if _official_present(root):
        return "official", root / CIFAR10_OFFICIAL
    if download is not False and str(root) not in _download_failed:
        try:
            _download_cifar10(root)
        except Exception as exc:  # offline, read-only root, mirror down
            _download_failed[str(root)] = f"{type(exc).__name__}: {exc}"
        if _official_present(root):
            return "official", root / CIFAR10_OFFICIAL
    mirror = root / CIFAR10_MIRROR
    if mirror.is_file():
        return "mirror-jpeg-q75", mirror
    why = (f" (download failed: {_download_failed[str(root)]})"
           if download is not False and str(root) in _download_failed else "")
    raise DataNotFoundError(
        f"CIFAR-10 not found under WNA_DATA={root}{why}. Either put the official python "
        f"version (cifar-10-python.tar.gz from {_CIFAR10_URL}, extracted) as "
        f"{root / CIFAR10_OFFICIAL}/ holding {', '.join(CIFAR10_FILES)}; or put the JPEG copy "
        f"(zip of train/<class>/NNNN.jpg and test/<class>/NNNN.jpg) as {mirror}.")


def cifar10_source(download: bool | None = None) -> str:
    """Which copy :func:`cifar10` reads with the same ``download``: ``"official"`` or
    ``"mirror-jpeg-q75"`` (the lossy JPEG copy). Raises :class:`DataNotFoundError` when neither."""
    return _cifar10_copy(download)[0]


def cifar10(train: bool = True, download: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 images ``(N, 3, 32, 32)`` float32 in [0, 1] and labels ``(N,)`` int64.

    Reads the official batches where present; when they are missing and
    ``download`` is not ``False`` (default ``None``: only when missing), tries
    to download them (once per process; offline this fails in milliseconds);
    otherwise decodes the JPEG mirror (a lossy copy: see
    :func:`cifar10_source`), from its uint8 cache after the first call.
    Labels follow :data:`CIFAR10_CLASSES`.
    """
    source, path = _cifar10_copy(download)
    if source == "official":
        import torchvision.datasets as tvd
        try:
            ds = tvd.CIFAR10(str(path.parent), train=train, download=False)
        except RuntimeError as exc:  # torchvision checks every batch's MD5
            raise DataCorruptError(f"the CIFAR-10 batches in {path} fail their checksums ({exc}); "
                                   f"delete the folder to download or use the mirror") from exc
        images = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))
        labels = np.asarray(ds.targets, dtype=np.int64)
    else:
        images, labels = _mirror_arrays(path, "train" if train else "test")
    return torch.from_numpy(images).to(torch.float32).div_(255.0), torch.from_numpy(labels)


_MIRROR_FORMAT = 2  # bump when the decoded cache's layout changes


def _mirror_cache_path(zip_path: Path, split: str) -> Path:
    from PIL import __version__ as pil_version

    st = zip_path.stat()
    key = json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "pillow": pil_version,
                      "format": _MIRROR_FORMAT}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "data" / f"cifar10-jpeg-q75-{split}-{digest}.npz"


def _mirror_arrays(zip_path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's uint8 images ``(N, 3, 32, 32)`` and labels, decoded once and cached.

    The order is deterministic: by file name, then class, so the mirror's
    ``0000.jpg`` of every class comes first (labels 0, 1, ..., 9, 0, 1, ...).
    Sorting by class first would put 5,000 airplanes first, and the first
    ``n`` images (``zoo.load(..., n_train=n)``, a quick subset) would hold one
    class; the official batches are shuffled, and round robin keeps that
    property. The cache is keyed on the zip's size and modification time (and
    the Pillow version that decodes), so a changed zip is decoded again.
    """
    cache = _mirror_cache_path(zip_path, split)
    if cache.is_file():
        with np.load(cache) as f:
            return f["images"], f["labels"]
    images, labels = _decode_mirror(zip_path, split)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, images=images, labels=labels)
    os.replace(tmp, cache)
    for old in cache.parent.glob(f"cifar10-jpeg-q75-{split}-*.npz"):  # stale decodes of an older zip
        if old != cache:
            old.unlink(missing_ok=True)
    return images, labels


def _decode_mirror(zip_path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataCorruptError(f"{zip_path} is not a readable zip ({exc})") from exc
    with zf:
        members = []
        for name in zf.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == split and parts[2]:
                if parts[1] not in CIFAR10_CLASSES:
                    raise DataCorruptError(f"{zip_path}: unknown class folder in {name!r}; "
                                           f"expected one of {CIFAR10_CLASSES}")
                members.append((parts[2], CIFAR10_CLASSES.index(parts[1]), name))
        members.sort()  # by file name, then class: round robin over the classes (see _mirror_arrays)
        missing = sorted(set(CIFAR10_CLASSES) - {CIFAR10_CLASSES[c] for _, c, _ in members})
        if missing:
            raise DataCorruptError(f"{zip_path} has no {split}/ images of class(es) {missing}")
        images = np.empty((len(members), 32, 32, 3), dtype=np.uint8)
        for i, (_, _, name) in enumerate(tqdm(members, desc=f"decode CIFAR-10 {split} JPEGs",
                                              unit="img", leave=False, dynamic_ncols=True)):
            try:
                with Image.open(io.BytesIO(zf.read(name))) as im:
                    arr = np.asarray(im.convert("RGB"))
            except Exception as exc:  # truncated or not an image, bad CRC
                raise DataCorruptError(f"{zip_path}: cannot decode member {name!r} ({exc})") from exc
            if arr.shape != (32, 32, 3):
                raise DataCorruptError(f"{zip_path}: member {name!r} is {arr.shape[1]}x{arr.shape[0]}, "
                                       f"not 32x32")
            images[i] = arr
    labels = np.array([c for _, c, _ in members], dtype=np.int64)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels


# The class names of each data set, in label order (figure titles).
CLASS_NAMES = {"mnist": tuple(str(d) for d in range(10)), "fashion_mnist": FASHION_MNIST_CLASSES,
               "cifar10": CIFAR10_CLASSES}

