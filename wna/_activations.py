"""Mean layer activations per class (the paper's Fig. 20), read through the engine.

Used by :mod:`wna._injection`.

Noise per *predicted* class (:func:`noise_activations`, an
:class:`~wna.engine.Estimator` on the probe), real images per *true* class
(:func:`data_activations`, a finite data set streamed in order), and the mean
L2 distance between the classes' means per layer (:func:`mean_class_distance`).
The layers are read by the probe's forward hooks in the pass that computes
the decisions (:mod:`wna._layers`); ``"input"`` names the model's input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ._backends import FAST_CHUNK, eval_mode
from .engine import Estimator, Result, class_counts, probe_for
from .models import decide
from .stimuli import Rows

__all__ = ["INPUT", "ActivationMeans", "ActivationEstimator", "noise_activations",
           "data_activations", "class_distances", "mean_class_distance"]

INPUT = "input"

@dataclass(repr=False)
class ActivationMeans(Result):
    """Float64 sums of each layer's activation per class (``sums[layer]``: ``(C, *shape)``).

    ``group``: ``"predicted"`` (noise, by the model's decision) or ``"label"``
    (real data, by the true class); ``count`` ``(C,)``; ``n`` stimuli. Results
    of shards or disjoint runs merge (:meth:`wna.engine.Result.merge`) and save.
    """

    sums: dict
    count: torch.Tensor
    n: int
    group: str
    meta: dict = field(default_factory=dict)

    kind = "activation_means"
    summed = ("sums", "count")
    identity = ("group",)

    @property
    def layers(self) -> list[str]:
        return list(self.sums)

    @property
    def mean(self) -> dict[str, torch.Tensor]:
        """``{layer: (C, *shape)}`` mean activation per class; NaN where a class has no
        stimulus."""
        out = {}
        for k, s in self.sums.items():
            m = s / self.count.to(torch.float64).reshape(-1, *([1] * (s.ndim - 1)))
            m[self.count == 0] = float("nan")
            out[k] = m
        return out

    def __repr__(self) -> str:
        return f"ActivationMeans(n={self.n}, group={self.group!r}, layers={self.layers})"


class ActivationEstimator(Estimator):
    """Sums of layer activations per predicted class (noise) or per true class (a data set).

    ``source``: a stimulus (``.shape``, ``.sample``; grouped by the engine's
    decisions) or a :class:`Rows` data set (grouped by its labels). The
    layers (``"input"`` or names from ``model.named_modules()``) are read by
    the probe; each part of :data:`~wna._backends.FAST_CHUNK` rows is summed
    in float32 per class, then added in float64.
    """

    name = "activation_means"
    rows_per_update = FAST_CHUNK

    def __init__(self, layers, source, num_classes: int):
        super().__init__(source)
        self.names = list(layers)
        if not self.names:
            raise ValueError("need at least one layer")
        self.num_classes = int(num_classes)

    def layers(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n != INPUT)

    def key(self) -> dict:
        return {**super().key(), "layers": self.names}

    def sample_at(self, start, n, generator):
        if isinstance(self.stimulus, Rows):
            return self.stimulus.head(start, n)
        return self.sample(n, generator)

    def update(self, stimuli, outputs, layers=None):
        x = stimuli[0] if isinstance(stimuli, tuple) else stimuli
        group = stimuli[1].to(outputs.device) if isinstance(stimuli, tuple) else decide(outputs)[0]
        C, sums = self.num_classes, {}
        for n in self.names:
            a = x if n == INPUT else layers[n]
            # float32 sums of one part (serial index_add), added in float64
            s = a.new_zeros((C, math.prod(a.shape[1:]))).index_add_(0, group.to(a.device), a.flatten(1))
            sums[f"sum:{n}"] = s.double().reshape(C, *a.shape[1:])
        return {**sums, "count": class_counts(group, C)}

    def finalize(self, sums, n, meta):
        group = "label" if isinstance(self.stimulus, Rows) else "predicted"
        return ActivationMeans({k: sums[f"sum:{k}"] for k in self.names}, sums["count"], n, group, meta)


def _num_classes(probe: Probe, shape) -> int:
    with torch.inference_mode(), eval_mode(probe.model):
        return decide(probe.model(torch.zeros((1, *shape), device=probe.device)))[1]


def noise_activations(model, layers, stimulus, n_samples: int, *, seed: int = 0,
                      batch_size: int | None = None, fast=None,
                      progress: bool | None = None) -> ActivationMeans:
    """Mean activation of each of ``layers`` per *predicted* class over ``n_samples`` noise images
    drawn from ``stimulus`` (e.g. ``wna.stimuli.WhiteNoise((3, 32, 32))``). ``model``: a model or
    a :class:`wna.Probe` (one probe can then serve noise, data and more; see
    :func:`wna.engine.probe_for` for the settings, None: the probe's or its defaults)."""
    with probe_for(model, batch_size=batch_size, fast=fast, progress=progress) as probe:
        est = ActivationEstimator(layers, stimulus, _num_classes(probe, stimulus.shape))
        return probe.run(est, n_samples, seed=seed, desc="noise activations")


def data_activations(model, layers, images, labels, *, num_classes: int | None = None,
                     batch_size: int | None = None, fast=None,
                     progress: bool | None = None) -> ActivationMeans:
    """Mean activation of each of ``layers`` per *true* class over a data set (every row once);
    ``model`` and the settings as :func:`noise_activations`."""
    rows = Rows(images, labels)
    with probe_for(model, batch_size=batch_size, fast=fast, progress=progress) as probe:
        C = _num_classes(probe, rows.shape) if num_classes is None else int(num_classes)
        return probe.run(ActivationEstimator(layers, rows, C), len(rows.images), desc="data activations")


def class_distances(means: torch.Tensor) -> np.ndarray:
    """L2 distances ``(C, C)`` between the class means ``(C, *shape)`` (NaN rows stay NaN)."""
    m = torch.as_tensor(means, dtype=torch.float64).flatten(1)
    return torch.cdist(m, m).numpy()


def mean_class_distance(acts: ActivationMeans, per_unit: bool = False) -> dict[str, float]:
    """Fig. 20 (bottom): per layer, the mean L2 distance between the means of two different
    classes (pairs with an empty class left out); ``per_unit``: divided by sqrt(units)."""
    out = {}
    for layer, m in acts.mean.items():
        d = class_distances(m)
        off = d[~np.eye(len(d), dtype=bool)]
        off = off[~np.isnan(off)]
        scale = np.sqrt(m[0].numel()) if per_unit else 1.0
        out[layer] = float(off.mean() / scale) if off.size else float("nan")
    return out
