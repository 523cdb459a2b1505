"""Classification images as sums: the Result and the estimator behind :mod:`wna.probe`.

The engine (:meth:`wna.Probe.classification_images`) and the pure functions of
:mod:`wna.probe` share these; users import them from :mod:`wna.probe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ._estimator import Estimator
from ._result import Result, class_counts, class_sums
from .models import binary_logit, decide

__all__ = ["WEIGHTINGS", "ClassificationImages", "ClassImageEstimator", "accumulate"]

WEIGHTINGS = ("none", "confidence")


@dataclass(repr=False)
class ClassificationImages(Result):
    """Sums, sums of squares and counts of stimuli per predicted class.

    ``sums``: float64 ``(C, *shape)``; ``count``: int64 ``(C,)``; ``n``: total
    stimuli seen; ``weighting``: ``"none"`` or ``"confidence"`` (each stimulus
    multiplied by its max softmax probability before summing, the authors'
    variant; the mean is still divided by the count); ``sq``: float64 sums of
    the squared (weighted) stimuli per class, for :attr:`sem`; ``stimulus``:
    what the stimuli were (``repr`` of the generator).
    """

    sums: torch.Tensor
    count: torch.Tensor
    n: int
    weighting: str = "none"
    meta: dict = field(default_factory=dict)
    sq: torch.Tensor | None = None
    stimulus: str | None = None

    kind = "classification_images"
    summed = ("sums", "count", "sq")
    identity = ("weighting", "stimulus")

    @property
    def num_classes(self) -> int:
        return int(self.count.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.sums.shape[1:])

    def _per_class(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.float64).reshape(-1, *([1] * len(self.shape)))

    @property
    def mean(self) -> torch.Tensor:
        """Mean stimulus per class, float64 ``(C, *shape)``; NaN where count == 0."""
        m = self.sums / self._per_class(self.count)
        m[self.count == 0] = float("nan")
        return m

    def _need_squares(self, what: str) -> None:
        if self.sq is None:
            raise ValueError(f"{what} needs the sums of squares, and this result holds none (sq is None: built "
                             "without them or saved by an older wna); run the probe again "
                             "(wna.probe.classification_images or wna.Probe) to get them")

    @property
    def sem(self) -> torch.Tensor:
        """Standard error of :attr:`mean` per pixel, float64 ``(C, *shape)``; NaN where count < 2.

        ``sqrt(s^2 / c)`` with ``s^2`` the unbiased sample variance of the
        class's (weighted) stimuli, from the per-class sums of squares.
        """
        self._need_squares("sem")
        c = self._per_class(self.count)
        mean = self.sums / c
        var = ((self.sq - c * mean * mean) / (c - 1)).clamp_min(0)
        out = (var / c).sqrt()
        out[self.count < 2] = float("nan")
        return out

    @property
    def rms(self) -> torch.Tensor:
        """Root-mean-square stimulus per class ``sqrt(mean(x^2))``, ``(C, *shape)``; NaN where
        count == 0: the template of the authors' released code for Fig. 5 and CIFAR-10."""
        self._need_squares("rms")
        r = (self.sq / self._per_class(self.count)).sqrt()
        r[self.count == 0] = float("nan")
        return r

    @property
    def contrast(self) -> torch.Tensor:
        """Each class's mean stimulus minus the mean of all stimuli, ``(C, *shape)``; NaN where
        count == 0: the class's classification image with the noise's own mean removed (what
        Fig. 4 compares across sample sizes; a plain mean is dominated by the noise mean)."""
        grand = self.sums.sum(0) / max(self.n, 1)
        return self.mean - grand

    @property
    def frequency(self) -> torch.Tensor:
        """Fraction of stimuli assigned to each class."""
        return self.count.to(torch.float64) / max(self.n, 1)

    def __repr__(self) -> str:
        return (f"ClassificationImages(n={self.n}, classes={self.num_classes}, shape={self.shape}, "
                f"weighting={self.weighting!r}, count={self.count.tolist()})")



def _confidence(logits: torch.Tensor) -> torch.Tensor:
    logits = binary_logit(logits)
    if logits.ndim == 1:  # binary observer: probability of the chosen class
        p = torch.sigmoid(logits.double())
        return torch.maximum(p, 1 - p)
    return torch.softmax(logits.double(), dim=1).amax(1)


def accumulate(x: torch.Tensor, labels: torch.Tensor, C: int, weights=None) -> dict:
    sums, sq = class_sums(x.flatten(1), labels, C, weights, squares="per_class")
    return {"sums": sums, "count": class_counts(labels, C), "sq": sq}


class ClassImageEstimator(Estimator):
    """The estimator behind :func:`classification_images` (use it with :meth:`wna.Probe.run`)."""

    name = "classification_images"

    def __init__(self, stimulus, weighting: str = "none", num_classes: int | None = None):
        super().__init__(stimulus)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting
        self.num_classes = None if num_classes is None else int(num_classes)

    def key(self) -> dict:
        return {**super().key(), "weighting": self.weighting, "num_classes": self.num_classes}

    def update(self, stimuli, outputs):
        pred, c = decide(outputs)
        if self.num_classes is not None and c != self.num_classes:
            raise ValueError(f"num_classes={self.num_classes} but the model outputs {c} classes")
        weights = _confidence(outputs) if self.weighting == "confidence" else None
        return accumulate(stimuli, pred, c, weights)

    def finalize(self, sums, n, meta):
        shape = self.shape
        return ClassificationImages(sums["sums"].reshape(-1, *shape), sums["count"], n, self.weighting,
                                    meta, sums["sq"].reshape(-1, *shape), repr(self.stimulus))

