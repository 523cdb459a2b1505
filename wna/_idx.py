"""The IDX files of MNIST and Fashion-MNIST, read and checked (used by :mod:`wna.data`).

Each file is read uncompressed where present, else from its ``.gz``: the
``.gz`` is decompressed once into ``$WNA_CACHE/data`` (keyed by the ``.gz``'s
size and modification time, so a replaced ``.gz`` is decompressed again) and
the result must carry the official MD5 of the uncompressed file
(:data:`OFFICIAL_MD5`, checked again on every read from the cache); where the cache cannot be written the ``.gz`` is
decompressed in memory on every call instead.

Every file's header is checked before its data is read: the magic number
(unsigned bytes, 3 dimensions for images, 1 for labels) and the file's size
against the size its header's dimensions give, so a truncated or foreign file
raises :class:`wna.data.DataCorruptError` naming it, never a reshape error.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from .paths import DataCorruptError, cache_dir

# MD5 of the official uncompressed files (torchvision's ``resources`` list the .gz files' MD5s).
OFFICIAL_MD5 = {
    ("MNIST", "train-images-idx3-ubyte"): "6bbc9ace898e44ae57da46a324031adb",
    ("MNIST", "train-labels-idx1-ubyte"): "a25bea736e30d166cdddb491f175f624",
    ("MNIST", "t10k-images-idx3-ubyte"): "2646ac647ad5339dbf082846283269ea",
    ("MNIST", "t10k-labels-idx1-ubyte"): "27ae3e4e09519cfbb04c329615203637",
    ("FashionMNIST", "train-images-idx3-ubyte"): "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ("FashionMNIST", "train-labels-idx1-ubyte"): "9018921c3c673c538a1fc5bad174d6f9",
    ("FashionMNIST", "t10k-images-idx3-ubyte"): "8181f5470baa50b63fa0f6fddb340f0a",
    ("FashionMNIST", "t10k-labels-idx1-ubyte"): "15d484375f8d13e6eb1aabb0c3f46965",
}
_UBYTE = 0x08  # the IDX type code of unsigned bytes
_ADVICE = ("delete it to download it again (where online) or replace it with the official file "
           "(uncompressed or .gz)")


def read_split(folder_name: str, raw: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` float32 in [0, 1] and labels ``(N,)`` int64 of one split."""
    prefix = "train" if train else "t10k"
    img_name, lab_name = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    images, img_file = _read(folder_name, raw, img_name, ndim=3)
    labels, lab_file = _read(folder_name, raw, lab_name, ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataCorruptError(f"{img_file} holds {images.shape[1]}x{images.shape[2]} images, not 28x28; {_ADVICE}")
    if len(images) != len(labels):
        raise DataCorruptError(f"{img_file} holds {len(images):,} images but {lab_file} {len(labels):,} labels; "
                       f"{_ADVICE}")
    if labels.size and int(labels.max()) > 9:
        raise DataCorruptError(f"{lab_file} holds a label {int(labels.max())} (labels are 0-9); {_ADVICE}")
    x = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def _read(folder_name: str, raw: Path, name: str, ndim: int) -> tuple[np.ndarray, Path]:
    """The array of ``raw/name`` (or of its ``.gz``) and the file to name in messages."""
    plain = raw / name
    if plain.is_file():
        return parse(plain.read_bytes(), plain, ndim), plain
    gz = raw / f"{name}.gz"
    content = _decompressed(folder_name, gz, name)
    return parse(content, gz, ndim), gz


def parse(content: bytes, path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file's ``content``; ``path`` is named in errors."""
    kind = "image" if ndim == 3 else "label"
    header = 4 + 4 * ndim
    magic = bytes([0, 0, _UBYTE, ndim])
    if len(content) < header or content[:4] != magic:
        return _bad_header(content, path, kind, magic, header)
    dims = tuple(int(d) for d in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(content) != expected:
        what = "truncated" if len(content) < expected else "longer than its header says"
        raise DataCorruptError(f"{path} is {what}: {len(content):,} bytes, but its IDX header "
                       f"({' x '.join(f'{d:,}' for d in dims)} bytes of data) needs {expected:,} bytes; "
                       f"{_ADVICE}")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims).copy()


def _bad_header(content: bytes, path: Path, kind: str, magic: bytes, header: int):
    if len(content) < header:
        raise DataCorruptError(f"{path} is truncated: {len(content):,} bytes, shorter than an IDX {kind} "
                       f"file's {header}-byte header; {_ADVICE}")
    raise DataCorruptError(f"{path} is not an IDX {kind} file of unsigned bytes: its header starts "
                   f"0x{content[:4].hex()}, expected 0x{magic.hex()}; {_ADVICE}")


def _cache_path(folder_name: str, gz: Path, name: str) -> tuple[Path, str]:
    """The cache file of ``gz``'s current content, and the prefix its older versions share."""
    st = gz.stat()
    where = hashlib.sha256(str(gz.resolve()).encode()).hexdigest()[:8]
    when = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    prefix = f"{folder_name.lower()}-{name}-{where}-"
    return cache_dir() / "data" / f"{prefix}{when}", prefix


def _decompressed(folder_name: str, gz: Path, name: str) -> bytes:
    """The checked content of ``gz``: from the cache, else decompressed (and cached where possible)."""
    cache, prefix = _cache_path(folder_name, gz, name)
    want = OFFICIAL_MD5.get((folder_name, name))
    if cache.is_file():
        content = cache.read_bytes()
        if want is None or hashlib.md5(content).hexdigest() == want:
            return content
    try:
        with gzip.open(gz, "rb") as f:
            content = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, truncated, bad CRC
        raise DataCorruptError(f"{gz} cannot be decompressed ({type(exc).__name__}: {exc}); {_ADVICE}") from exc
    got = hashlib.md5(content).hexdigest()
    if want is not None and got != want:
        raise DataCorruptError(f"{gz} decompresses to a file with MD5 {got}, not the official {want} of "
                       f"{folder_name}'s {name}; {_ADVICE}")
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(content)
        os.replace(tmp, cache)
    except OSError:  # a read-only or full cache: decompress again next time
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return content
    for old in cache.parent.glob(f"{prefix}*"):  # decompressions of an older .gz at the same path
        if old != cache and not old.name.endswith(".tmp"):
            old.unlink(missing_ok=True)
    return content
