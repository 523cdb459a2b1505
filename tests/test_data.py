import io
import os
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from wna import data

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_label_counts_and_range(mnist_available):
    x, y = data.mnist(train=True, download=False)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert torch.bincount(y).tolist() == MNIST_TRAIN
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    xt, yt = data.mnist(train=False, download=False)
    assert torch.bincount(yt).tolist() == MNIST_TEST
    # pixel scale: 255 maps to exactly 1, so the mean training pixel is MNIST's 0.1307
    assert abs(float(x.mean()) - 0.1307) < 1e-3


def test_fashion_mnist_is_balanced():
    try:
        x, y = data.fashion_mnist(train=False, download=False)
    except data.DataNotFoundError:
        pytest.skip("Fashion-MNIST not present")
    assert torch.bincount(y).tolist() == [1000] * 10


def test_missing_files_give_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"x")
    with pytest.raises(data.DataNotFoundError) as err:
        data.mnist(train=False, download=False)
    msg = str(err.value)
    for name in ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "train-labels-idx1-ubyte"]:
        assert name in msg
    assert "t10k-labels-idx1-ubyte" not in msg.split("Put")[0]  # present files are not listed
    assert str(tmp_path / "MNIST" / "raw") in msg and "WNA_DATA" in msg


def test_data_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv("WNA_DATA")
    assert str(data.data_root()) == "data"


# ---------------------------------------------------------------- CIFAR-10

CIFAR_MEANS = (0.491, 0.482, 0.447)  # official train-set channel means; the JPEG mirror keeps them


def test_cifar10_counts_range_and_channel_means(cifar10_available):
    x, y = data.cifar10(train=True, download=False)
    assert x.shape == (50000, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and torch.bincount(y).tolist() == [5000] * 10
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    for got, want in zip(x.mean((0, 2, 3)).tolist(), CIFAR_MEANS):
        assert abs(got - want) < 0.01
    xt, yt = data.cifar10(train=False, download=False)
    assert xt.shape == (10000, 3, 32, 32) and torch.bincount(yt).tolist() == [1000] * 10
    assert list(data.CIFAR10_CLASSES) == sorted(data.CIFAR10_CLASSES) and len(data.CIFAR10_CLASSES) == 10
    assert data.cifar10_source(download=False) in ("official", "mirror-jpeg-q75")


def test_cifar10_mirror_is_decoded_once_and_cached(cifar10_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_CACHE", str(tmp_path))
    images, labels = data._mirror_arrays(cifar10_mirror, "test")
    assert images.dtype == np.uint8 and images.shape == (10000, 3, 32, 32)
    assert labels.tolist() == list(range(10)) * 1000  # by file name, then class: round robin
    (cache,) = (tmp_path / "data").glob("cifar10-jpeg-q75-test-*.npz")
    assert cache.stat().st_size < 32e6 and not list((tmp_path / "data").glob("*.tmp"))
    stamp = cache.stat().st_mtime_ns
    again, labels2 = data._mirror_arrays(cifar10_mirror, "test")
    assert cache.stat().st_mtime_ns == stamp  # read back, not decoded again
    assert np.array_equal(images, again) and np.array_equal(labels, labels2)


def _solid_jpeg(rgb) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _fake_mirror(root, extra=None, colour=lambda c: (20 * c, 255 - 20 * c, 100)):
    """A tiny mirror: test/<class>/0000.jpg, one solid-colour image per class; ``extra`` more members."""
    path = root / data.CIFAR10_MIRROR
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for c, name in reversed(list(enumerate(data.CIFAR10_CLASSES))):  # stored out of order
            zf.writestr(f"test/{name}/0000.jpg", _solid_jpeg(colour(c)))
        for member, payload in (extra or {}).items():
            zf.writestr(member, payload)
    return path


def test_cifar10_reads_a_mirror_zip_in_order(tmp_path, monkeypatch):
    """Known answer: solid-colour JPEGs come back in order (file name, then class) with their colours."""
    monkeypatch.setenv("WNA_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("WNA_CACHE", str(tmp_path / "cache"))
    _fake_mirror(tmp_path / "data", extra={"test/cat/0001.jpg": _solid_jpeg((0, 0, 0))})
    x, y = data.cifar10(train=False, download=False)
    assert data.cifar10_source(download=False) == "mirror-jpeg-q75"
    assert y.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3]  # every class's 0000, then cat's 0001
    want = torch.tensor([[20 * c, 255 - 20 * c, 100] for c in [0, 1, 2, 3]]) / 255
    assert (x[[0, 1, 2, 3]].mean((2, 3)) - want).abs().max() < 3 / 255
    assert float(x[10].max()) < 3 / 255  # the black cat
    # a changed zip is decoded again, not read from the stale cache
    time.sleep(0.01)
    _fake_mirror(tmp_path / "data", colour=lambda c: (200, 10 * c, 0))
    x2, y2 = data.cifar10(train=False, download=False)
    assert y2.tolist() == list(range(10)) and abs(float(x2[0, 0].mean()) - 200 / 255) < 3 / 255
    assert len(list((tmp_path / "cache" / "data").glob("*.npz"))) == 1  # the stale decode is gone


def test_cifar10_corrupt_jpeg_names_the_member(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("WNA_CACHE", str(tmp_path / "cache"))
    truncated = _solid_jpeg((1, 2, 3))[:100]
    _fake_mirror(tmp_path / "data", extra={"test/dog/0007.jpg": truncated})
    with pytest.raises(data.DataCorruptError, match="test/dog/0007.jpg"):
        data.cifar10(train=False, download=False)
    assert not (tmp_path / "cache" / "data").exists() or not list((tmp_path / "cache" / "data").iterdir())
    # a mirror without one of the classes is refused too
    (tmp_path / "data" / data.CIFAR10_MIRROR).unlink()
    with zipfile.ZipFile(tmp_path / "data" / data.CIFAR10_MIRROR, "w") as zf:
        zf.writestr("test/cat/0000.jpg", _solid_jpeg((1, 2, 3)))
    with pytest.raises(data.DataCorruptError, match="airplane"):
        data.cifar10(train=False, download=False)


def test_cifar10_missing_names_both_options(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    with pytest.raises(data.DataNotFoundError) as err:
        data.cifar10(train=False, download=False)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg
    assert str(tmp_path / "cifar10" / "cifar10-jpeg-q75.zip") in msg and "WNA_DATA" in msg
    assert list(tmp_path.iterdir()) == []


def test_cifar10_failed_download_leaves_nothing_and_falls_back(tmp_path, monkeypatch):
    """A download that dies half-way leaves no partial file; the mirror is used; no second attempt."""
    import torchvision.datasets as tvd
    calls = []

    def dying_download(root, train=True, download=False):
        calls.append(root)
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, "cifar-10-python.tar.gz"), "wb") as f:
            f.write(b"partial")
        raise OSError("connection reset")

    monkeypatch.setattr(tvd, "CIFAR10", dying_download)
    monkeypatch.setattr(data, "_download_failed", {})
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    with pytest.raises(data.DataNotFoundError, match="download failed: OSError: connection reset"):
        data.cifar10_source()
    assert list(tmp_path.iterdir()) == [] and len(calls) == 1
    _fake_mirror(tmp_path)
    assert data.cifar10_source() == "mirror-jpeg-q75" and len(calls) == 1  # tried once per process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10"]

    # a download that completes is moved into place whole
    def good_download(root, train=True, download=False):
        folder = os.path.join(root, data.CIFAR10_OFFICIAL)
        os.makedirs(folder)
        for name in data.CIFAR10_FILES:
            open(os.path.join(folder, name), "wb").close()

    monkeypatch.setattr(tvd, "CIFAR10", good_download)
    monkeypatch.setattr(data, "_download_failed", {})
    assert data.cifar10_source() == "official"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py", "cifar10"]


# ---------------------------------------------------------------- MNIST IDX files: .gz, truncated

def _raw_folder(root, folder="MNIST"):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    return raw


def _gzip_test_split(raw, folder="MNIST"):
    """The real test split as .gz only; the training files as empty .gz placeholders."""
    import gzip
    for name in data.MNIST_FILES:
        with gzip.open(raw / f"{name}.gz", "wb", compresslevel=1) as f:
            if name.startswith("t10k"):
                f.write((data.data_root() / folder / "raw" / name).read_bytes())


@pytest.mark.parametrize("loader, folder", [(data.mnist, "MNIST"), (data.fashion_mnist, "FashionMNIST")])
def test_gz_only_copy_loads_bitwise_and_is_decompressed_once(loader, folder, tmp_path, monkeypatch):
    """Known answer: the .gz files give bitwise the tensors of the uncompressed ones."""
    if not (data.data_root() / folder / "raw" / "t10k-images-idx3-ubyte").is_file():
        pytest.skip(f"{folder} not present uncompressed under $WNA_DATA")
    want_x, want_y = loader(train=False, download=False)
    root, cache = tmp_path / "data", tmp_path / "cache"
    _gzip_test_split(_raw_folder(root, folder), folder)
    monkeypatch.setenv("WNA_DATA", str(root))
    monkeypatch.setenv("WNA_CACHE", str(cache))
    x, y = loader(train=False, download=False)
    assert torch.equal(x, want_x) and torch.equal(y, want_y) and x.dtype == torch.float32
    cached = sorted(p.name for p in (cache / "data").iterdir())
    assert len(cached) == 2 and not any(n.endswith(".tmp") for n in cached)
    assert not (root / folder / "raw" / "t10k-images-idx3-ubyte").exists()  # the data root is untouched
    stamps = {p: p.stat().st_mtime_ns for p in (cache / "data").iterdir()}
    x2, _ = loader(train=False, download=False)
    assert torch.equal(x2, want_x) and {p: p.stat().st_mtime_ns for p in stamps} == stamps  # read back
    # the placeholders are not the official training files: refused by their MD5, naming the file
    with pytest.raises(data.DataCorruptError, match="train-images-idx3-ubyte.gz decompresses to a file with MD5"):
        loader(train=True, download=False)


def test_unwritable_cache_still_reads_gz(tmp_path, monkeypatch, mnist_available):
    root = tmp_path / "data"
    _gzip_test_split(_raw_folder(root))
    (tmp_path / "cache").write_text("a file, not a folder")
    want_y = data.mnist(train=False, download=False)[1]
    monkeypatch.setenv("WNA_DATA", str(root))
    monkeypatch.setenv("WNA_CACHE", str(tmp_path / "cache"))
    assert torch.equal(data.mnist(train=False, download=False)[1], want_y)


def test_truncated_idx_names_the_file_its_size_and_the_fix(tmp_path, monkeypatch, mnist_available):
    real = data.data_root() / "MNIST" / "raw"
    raw = _raw_folder(tmp_path)
    for name in data.MNIST_FILES:
        (raw / name).write_bytes((real / name).read_bytes() if name.startswith("t10k") else b"")
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:3_920_016])  # half the file
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    with pytest.raises(data.DataCorruptError) as err:
        data.mnist(train=False, download=False)
    msg = str(err.value)
    assert msg.startswith(f"{images} is truncated: 3,920,016 bytes")
    assert "10,000 x 28 x 28" in msg and "needs 7,840,016 bytes" in msg and "delete it" in msg
    # a label file where the images belong: the header's magic number says so
    images.write_bytes((real / "t10k-labels-idx1-ubyte").read_bytes())
    with pytest.raises(data.DataCorruptError, match="not an IDX image file of unsigned bytes: its header "
                                                     "starts 0x00000801, expected 0x00000803"):
        data.mnist(train=False, download=False)
