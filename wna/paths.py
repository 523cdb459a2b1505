"""Where the package reads data and keeps what it computes once.

Two folders, both set by environment variables:

- the **data root** ``$WNA_DATA`` (default ``data/`` under the current
  directory): the data sets of :mod:`wna.data`;
- the **cache** ``$WNA_CACHE`` (default ``$XDG_CACHE_HOME/wna``, that is
  ``~/.cache/wna``): trained models of :mod:`wna.zoo` and decoded copies of
  data files.

The errors for missing or damaged data live here too, below every module
that reads data, so that none of them imports another to raise them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["DataNotFoundError", "DataCorruptError", "data_root", "cache_dir", "cache_lock"]


class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing and could not be downloaded."""


class DataCorruptError(ValueError):
    """A data set's file is present but cannot be read (names the file or member)."""


def data_root() -> Path:
    """The data root: ``$WNA_DATA`` or ``./data``."""
    return Path(os.environ.get("WNA_DATA", "data")).expanduser()


def cache_dir() -> Path:
    """``$WNA_CACHE`` or ``$XDG_CACHE_HOME/wna`` (``~/.cache/wna``)."""
    env = os.environ.get("WNA_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "wna"


@contextlib.contextmanager
def cache_lock(path: Path):
    """Hold an exclusive lock on ``path`` (through ``.locks/<name>.lock`` beside it) for the block.

    Processes that would make the same cached file (two notebooks run side by
    side that need the same model, say) take turns: the second waits, then
    finds the file made and reads it instead of making it again. An advisory
    POSIX lock (``fcntl.flock``), released by the system if the holder dies;
    where there is none (Windows) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock = Path(path).parent / ".locks" / (Path(path).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
