"""ImageNet validation images for Table 1 (exposed as :func:`wna.data.imagenet_val`).

Two sources, under the data root (``$WNA_DATA``):

* the standard layout, ``imagenet/val/<wnid>/*.JPEG`` with the 1,000 synset
  folders (what ``torchvision.datasets.ImageFolder`` reads; class ``k`` is the
  ``k``-th folder in sorted order, the standard class order), preferred where
  present;
* the offline subset ``imagenet/ilsvrc2012-val-1300.zip``: 1,300 validation
  images of 725 classes, pre-scaled to 227×227, with ``labels.txt``
  (``FILE, LABEL``, labels in the standard order).

ImageNet cannot be downloaded without an account, so nothing is downloaded.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data import DataCorruptError, DataNotFoundError, data_root

IMAGENET_MIRROR = "imagenet/ilsvrc2012-val-1300.zip"
IMAGENET_FOLDER = "imagenet/val"
_PREFIX = "ilsvrc2012-val-1300/"
_EXTENSIONS = (".jpeg", ".jpg", ".png")


def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in the standard order (from torchvision, offline)."""
    from torchvision.models import ResNet50_Weights
    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_source(root: str | Path | None = None) -> str:
    """Which copy :func:`imagenet_val` reads: ``"folder"`` (the standard layout) or
    ``"mirror-1300"`` (the 1,300-image subset). Raises :class:`DataNotFoundError` when neither."""
    return _locate(root)[0]


def _locate(root) -> tuple[str, Path]:
    base = data_root() if root is None else Path(root).expanduser()
    folder, mirror = base / IMAGENET_FOLDER, base / IMAGENET_MIRROR
    if folder.is_dir():
        return "folder", folder
    if mirror.is_file():
        return "mirror-1300", mirror
    raise DataNotFoundError(
        f"ImageNet validation images not found under {base}. Put the 50,000 validation images in "
        f"the standard layout as {folder}/<wnid>/*.JPEG (1,000 synset folders), or the 1,300-image "
        f"subset as {mirror} (a zip of {_PREFIX}images/*.JPEG and {_PREFIX}labels.txt). "
        f"ImageNet is not downloaded automatically (its terms need an account).")


def _square(im, size: int, crop: float):
    """Resize the shorter side to ``size / crop`` (bilinear, antialiased), centre-crop ``size``."""
    from PIL import Image
    w, h = im.size
    scale = size / crop / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def _decode(data: bytes, name: str, where: Path, size: int, crop: float) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(_square(im.convert("RGB"), size, crop)).transpose(2, 0, 1)
    except Exception as exc:  # truncated, not an image
        raise DataCorruptError(f"{where}: cannot decode image {name!r} ({exc})") from exc


def _mirror_members(path: Path) -> tuple[zipfile.ZipFile, list[tuple[str, int]]]:
    try:
        zf = zipfile.ZipFile(path)
        text = zf.read(_PREFIX + "labels.txt").decode()
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise DataCorruptError(f"{path} is not the ImageNet subset zip ({exc})") from exc
    members = []
    for line in text.strip().splitlines():
        try:
            name, label = (s.strip() for s in line.split(","))
            members.append((_PREFIX + "images/" + name, int(label)))
        except ValueError as exc:
            raise DataCorruptError(f"{path}: bad line in labels.txt: {line!r}") from exc
    return zf, members


def _folder_members(path: Path) -> list[tuple[Path, int]]:
    synsets = sorted(d.name for d in path.iterdir() if d.is_dir())
    if len(synsets) != 1000:
        raise DataCorruptError(f"{path} has {len(synsets)} class folders, not ImageNet's 1,000 "
                               f"(<wnid>/ folders such as n01440764/)")
    return [(f, k) for k, s in enumerate(synsets) for f in sorted((path / s).iterdir())
            if f.suffix.lower() in _EXTENSIONS]


def imagenet_val(size: int = 224, *, root: str | Path | None = None, limit: int | None = None,
                 crop: float | None = None, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet validation images ``(N, 3, size, size)`` float32 in [0, 1] and labels ``(N,)``.

    Each image's shorter side is resized to ``size / crop`` and the centre
    ``size``×``size`` kept (``crop`` defaults to 0.875, the usual 256 → 224,
    for the standard layout, and to 1 for the subset, whose images are
    already square crops). ``size`` is what the model expects: a backbone's
    :attr:`~wna.backbones.Backbone.input_size` to check its accuracy, or 32
    to match images against 32×32 classification images (Table 1).
    ``limit`` keeps the first ``limit`` images (in file order of the subset's
    ``labels.txt``; sorted by class folder, then file name, in the standard
    layout). Labels are in the standard class order (:func:`imagenet_classes`).
    """
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    source, path = _locate(root)
    crop = (1.0 if source == "mirror-1300" else 0.875) if crop is None else float(crop)
    if not 0 < crop <= 1:
        raise ValueError(f"crop must lie in (0, 1], got {crop}")
    if source == "mirror-1300":
        zf, members = _mirror_members(path)
        read = zf.read
    else:
        zf, members = None, _folder_members(path)
        read = Path.read_bytes
    members = members[:limit]
    images = np.empty((len(members), 3, size, size), dtype=np.uint8)
    try:
        for i, (name, _) in enumerate(tqdm(members, desc=f"ImageNet val at {size}px", unit="img",
                                           leave=False, disable=not progress, dynamic_ncols=True)):
            try:
                data = read(name)
            except (KeyError, OSError, zipfile.BadZipFile) as exc:
                raise DataCorruptError(f"{path}: cannot read {str(name)!r} ({exc})") from exc
            images[i] = _decode(data, str(name), path, size, crop)
    finally:
        if zf is not None:
            zf.close()
    labels = torch.tensor([k for _, k in members], dtype=torch.int64)
    if labels.numel() and (labels.min() < 0 or labels.max() > 999):
        raise DataCorruptError(f"{path}: labels must lie in 0..999")
    return torch.from_numpy(images).to(torch.float32).div_(255.0), labels
