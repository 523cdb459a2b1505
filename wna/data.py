"""Data sets the paper uses, read from one data root.

The root is ``$WNA_DATA`` (default ``data/`` under the current directory).
Where the machine is online, missing files are downloaded from the official
mirrors by torchvision; offline, a missing file raises :class:`DataNotFoundError`
naming the files and where to put them.

Images come back as float32 tensors in [0, 1] of shape ``(N, 1, 28, 28)``
(the paper feeds raw [0, 1] pixels, no mean/std normalisation) and labels as
int64 tensors of shape ``(N,)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["DataNotFoundError", "data_root", "mnist", "fashion_mnist", "MNIST_FILES", "FASHION_MNIST_CLASSES"]

FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "boot")

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing and could not be downloaded."""


def data_root() -> Path:
    """The data root: ``$WNA_DATA`` or ``./data``."""
    return Path(os.environ.get("WNA_DATA", "data")).expanduser()


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
    ds = cls(str(root), train=train, download=False)
    images = ds.data.unsqueeze(1).to(torch.float32).div_(255.0)
    labels = ds.targets.to(torch.int64).clone()
    return images, labels


def _missing_message(name: str, raw: Path, missing: list[Path], exc: Exception | None) -> str:
    files = "\n".join(f"  {p}" for p in missing)
    why = f" (download failed: {exc})" if exc is not None else ""
    return (f"{name} files are missing{why}:\n{files}\n"
            f"Put the four IDX files (uncompressed or .gz) in {raw}/, or point "
            f"WNA_DATA at a folder holding {name}/raw/ (now WNA_DATA={data_root()}).")


def mnist(train: bool = True, download: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``.

    ``download=None`` (default) downloads only when files are missing;
    ``False`` never downloads.
    """
    return _load_idx_dataset("MNIST", "MNIST", train, download)


def fashion_mnist(train: bool = True, download: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``."""
    return _load_idx_dataset("FashionMNIST", "FashionMNIST", train, download)
