import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _mnist_present() -> bool:
    from wna.data import MNIST_FILES, data_root
    raw = data_root() / "MNIST" / "raw"
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)


@pytest.fixture(scope="session")
def mnist_available():
    """Skip tests that need MNIST when it is absent (fail instead under CI)."""
    if not _mnist_present():
        msg = ("MNIST not found under $WNA_DATA "
               f"({os.environ.get('WNA_DATA', 'data')}); set WNA_DATA=../shared/data or download it")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
