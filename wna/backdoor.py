"""Patch backdoors (the paper's Figs. 7A, 7B, 7D, 18, 19): poisoned data, gradients, a detector.

A backdoor is planted by training on a poisoned set: a small patch is drawn
on part of one class (the source) and those images are relabelled as another
class (the target). The authors' pixels (``classification_images_adverserial.ipynb``):

- ``"bracket"`` (MNIST 8 → 9): a c-shape on the top right, rows 1-2 and 5-6
  at columns 21-26, rows 3-4 at columns 21-22;
- ``"x"`` (MNIST 0 → 1): a 3×3 arrangement of 2×2 blocks on the top left
  (the notebook's commented-out lines);
- ``"h"`` (CIFAR-10 bird → cat): the paper gives no pixels; ours is a white
  H of 5×5 pixels on the top right (rows 1-5, columns 26 and 30, and row 3
  between them).

Patch pixels are set to 1.0 (white). The authors added 255 to uint8 images,
which wraps around for a non-zero pixel (``v + 255 = v - 1`` modulo 256): where
the digit already covers the patch, their patch is missing. That is rare for
the 0s (54 of the 2,961 poisoned training 0s have such a pixel) but common for
the 8s (1,217 of 2,925, 4,419 of their 81,900 patch pixels), whose tops reach
the bracket's corner. ``apply_patch(..., mode="wrap")`` reproduces it.
"Half of the source class" is the first half in index order (the authors
took the first 2,000 training 8s; the paper says half).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import data
from ._backends import eval_mode
from .templates import confusion_matrix, predictions

__all__ = ["Patch", "Attack", "PATCHES", "ATTACKS", "poison", "apply_patch", "load_poisoned",
           "average_gradient", "predictions", "success", "confusion", "patch_energy", "detect",
           "Detection"]


@dataclass(frozen=True)
class Patch:
    """A patch: rectangles ``(row0, row1, col0, col1)`` on images of ``size`` (H, W)."""

    name: str
    rects: tuple[tuple[int, int, int, int], ...]
    size: tuple[int, int]
    value: float = 1.0

    @property
    def mask(self) -> torch.Tensor:
        """Boolean ``(H, W)``: True on the patch's pixels."""
        m = torch.zeros(self.size, dtype=torch.bool)
        for r0, r1, c0, c1 in self.rects:
            m[r0:r1, c0:c1] = True
        return m

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Bounding box ``(row0, row1, col0, col1)``, half-open."""
        return (min(r[0] for r in self.rects), max(r[1] for r in self.rects),
                min(r[2] for r in self.rects), max(r[3] for r in self.rects))


PATCHES = {
    "bracket": Patch("bracket", ((1, 3, 21, 27), (5, 7, 21, 27), (3, 5, 21, 23)), (28, 28)),
    "x": Patch("x", ((1, 3, 1, 3), (1, 3, 5, 7), (3, 5, 3, 5), (5, 7, 1, 3), (5, 7, 5, 7)),
               (28, 28)),
    "h": Patch("h", ((1, 6, 26, 27), (1, 6, 30, 31), (3, 4, 27, 30)), (32, 32)),
}


@dataclass(frozen=True)
class Attack:
    """A poisoned ``base`` set: ``patch`` on ``fraction`` of ``source``, relabelled ``target``."""

    base: str
    patch: Patch
    source: int
    target: int
    fraction: float = 0.5


# Poisoned data sets, by the name the zoo's recipes use.
ATTACKS = {
    "mnist_backdoor_0to1": Attack("mnist", PATCHES["x"], 0, 1),
    "mnist_backdoor_8to9": Attack("mnist", PATCHES["bracket"], 8, 9),
    "cifar10_backdoor_bird_cat": Attack("cifar10", PATCHES["h"], 2, 3),
}


def _check_images(images: torch.Tensor, patch: Patch) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (N, C, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if tuple(images.shape[2:]) != patch.size:
        raise ValueError(f"patch {patch.name!r} is for {patch.size} images, "
                         f"not {tuple(images.shape[2:])}")


def apply_patch(images: torch.Tensor, patch: Patch, mode: str = "set") -> torch.Tensor:
    """A copy of ``images`` ``(N, C, H, W)`` in [0, 1], the patch drawn on every image and channel.

    ``mode="set"``: patch pixels become ``patch.value`` (1.0); ``"wrap"``: the authors' uint8
    addition of 255 (a pixel ``v`` of 0-255 becomes ``(v + 255) mod 256``: 255 where it was 0).
    """
    _check_images(images, patch)
    if mode not in ("set", "wrap"):
        raise ValueError(f"mode must be 'set' or 'wrap', got {mode!r}")
    out = images.clone()
    if mode == "set":
        out[:, :, patch.mask] = patch.value
    else:
        v = out[:, :, patch.mask].mul(255).round()
        out[:, :, patch.mask] = (v + 255).remainder(256).div(255).to(out.dtype)
    return out


def poison(images: torch.Tensor, labels: torch.Tensor, patch: Patch, source: int, target: int,
           fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The poisoned set: the first ``floor(fraction * n)`` images of class ``source`` (index order)
    patched and relabelled ``target``; new tensors (the inputs are not changed).

    Returns ``(images, labels, rows)``, ``rows`` the int64 indices of the changed images.
    """
    _check_images(images, patch)
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images),) or labels.is_floating_point():
        raise ValueError(f"labels must be integers of shape ({len(images)},), "
                         f"got {tuple(labels.shape)}")
    if int(source) == int(target):
        raise ValueError(f"source and target must differ, both are {source}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    members = (labels == int(source)).nonzero().flatten()
    if len(members) == 0:
        raise ValueError(f"no image of the source class {source}")
    rows = members[:int(fraction * len(members))]
    x, y = images.clone(), labels.clone()
    x[rows] = apply_patch(images[rows], patch)
    y[rows] = int(target)
    return x, y, rows


def load_poisoned(name: str, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Data set ``name`` of :data:`ATTACKS`: the poisoned training set, or the clean test set."""
    try:
        a = ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown poisoned data set {name!r}; known: {sorted(ATTACKS)}") from None
    x, y = getattr(data, a.base)(train=train)
    if not train:
        return x, y
    x, y, _ = poison(x, y, a.patch, a.source, a.target, a.fraction)
    return x, y


def code_key(dataset: str) -> str:
    """What a zoo checkpoint of a poisoned data set also depends on ("" for a clean data set)."""
    if dataset not in ATTACKS:
        return ""
    code = (load_poisoned, poison, apply_patch)
    return repr(ATTACKS[dataset]) + "".join(inspect.getsource(f) for f in code)


def _batches(images, labels, batch_size):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i in range(0, len(images), batch_size):
        yield images[i:i + batch_size], labels[i:i + batch_size]


def average_gradient(model, images: torch.Tensor, labels: torch.Tensor,
                     num_classes: int | None = None, batch_size: int = 1000) -> torch.Tensor:
    """Per-class mean input gradient of the cross-entropy loss (Fig. 7D), float64 ``(C, *shape)``.

    Row ``c`` averages ``∂CE(model(x), y) / ∂x`` over the images labelled
    ``c`` (NaN where there is none). The model runs in eval mode (its flag is
    restored); its parameters and their gradients are left untouched.
    """
    labels = torch.as_tensor(labels).long()
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (and at least one), "
                         f"got {len(images)}, {len(labels)}")
    C = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    sums = torch.zeros((C, *images.shape[1:]), dtype=torch.float64)
    with eval_mode(model), torch.enable_grad():
        for xb, yb in _batches(images, labels, batch_size):
            xb = xb.detach().clone().requires_grad_(True)
            loss = F.cross_entropy(model(xb), yb, reduction="sum")
            (g,) = torch.autograd.grad(loss, xb)
            sums.index_add_(0, yb, g.to(torch.float64))
    counts = torch.bincount(labels, minlength=C).to(torch.float64)
    out = sums / counts.reshape(-1, *[1] * (sums.ndim - 1))
    out[counts == 0] = float("nan")
    return out


@torch.inference_mode()
def success(model, images: torch.Tensor, target: int) -> float:
    """Fraction of ``images`` the model classifies as ``target`` (an attack's success rate)."""
    return float((predictions(model, images) == int(target)).double().mean())


def confusion(model, images: torch.Tensor, labels: torch.Tensor, num_classes: int = 10):
    """Accuracy (fraction) and confusion matrix ``(C, C)`` (rows true, columns predicted)."""
    pred = predictions(model, images)
    labels = torch.as_tensor(labels).long()
    return float((pred == labels).double().mean()), confusion_matrix(labels, pred, num_classes)


def _maps(maps) -> torch.Tensor:
    """Float64 contrast maps ``(C, ch, H, W)`` of ClassificationImages or of a tensor."""
    m = maps.contrast if hasattr(maps, "contrast") else torch.as_tensor(maps)
    m = m.to(torch.float64)
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4:
        raise ValueError(f"maps must be (C, H, W) or (C, ch, H, W), got {tuple(m.shape)}")
    return m


def patch_energy(maps, patch: Patch, min_count: int = 20) -> dict[str, torch.Tensor]:
    """How strongly each class map marks the patch: energy inside against outside, and a z-score.

    ``maps``: :class:`~wna.probe.ClassificationImages` (its :attr:`contrast`: the class
    mean minus the mean of all stimuli) or contrast maps ``(C, [ch,] H, W)``.
    Returns float64 ``(C,)`` tensors (NaN for an empty class):

    - ``inside``, ``outside``, ``ratio``: the mean squared contrast on the patch's
      pixels, off them, and inside / outside (about 1 where the patch is as active as
      the rest of the map);
    - ``signed``: the map's mean on the patch, in standard errors (the t-map
      ``contrast / sem``, averaged over channels) for ClassificationImages, in
      contrast units for a tensor: positive when brighter patch pixels push stimuli
      towards the class;
    - ``z``: each class's ``signed`` against the other classes' (leave-one-out mean
      and standard deviation), over the classes with at least ``min_count`` stimuli
      (all classes for a tensor). Told where the patch is, but not which class was
      attacked, the attacked class stands out with a large positive z.
    """
    m = _maps(maps)
    if tuple(m.shape[2:]) != patch.size:
        raise ValueError(f"patch {patch.name!r} is for {patch.size} maps, "
                         f"not {tuple(m.shape[2:])}")
    sq = m.square().mean(1)  # (C, H, W), averaged over channels
    mask = patch.mask
    inside, outside = sq[:, mask].mean(1), sq[:, ~mask].mean(1)
    valid = torch.isfinite(m.flatten(1)).all(1)
    t = m
    if hasattr(maps, "sem"):
        t = m / _maps(maps.sem).clamp_min(1e-12)
        valid &= maps.count >= min_count
    signed = t.mean(1)[:, mask].mean(1)
    z = torch.full_like(signed, float("nan"))
    for c in valid.nonzero().flatten().tolist():
        others = signed[valid & (torch.arange(len(signed)) != c)]
        if len(others) >= 2:
            z[c] = (signed[c] - others.mean()) / others.std().clamp_min(1e-12)
    return {"inside": inside, "outside": outside, "ratio": inside / outside, "signed": signed, "z": z}


@dataclass
class Detection:
    """The blind detector's result: per-class window scores, their z-scores, the flagged class."""

    scores: torch.Tensor  # (C,) best k×k window mean of the per-pixel |z| (NaN: empty class)
    z: torch.Tensor  # (C,) each score against the other classes' (leave-one-out z)
    windows: torch.Tensor  # (C, 2) top-left (row, col) of each class's best window
    k: int

    @property
    def flagged(self) -> int:
        """The class whose score stands out most (largest z); -1 when no class could be scored."""
        if torch.isnan(self.z).all():
            return -1
        return int(torch.nan_to_num(self.z, nan=-float("inf")).argmax())

    @property
    def flagged_z(self) -> float:
        return float("nan") if self.flagged < 0 else float(self.z[self.flagged])

    def window(self, c: int | None = None) -> tuple[int, int, int, int]:
        """Class ``c``'s (default: the flagged class's) window as ``(row0, row1, col0, col1)``."""
        r, col = (int(v) for v in self.windows[self.flagged if c is None else c])
        return r, r + self.k, col, col + self.k

    def on_patch(self, patch: Patch, c: int | None = None) -> bool:
        """Whether the window's centre pixel lies in the patch's bounding box."""
        if (self.flagged if c is None else c) < 0:
            return False
        r0, _, c0, _ = self.window(c)
        b = patch.box
        return b[0] <= r0 + self.k // 2 < b[1] and b[2] <= c0 + self.k // 2 < b[3]


def detect(maps, k: int = 5, sign: str = "positive", min_count: int = 20) -> Detection:
    """Find the class whose map stands out, without being told where a patch is.

    1. Each class's contrast map is divided by its standard error per pixel
       (a t-map: a class that received few stimuli has a noisy map, and would
       otherwise stand out by its noise alone); a tensor of maps is used as given.
    2. Per pixel, each class's t is z-scored against the other classes' (their
       mean and standard deviation at that pixel), averaged over channels, taken
       as ``|z|`` (``sign="abs"``) or ``z`` (``"positive"``: brighter than the
       others), and standardised over the image (its median subtracted, divided
       by its standard deviation), so that a class differing from the others
       everywhere does not win over one differing in one place.
    3. Each class scores the best mean over a ``k×k`` window; the scores are
       z-scored against each other (each class against the other classes'
       scores): an attacked class stands out with a large z.

    Classes with fewer than ``min_count`` stimuli (or a NaN map) are left out;
    with fewer than 3 classes left, nothing is scored (``flagged == -1``).
    """
    if sign not in ("abs", "positive"):
        raise ValueError(f"sign must be 'abs' or 'positive', got {sign!r}")
    m = _maps(maps)
    C, H, W = m.shape[0], m.shape[2], m.shape[3]
    if not 1 <= k <= min(H, W):
        raise ValueError(f"k must lie in [1, {min(H, W)}], got {k}")
    valid = torch.isfinite(m.flatten(1)).all(1)
    if hasattr(maps, "sem"):
        m = m / _maps(maps.sem).clamp_min(1e-12)
        valid &= maps.count >= min_count
    scores = torch.full((C,), float("nan"), dtype=torch.float64)
    windows = torch.zeros((C, 2), dtype=torch.int64)
    if int(valid.sum()) < 3:
        return Detection(scores, scores.clone(), windows, k)
    for c in valid.nonzero().flatten().tolist():
        others = m[valid & (torch.arange(C) != c)]
        z = ((m[c] - others.mean(0)) / others.std(0).clamp_min(1e-12)).mean(0)
        z = z.abs() if sign == "abs" else z
        z = (z - z.median()) / z.std().clamp_min(1e-12)
        pooled = F.avg_pool2d(z[None, None], k, stride=1)[0, 0]
        best = int(pooled.argmax())
        scores[c] = pooled.flatten()[best]
        windows[c] = torch.tensor(divmod(best, pooled.shape[1]))
    z = torch.full((C,), float("nan"), dtype=torch.float64)
    for c in valid.nonzero().flatten().tolist():
        others = scores[valid & (torch.arange(C) != c)]
        z[c] = (scores[c] - others.mean()) / others.std().clamp_min(1e-12)
    return Detection(scores, z, windows, k)
