"""ImageNet validation images and the pretrained backbones of Table 1."""

import io
import os
import sys
import zipfile

import pytest
import torch

from wna import backbones, data

# Three images of the offline subset (labels.txt order) and their classes; every
# EfficientNet-Lite classifies them correctly at its native size.
KNOWN = {0: 472, 1: 260, 2: 300}


@pytest.fixture(scope="session")
def imagenet_available():
    try:
        data.imagenet_source()
    except data.DataNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _need_lite(name):
    if name not in backbones.installed():
        msg = f"{name}: pip install 'wna[imagenet]'"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def test_imagenet_subset_labels_range_and_size(imagenet_available):
    x, y = data.imagenet_val(32)
    assert x.shape == (1300, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert len(set(y.tolist())) == 725 and int(y.min()) >= 0 and int(y.max()) <= 999
    assert [int(y[i]) for i in KNOWN] == list(KNOWN.values())
    means = x.mean((0, 2, 3))  # natural images: ImageNet's channel means are about 0.485 / 0.456 / 0.406
    assert torch.allclose(means, torch.tensor([0.485, 0.456, 0.406]), atol=0.05)
    x4, y4 = data.imagenet_val(240, limit=4)
    assert x4.shape == (4, 3, 240, 240) and torch.equal(y4, y[:4])
    assert data.imagenet_source() == "mirror-1300"
    assert len(data.imagenet_classes()) == 1000 and data.imagenet_classes()[472] == "canoe"


def test_imagenet_missing_names_both_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    with pytest.raises(data.DataNotFoundError) as e:
        data.imagenet_val(32)
    assert str(tmp_path / data.IMAGENET_MIRROR) in str(e.value)
    assert str(tmp_path / data.IMAGENET_FOLDER) in str(e.value)


def _jpeg(color, size=(40, 30)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_imagenet_corrupt_image_names_the_member(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    path = tmp_path / data.IMAGENET_MIRROR
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ilsvrc2012-val-1300/labels.txt", "a.JPEG, 3\nb.JPEG, 7\n")
        zf.writestr("ilsvrc2012-val-1300/images/a.JPEG", _jpeg((255, 0, 0)))
        zf.writestr("ilsvrc2012-val-1300/images/b.JPEG", b"not a jpeg")
    x, y = data.imagenet_val(8, limit=1)
    assert y.tolist() == [3] and torch.allclose(x[0, :, 4, 4], torch.tensor([1.0, 0, 0]), atol=0.02)
    with pytest.raises(data.DataCorruptError, match="b.JPEG"):
        data.imagenet_val(8)
    path.write_bytes(b"not a zip")
    with pytest.raises(data.DataCorruptError, match="not the ImageNet subset zip"):
        data.imagenet_val(8)
    with pytest.raises(ValueError, match="size"):
        data.imagenet_val(0)


def test_imagenet_standard_layout_uses_sorted_synsets_and_centre_crop(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    val = tmp_path / data.IMAGENET_FOLDER
    for k in range(1000):
        (val / f"n{k:08d}").mkdir(parents=True)
    (val / "n00000999" / "x.JPEG").write_bytes(_jpeg((0, 0, 255), size=(64, 32)))
    (val / "n00000002" / "y.JPEG").write_bytes(_jpeg((0, 255, 0)))
    x, y = data.imagenet_val(16)
    assert data.imagenet_source() == "folder"
    assert y.tolist() == [2, 999] and x.shape == (2, 3, 16, 16)
    assert torch.allclose(x[1].mean((1, 2)), torch.tensor([0.0, 0, 1]), atol=0.02)
    (val / "n00000999" / "x.JPEG").unlink()
    (val / "n00000999").rmdir()
    with pytest.raises(data.DataCorruptError, match="999 class folders"):
        data.imagenet_val(16)


def test_backbone_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'.*efficientnet_lite0"):
        backbones.load("resnet9")
    with pytest.raises(ValueError, match="resize"):
        backbones.load("efficientnet_lite0", resize=0)
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"wna\[imagenet\]"):
        backbones.load("efficientnet_lite1")
    assert backbones.installed() == ()

    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(RuntimeError, match="resnet152.*offline, use one of efficientnet_lite0"):
        backbones.load("resnet152")


def test_backbone_scales_and_resizes_its_input():
    seen = []

    class Net(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.mean((2, 3)).repeat(1, 334)[:, :1000]

    m = backbones.Backbone(Net(), "toy", mean=backbones._LITE_MEAN, std=backbones._LITE_STD,
                           input_size=224, resize=64)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert m(x).shape == (2, 1000)
    assert seen[-1].shape == (2, 3, 64, 64)
    m.resize = None
    m(x)
    torch.testing.assert_close(seen[-1], (x * 255 - 127) / 128)
    with pytest.raises(ValueError, match="RGB"):
        m(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("name", backbones.OFFLINE_BACKBONES)
def test_efficientnet_lite_classifies_known_images(name, imagenet_available):
    _need_lite(name)
    m = backbones.load(name)
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    x, y = data.imagenet_val(m.input_size, limit=len(KNOWN))
    with torch.inference_mode():
        logits = m(x)
        raw = m.net((x * 255 - 127) / 128)  # the checkpoint's own input scaling
    assert logits.shape == (len(KNOWN), 1000)
    torch.testing.assert_close(logits, raw)
    assert logits.argmax(1).tolist() == y.tolist()
    with torch.inference_mode():  # the ImageNet mean/std scaling of torchvision's models is wrong for it
        wrong = m.net((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                      / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    assert not torch.allclose(wrong, logits, atol=1e-2)
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(m(noise)).all()  # 32×32 noise runs, as in the paper


def test_paper_backbones_are_torchvision_models_that_take_32px_noise(monkeypatch):
    """The seven names of Table 1 build through the same path (untrained here: no download)."""
    import torchvision
    real = torchvision.models.get_model
    built = []

    def untrained(name, weights=None, **kwargs):
        assert weights == "DEFAULT"  # the pretrained ImageNet weights are what load asks for
        built.append(name)
        torch.manual_seed(0)
        extra = {"init_weights": True} if name == "googlenet" else {}  # silences its FutureWarning
        return real(name, weights=None, **kwargs, **extra)
    monkeypatch.setattr(torchvision.models, "get_model", untrained)
    noise = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in backbones.PAPER_BACKBONES:
        m = backbones.load(name)
        torch.testing.assert_close(m.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
        if name in ("squeezenet1_1", "mnasnet1_3", "googlenet"):  # the small ones: run them
            with torch.inference_mode():
                assert m(noise).shape == (2, 1000)
    assert built == list(backbones.PAPER_BACKBONES)
