"""Template matching: classify images by their most similar template (Figs. 2C, 3, 5; Table 1).

Two rules, because the paper used both (its text and the authors' released code):

* ``rule="dot"``: the raw dot product of the flattened template and image,
  no normalisation of either. Fig. 2C's caption ("template matching using dot
  product") and Section 3.1's MNIST numbers: with the mean training digits as
  templates it gives the paper's 63.10% exactly.
* ``rule="cosine"``: both flattened and L2-normalised first (cosine
  similarity, no mean subtraction): the released code's rule for Fig. 5 and
  for the CIFAR-10 mean-image number.

Under ``dot`` the scale of each template matters (a template with a larger
norm wins more often), so the scaling applied to maps before matching
(:func:`minmax`, or none) is part of the method and is named wherever a
number is reported.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["RULES", "SCALINGS", "template_accuracy", "match", "cosines", "minmax", "class_means", "class_rms",
           "variants", "assigned_classes", "table1_summary", "NOT_RUN", "confusion_matrix", "predictions"]

RULES = ("dot", "cosine")


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map to [0, 1] (the paper's display; NaN maps stay NaN)."""
    maps = torch.as_tensor(maps)
    m = maps.reshape(maps.shape[0], -1).to(torch.float64)
    lo = m.amin(1, keepdim=True)
    hi = m.amax(1, keepdim=True)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return ((m - lo) / span).reshape(maps.shape)


def _labels(labels, n: int, C: int | None) -> torch.Tensor:
    """``labels`` as int64 ``(n,)`` in ``[0, C)``, refused rather than truncated or reshaped."""
    labels = torch.as_tensor(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must be ({n},) (one per image), got {tuple(labels.shape)}")
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        raise ValueError("labels must be whole class numbers, got fractional values")
    if labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or (C is not None and labels.max() >= C)):
        raise ValueError(f"labels must lie in [0, {C if C is not None else 'C'}), got "
                         f"{int(labels.min())}..{int(labels.max())}")
    return labels


def _flat(templates, images, labels=None):
    """Templates ``(C, *shape)`` and images ``(N, *shape)`` flattened to float64 rows.

    The per-item shapes must agree, not merely hold as many values:
    channels-last maps ``(C, H, W, ch)`` against images ``(N, ch, H, W)``
    would otherwise be compared pixel against the wrong pixel. They agree when
    equal once size-1 axes are dropped (``(28, 28)`` and ``(1, 28, 28)``), or
    when one side is flat (one axis, e.g. a linear model's weights ``(C, 784)``
    against images ``(N, 1, 28, 28)``: taken in the images' row-major order).
    """
    templates = torch.as_tensor(templates)
    images = torch.as_tensor(images)
    if templates.ndim < 2 or templates.shape[0] < 1:
        raise ValueError(f"templates must be (C, *shape) with C >= 1, got {tuple(templates.shape)}")
    if images.ndim < 1:
        raise ValueError("images must be (N, *shape), got a scalar")
    ts, xs = tuple(templates.shape[1:]), tuple(images.shape[1:])
    squeezed = tuple(d for d in ts if d != 1) == tuple(d for d in xs if d != 1)
    flat = (len(ts) <= 1 or len(xs) <= 1) and math.prod(ts) == math.prod(xs)
    if not (squeezed or flat):
        raise ValueError(f"templates are {ts} each but images {xs} (templates {tuple(templates.shape)}, "
                         f"images {tuple(images.shape)}); the shapes must match exactly (up to size-1 "
                         f"axes, or one side flat): transpose or reshape one of them first (e.g. "
                         f"channels-last to channels-first)")
    C = templates.shape[0]
    D = math.prod(images.shape[1:])
    t = templates.reshape(C, D).to(torch.float64)
    x = images.reshape(images.shape[0], D).to(torch.float64)
    if labels is not None:
        labels = _labels(labels, x.shape[0], C)
    return t, x, labels


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine between matching rows of two stacks of maps, ``(C, *shape)`` each (or one of them a
    single map ``(1, *shape)``, compared with every row of the other): float64 ``(C,)``, NaN where
    a row holds NaN (an empty class)."""
    a, b = torch.as_tensor(a).flatten(1).double(), torch.as_tensor(b).flatten(1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the maps differ in size: {a.shape[1]} and {b.shape[1]} values")
    return torch.nn.functional.cosine_similarity(a, b, dim=1)


def match(templates: torch.Tensor, images: torch.Tensor, rule: str = "dot") -> torch.Tensor:
    """The class of the best-matching template for each image, ``(N,)`` int64.

    ``templates`` ``(C, *shape)``, ``images`` ``(N, *shape)``. A template
    containing NaN (a class that received no stimulus) is never chosen.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    t, x, _ = _flat(templates, images)
    valid = torch.isfinite(t).all(1)
    if not valid.any():
        raise ValueError("every template is empty (NaN)")
    t = torch.where(valid[:, None], t, torch.zeros_like(t))
    if rule == "cosine":
        t = t / t.norm(dim=1, keepdim=True).clamp_min(1e-300)
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
    scores = x @ t.T
    scores[:, ~valid] = -math.inf
    return scores.argmax(1)


def template_accuracy(templates: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
                      rule: str = "dot") -> tuple[float, torch.Tensor]:
    """Accuracy and confusion matrix of template matching under ``rule`` (``"dot"`` or ``"cosine"``).

    Each image gets the class of the template with the largest score (see
    :func:`match`). Templates and images must have the same per-item shape
    (up to size-1 axes, or one side flat: see :func:`_flat`); a ``ValueError``
    otherwise, and for no images. Returns the accuracy in [0, 1] and the
    confusion matrix ``(C, C)`` of counts, rows true class, columns predicted class.
    """
    t, x, labels = _flat(templates, images, labels)
    if x.shape[0] == 0:
        raise ValueError("no images to match (an empty image tensor): the accuracy is undefined")
    pred = match(templates, images, rule)
    return float((pred == labels).double().mean()), confusion_matrix(labels, pred, t.shape[0])


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``(C, C)`` int64 of each (true, predicted) pair: rows true class, columns predicted."""
    labels, predicted = torch.as_tensor(labels).long(), torch.as_tensor(predicted).long()
    m = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    m.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    return m


def class_means(images: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Mean image per class ``(C, *shape)`` in float64 (Fig. 2C's "mean digit" templates).

    ``labels`` ``(N,)``, one per image, in ``[0, num_classes)``; a class without
    images gets a NaN template (never chosen by :func:`match`).
    """
    images = torch.as_tensor(images)
    if images.ndim < 1 or images.shape[0] == 0:
        raise ValueError(f"no images to average (images {tuple(images.shape)})")
    labels = _labels(labels, images.shape[0], None if num_classes is None else int(num_classes))
    C = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    x = images.reshape(images.shape[0], -1).to(torch.float64)
    sums = torch.zeros((C, x.shape[1]), dtype=torch.float64).index_add_(0, labels, x)
    counts = torch.zeros(C, dtype=torch.float64).index_add_(0, labels, torch.ones(len(labels), dtype=torch.float64))
    return (sums / counts[:, None]).reshape(C, *images.shape[1:])


def class_rms(images: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Root-mean-square image per class ``sqrt(mean(x^2))`` ``(C, *shape)`` in float64.

    The released code's CIFAR-10 "mean image" template: cosine
    similarity with it, not min-max normalised, classifies 28.58% of the
    CIFAR-10 test images of the JPEG mirror (the paper: 28.69%). The noise
    counterpart is :attr:`wna.probe.ClassificationImages.rms`.
    """
    x = torch.as_tensor(images).to(torch.float64, copy=True).square_()
    return class_means(x, labels, num_classes).sqrt()


# How a template set is scaled before matching: as it is, or each template min-max normalised.
SCALINGS = {"raw": torch.as_tensor, "min-max": minmax}


def variants(template_sets: dict, images: torch.Tensor, labels: torch.Tensor, *,
             scalings=tuple(SCALINGS), rules=RULES) -> dict:
    """Template matching of every set under every scaling and rule.

    ``template_sets`` maps a name to templates ``(C, *shape)``. Returns
    ``{(name, scaling, rule): (accuracy, confusion)}`` (see
    :func:`template_accuracy`), in the order name, scaling, rule.
    """
    unknown = set(scalings) - set(SCALINGS)
    if unknown:
        raise ValueError(f"scalings must be among {tuple(SCALINGS)}, got {sorted(unknown)}")
    return {(name, how, rule): template_accuracy(SCALINGS[how](t), images, labels, rule=rule)
            for name, t in template_sets.items() for how in scalings for rule in rules}


@torch.inference_mode()
def predictions(model: Callable, images: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """The class ``model`` gives each image (:func:`wna.models.decide`: the argmax, or logit > 0 for
    one logit), ``(N,)`` int64 on the CPU; in eval mode (the training flag restored after) and in
    batches of ``batch_size``, each output checked (its shape, NaN or inf) before it is read."""
    from ._backends import eval_mode, predict
    from .models import decide

    images = torch.as_tensor(images)
    if len(images) == 0:
        return torch.zeros(0, dtype=torch.int64)
    with eval_mode(model):
        return torch.cat([decide(predict(model, images[i:i + batch_size]))[0].cpu()
                          for i in range(0, len(images), batch_size)])


@torch.inference_mode()
def assigned_classes(model: Callable, maps: torch.Tensor) -> torch.Tensor:
    """The class ``model`` assigns to each map itself (Fig. 2A titles); -1 for an empty (NaN) map."""
    maps = torch.as_tensor(maps)
    valid = torch.isfinite(maps.reshape(maps.shape[0], -1)).all(1)
    out = torch.full((maps.shape[0],), -1, dtype=torch.int64)
    if valid.any():
        out[valid] = predictions(model, maps[valid].to(torch.float32))
    return out


# ---------------------------------------------------------------- Table 1's summary

NOT_RUN = "not run"


def table1_summary(rows: list[dict], top1: dict[str, float] | None = None, *,
                   labels=None, source: str | None = None, n_top1: int | None = None) -> dict:
    """A Table 1 run's best row, and its numbers as words: ``"not run"`` where one is missing.

    ``rows``: one dict per backbone and noise with ``backbone`` (its label),
    ``key`` (its name), ``noise``, ``empty`` (classes no noise image reached)
    and ``dot``, ``cosine`` (template accuracy in percent; ``None`` where
    template matching was not run, for want of validation images).
    ``top1``: each backbone's top-1 accuracy in percent (missing: not run).
    ``labels``, ``source``: the validation labels and :func:`imagenet_source`
    (``None``: no validation images); ``n_top1``: how many the top-1 check used.

    Returns ``best``, the row with the highest accuracy under either rule
    (ties to fewer empty classes) or, with no accuracy, the fewest empty
    classes; ``rule`` (``"dot"``, ``"cosine"`` or ``None``); ``accuracy``
    (the best row's, or ``None``); and ``text``, strings to glue:
    ``validation``, ``status``, ``best`` (which row, and why), ``best_label``,
    ``best_rule``, ``tm_acc`` (2 decimals), ``tm_acc_diff`` (minus the
    paper's), ``top1_<key>`` (``"88.0%"``), ``dot_<key>_<noise>`` and
    ``cos_<key>_<noise>`` (``"0.154%"``).
    """
    from .paper import difference

    if not rows:
        raise ValueError("no rows: no backbone and noise was run")
    top1 = top1 or {}
    matched = [r for r in rows if r.get("dot") is not None and r.get("cosine") is not None]
    if matched:
        best = max(matched, key=lambda r: (max(r["dot"], r["cosine"]), -r["empty"]))
        rule = "dot" if best["dot"] >= best["cosine"] else "cosine"
        accuracy = float(best[rule])
    else:
        best, rule, accuracy = min(rows, key=lambda r: r["empty"]), None, None
    label = f"{best['backbone']}, {best['noise']} noise"
    text = {"best_label": label, "best_rule": rule or NOT_RUN,
            "best": (f"{label}, {rule} rule" if rule else
                     f"{label}: the fewest empty classes, as template matching was not run"),
            "tm_acc": NOT_RUN if accuracy is None else f"{accuracy:.2f}",
            "tm_acc_diff": (NOT_RUN if accuracy is None
                            else f"{difference('imagenet_tm_acc', round(accuracy, 2)):+.2f}")}
    if labels is None:
        text["validation"] = "none"
        text["status"] = ("top-1 and template matching were not run: no ImageNet validation "
                          "images (none under the data root, and the download failed); the "
                          "classification images, empty classes and throughput were measured")
    else:
        n, k = len(labels), len({int(v) for v in labels})
        text["validation"] = f"{n:,} of {k:,} classes ({source})"
        text["status"] = (f"template matching ran on {n:,} validation images"
                          + ("" if n_top1 is None else f" and the top-1 check on {n_top1:,}"))
    for r in rows:
        key = f"{r['key']}_{r['noise']}"
        for name, col in (("dot", "dot"), ("cos", "cosine")):
            v = r.get(col)
            text[f"{name}_{key}"] = NOT_RUN if v is None else f"{v:.3f}%"
        text.setdefault(f"top1_{r['key']}", NOT_RUN if r["key"] not in top1
                        else f"{top1[r['key']]:.1f}%")
    return {"best": best, "rule": rule, "accuracy": accuracy, "text": text}
