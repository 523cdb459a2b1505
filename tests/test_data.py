import pytest
import torch

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
