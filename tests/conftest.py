import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _mnist_present() -> bool:
    from wna.data import MNIST_FILES, data_root
    raw = data_root() / "MNIST" / "raw"
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)


@pytest.fixture
def engine_builds(monkeypatch):
    """The stimulus shape of every engine (fast copy) built during the test, in order."""
    from wna import _backends
    built = []
    real = _backends.Engine.__init__

    def counting(self, *a, **k):
        built.append(a[3] if len(a) > 3 else k.get("shape"))
        real(self, *a, **k)

    monkeypatch.setattr(_backends.Engine, "__init__", counting)
    return built


@pytest.fixture(scope="session")
def mnist_available():
    """Skip tests that need MNIST when it is absent (fail instead under CI)."""
    if not _mnist_present():
        msg = ("MNIST not found under $WNA_DATA "
               f"({os.environ.get('WNA_DATA', 'data')}); point $WNA_DATA at a folder that holds MNIST/raw/, "
               "or run wna.data.mnist() online to download it")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def cifar10_available():
    """Skip tests that need CIFAR-10 (official batches or the JPEG mirror) when both are absent."""
    from wna import data
    try:
        data.cifar10_source(download=False)
    except data.DataNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(f"CIFAR-10 not found: {exc}")


@pytest.fixture(scope="session")
def cifar10_mirror():
    """The path of the CIFAR-10 JPEG mirror; skip when it is absent."""
    from wna import data
    path = data.data_root() / data.CIFAR10_MIRROR
    if not path.is_file():
        pytest.skip(f"CIFAR-10 JPEG mirror not found at {path}")
    return path


class Linear(torch.nn.Module):
    """Logits W x + b on flattened stimuli; one output row with ``squeeze`` gives a binary observer."""

    def __init__(self, w, b=None, squeeze=False):
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float32), requires_grad=False)
        b = torch.zeros(self.w.shape[0]) if b is None else torch.as_tensor(b, dtype=torch.float32)
        self.b = torch.nn.Parameter(b, requires_grad=False)
        self.squeeze = squeeze

    def forward(self, x):
        out = x.flatten(1) @ self.w.T + self.b
        return out[:, 0] if self.squeeze else out


def cosine(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


def glue_values(nb) -> dict:
    """``{key: text/plain}`` of every value an executed notebook glued (myst-nb's scrapbook)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            sb = o.get("metadata", {}).get("scrapbook")
            if sb:
                out[sb["name"]] = o["data"].get(sb.get("mime_prefix", "") + "text/plain")
    return out
