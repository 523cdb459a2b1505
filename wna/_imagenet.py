"""ImageNet validation images for Table 1 (exposed as :func:`wna.data.imagenet_val`).

Two sources, under the data root (``$WNA_DATA``):

* the standard layout, ``imagenet/val/<wnid>/*.JPEG`` with the 1,000 synset
  folders (what ``torchvision.datasets.ImageFolder`` reads; class ``k`` is the
  ``k``-th folder in sorted order, the standard class order), preferred where
  present;
* the subset ``imagenet/ilsvrc2012-val-1300.zip``: 1,300 validation images
  of 725 classes, pre-scaled to 227×227, with ``labels.txt`` (``FILE,
  LABEL``, labels in the standard order).

The full validation set needs an ImageNet account, so it is never
downloaded. The subset is public: where neither source is present and
``download`` is not ``False``, it is downloaded once from its pinned copy,
:data:`IMAGENET_URL` (the GitHub repository VeriSilicon/acuity-dataset at
commit ``aded2e9f``, folder ``ILSVRC2012_VAL_SET/``; ``$WNA_IMAGENET_URL``
overrides it, a ``file://`` URL included). GitHub's archives are not
byte-stable, so every image is checked against the SHA-256 and label listed
in the package's manifest, ``imagenet_val_1300.tsv``; only a download that
passes all 1,300 checks is written, atomically, as the subset zip, which
later calls read offline. A truncated download or a wrong checksum is
refused (nothing is left in the data root) and tried once more; after two
failures a :class:`~wna.paths.DataNotFoundError` says why and where to put the
files by hand, and the failure is remembered for the data root for the rest
of the process (``download=True`` tries again). The images are ImageNet's:
its terms of access allow non-commercial research and education only.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .paths import DataCorruptError, DataNotFoundError, data_root

IMAGENET_MIRROR = "imagenet/ilsvrc2012-val-1300.zip"
IMAGENET_FOLDER = "imagenet/val"
IMAGENET_URL = ("https://github.com/VeriSilicon/acuity-dataset/archive/"
                "aded2e9f22cd8fe0745aa57356c68cb95457aad9.zip")
IMAGENET_URL_ENV = "WNA_IMAGENET_URL"  # overrides IMAGENET_URL (a mirror, a file:// copy)
_MANIFEST = Path(__file__).with_name("imagenet_val_1300.tsv")
_PREFIX = "ilsvrc2012-val-1300/"
_EXTENSIONS = (".jpeg", ".jpg", ".png")
_DOWNLOAD_TIMEOUT_S = 30  # per socket operation: a stalled server fails, not hangs
_ATTEMPTS = 2  # per call: one automatic retry
_RETRY_WAIT_S = 2.0
_download_failed: dict[str, str] = {}  # data root -> why its download failed (once per process)


def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in the standard order (from torchvision, offline)."""
    from torchvision.models import ResNet50_Weights
    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_url() -> str:
    """Where the 1,300-image subset comes from: ``$WNA_IMAGENET_URL`` or :data:`IMAGENET_URL`."""
    return os.environ.get(IMAGENET_URL_ENV) or IMAGENET_URL


def imagenet_manifest() -> list[tuple[str, int, str]]:
    """The subset's 1,300 images as ``(file name, label, SHA-256 of the JPEG bytes)``, in order."""
    rows = []
    for line in _MANIFEST.read_text().splitlines():
        if line and not line.startswith("#"):
            name, label, sha = line.split("\t")
            rows.append((name, int(label), sha))
    return rows


def imagenet_source(root: str | Path | None = None, *, download: bool | None = None) -> str:
    """Which copy :func:`imagenet_val` reads: ``"folder"`` (the standard layout) or
    ``"mirror-1300"`` (the 1,300-image subset, downloaded first where missing unless
    ``download`` is ``False``). Raises :class:`DataNotFoundError` when neither."""
    return _locate(root, download)[0]


def _locate(root, download: bool | None = None, progress: bool = True) -> tuple[str, Path]:
    base = data_root() if root is None else Path(root).expanduser()
    folder, mirror = base / IMAGENET_FOLDER, base / IMAGENET_MIRROR
    if folder.is_dir():
        return "folder", folder
    if mirror.is_file():
        return "mirror-1300", mirror
    why = None
    if download is not False:
        why = _try_download(base, download, progress)
        if mirror.is_file():
            return "mirror-1300", mirror
    url = imagenet_url()
    tried = ("download=False: not downloaded" if why is None
             else f"downloading the 1,300-image subset from {url} failed: {why}")
    raise DataNotFoundError(
        f"ImageNet validation images not found under {base} ({tried}). Put the 50,000 "
        f"validation images in the standard layout as {folder}/<wnid>/*.JPEG (1,000 synset "
        f"folders), or the 1,300-image subset as {mirror} (a zip of {_PREFIX}images/*.JPEG and "
        f"{_PREFIX}labels.txt); or download {url} by hand and point {IMAGENET_URL_ENV} at it "
        f"(file:///path/to/it.zip): its images are checked and the subset zip written. The full "
        f"set is never downloaded (its terms need an ImageNet account).")


class _Refused(Exception):
    """A download that is not the subset: truncated, or an image with the wrong checksum."""


def _try_download(base: Path, download: bool | None, progress: bool) -> str | None:
    """Download the subset into ``base``: ``None`` on success, else why it failed.

    Two attempts per call; a failure is remembered for ``base``, so later calls
    with ``download=None`` fail at once (an offline machine does not wait on
    every call) and ``download=True`` tries again.
    """
    key = str(base)
    if download is not True and key in _download_failed:
        return f"{_download_failed[key]} (earlier in this process; download=True tries again)"
    url, errors = imagenet_url(), []
    for attempt in range(1, _ATTEMPTS + 1):
        if attempt > 1:
            time.sleep(_RETRY_WAIT_S)
        try:
            _download(base, url, progress)
        except Exception as exc:  # offline, refused, timed out, truncated, wrong checksum, read-only
            msg = str(exc) if isinstance(exc, _Refused) else f"{type(exc).__name__}: {exc}"
            errors.append(f"attempt {attempt}: {msg}")
        else:
            _download_failed.pop(key, None)
            return None
    _download_failed[key] = "; ".join(errors)
    return _download_failed[key]


def _download(base: Path, url: str, progress: bool) -> None:
    """Fetch ``url``, check every image against the manifest, write the subset zip: all or nothing.

    The download and the zip being written are temporary files beside the
    subset's place under ``base``; only a zip that passed every check is
    moved into place (``os.replace``), and the folders made for a failed
    download are removed again.
    """
    dest = base / IMAGENET_MIRROR
    made = [p for p in (base, dest.parent) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.download")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        _fetch(url, part, progress)
        _convert(part, tmp, progress)
        os.replace(tmp, dest)
    finally:
        part.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        if not dest.exists():
            for p in reversed(made):
                try:
                    p.rmdir()
                except OSError:
                    pass


def _fetch(url: str, path: Path, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp, open(path, "wb") as f:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.strip().isdigit() else None
        got = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc="ImageNet subset", leave=False,
                  disable=not progress, dynamic_ncols=True) as bar:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got != total:
        raise _Refused(f"truncated download: {got:,} of {total:,} bytes (Content-Length)")


def _convert(src: Path, out: Path, progress: bool) -> None:
    """Write the subset zip ``out`` from the download ``src``, members found by file name."""
    rows = imagenet_manifest()
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _Refused(f"not a complete zip archive, truncated download? ({exc})") from exc
    with zf, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        found: dict[str, list[zipfile.ZipInfo]] = {}
        for info in zf.infolist():
            if not info.is_dir():
                found.setdefault(info.filename.rsplit("/", 1)[-1], []).append(info)
        missing, bad, where = [], [], ""
        for name, _, sha in tqdm(rows, desc="check ImageNet subset", unit="img", leave=False,
                                 disable=not progress, dynamic_ncols=True):
            info, data = _matching(zf, found.get(name, []), sha)
            if info is None:
                (bad if name in found else missing).append(name)
                continue
            where = where or info.filename
            dst.writestr(_PREFIX + "images/" + name, data)
        if bad:
            raise _Refused(f"SHA-256 checksum failed for {_some(bad)} (a corrupt or changed copy)")
        if missing:
            raise _Refused(f"{_some(missing)} not in the archive")
        dst.writestr(_PREFIX + "labels.txt", "".join(f"{n}, {k}\n" for n, k, _ in rows))
        words = _synset_words(zf, found.get("synset_words.txt", []), where)
        if words is not None:
            dst.writestr(_PREFIX + "synset_words.txt", words)


def _some(names: list[str]) -> str:
    return names[0] + (f" and {len(names) - 1:,} other images" if len(names) > 1 else "")


def _matching(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], sha: str):
    for info in infos:
        try:
            data = zf.read(info)
        except Exception:  # bad CRC, truncated member: not the image
            continue
        if hashlib.sha256(data).hexdigest() == sha:
            return info, data
    return None, None


def _synset_words(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], image: str) -> bytes | None:
    """The class-name list beside the images (the closest by folder), if it has 1,000 lines."""
    def shared(info):
        return len(os.path.commonprefix([info.filename, image]))
    for info in sorted(infos, key=shared, reverse=True):
        try:
            data = zf.read(info)
        except Exception:
            continue
        if len(data.decode("utf-8", "replace").strip().splitlines()) == 1000:
            return data
    return None


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
                 crop: float | None = None, progress: bool = True,
                 download: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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
    Where neither copy is present, ``download=None`` (default) downloads the
    1,300-image subset and checks it (see the module's notes; a failure is
    tried once per process and data root), ``True`` tries again after a
    failure, ``False`` never downloads.
    """
    if int(size) < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    source, path = _locate(root, download, progress)
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
