"""Mean layer activations per class (the paper's Fig. 20), read without hooks.

Used by :mod:`wna._injection`.

Noise per *predicted* class (:func:`noise_activations`, an
:class:`~wna.engine.Estimator` on the probe), real images per *true* class
(:func:`data_activations`, a finite data set streamed in order), and the mean
L2 distance between the classes' means per layer (:func:`mean_class_distance`).
The model's forward must be a chain of its children (a flatten allowed before
a fully connected child): the prefix up to a layer runs directly, checked once
against a hook capture (:func:`wna.models.record`), so worker threads never
share a hooked model. ``"input"`` names the model's input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from ._backends import FAST_CHUNK, eval_mode
from ._stream import digest
from .engine import Estimator, Probe, class_counts
from .models import decide, record

__all__ = ["INPUT", "Prefix", "ActivationMeans", "ActivationEstimator", "noise_activations",
           "data_activations", "class_distances", "mean_class_distance"]

INPUT = "input"

# --------------------------------------------------------------------------
# The prefix of a chain model, and mean activations
# --------------------------------------------------------------------------


def _first_leaf(module: torch.nn.Module):
    return next((m for m in module.modules() if getattr(m, "weight", None) is not None), None)


class Prefix:
    """The children of ``model`` up to the deepest of ``layers``, run as a chain.

    ``Prefix(model, layers)(x)`` returns ``{layer: activation}``; before a
    child whose first weighted module is ``nn.Linear`` a batch with more than
    two axes is flattened. :meth:`check` compares the result with a hook
    capture of the model's own forward and raises a ValueError if the model
    is not such a chain.
    """

    def __init__(self, model: torch.nn.Module, layers):
        if not isinstance(model, torch.nn.Module):
            raise ValueError("layer activations need a torch.nn.Module, "
                             f"got {type(model).__name__}")
        children = list(model.named_children())
        names = [n for n, _ in children]
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("need at least one layer")
        bad = [n for n in self.layers if n != INPUT and n not in names]
        if bad:
            raise ValueError(f"no layer named {bad}: use {INPUT!r} or one of the model's "
                             f"children {names}")
        deepest = max((names.index(n) for n in self.layers if n != INPUT), default=-1)
        self.model, self.chain = model, children[:deepest + 1]

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {INPUT: x} if INPUT in self.layers else {}
        for name, child in self.chain:
            if x.ndim > 2 and isinstance(_first_leaf(child), torch.nn.Linear):
                x = x.flatten(1)
            x = child(x)
            if name in self.layers:
                out[name] = x
        return out

    def check(self, x: torch.Tensor) -> None:
        """Raise unless the chain's activations on ``x`` equal the model's own (hook capture)."""
        hooked = [n for n in self.layers if n != INPUT]
        with torch.inference_mode(), eval_mode(self.model):
            with record(self.model, *hooked) as acts:
                self.model(x)
            ours = self(x)  # after the capture: the chain's own calls would trigger its hooks
        for n in hooked:
            got, want = ours[n], acts.get(n)
            if not isinstance(want, torch.Tensor) or got.shape != want.shape or \
                    not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
                raise ValueError(
                    f"the model's forward is not a chain of its children up to {n!r}: running "
                    f"{[c for c, _ in self.chain]} in order does not give the layer's output")


class _Rows:
    """A finite data set as a stimulus: rows in order (``sample_at``), never drawn at random.

    ``labels`` may be None (the test digits of a bias-map attack need none).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        self.images = torch.as_tensor(images, dtype=torch.float32)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        n = len(self.images)
        if self.images.ndim < 2 or n == 0 or (self.labels is not None and self.labels.shape != (n,)):
            raise ValueError(f"need images (N, ...) with N > 0 and labels (N,), got "
                             f"{tuple(self.images.shape)} and "
                             f"{None if self.labels is None else tuple(self.labels.shape)}")
        self.shape = tuple(self.images.shape[1:])
        named = [("images", self.images)] + ([] if self.labels is None else [("labels", self.labels)])
        self.digest = digest("rows", named)[:12]

    def sample(self, n, generator):
        raise ValueError("a data set is streamed in order (sample_at), not drawn at random")

    def rows(self, start: int, n: int):
        """Images and labels (None without labels) of rows ``[start, start + n)``."""
        if start + n > len(self.images):
            raise ValueError(f"rows [{start}, {start + n}) of a data set of "
                             f"{len(self.images)}: run "
                             f"with n_samples <= {len(self.images)}")
        end = start + n
        return self.images[start:end], None if self.labels is None else self.labels[start:end]

    def head(self, start: int, n: int):
        """:meth:`rows` from ``start``, at most ``n`` of them (the probe's first test chunk may ask
        for more rows than the data set has)."""
        return self.rows(start, min(n, len(self.images) - start))

    def __repr__(self) -> str:
        return f"Rows(n={len(self.images)}, shape={self.shape}, #{self.digest})"


@dataclass
class ActivationMeans:
    """Float64 sums of each layer's activation per class (``sums[layer]``: ``(C, *shape)``).

    ``group``: ``"predicted"`` (noise, by the model's decision) or ``"label"``
    (real data, by the true class); ``count`` ``(C,)``; ``n`` stimuli.
    """

    sums: dict
    count: torch.Tensor
    n: int
    group: str
    meta: dict = field(default_factory=dict)

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


class ActivationEstimator(Estimator):
    """Sums of layer activations per predicted class (noise) or per true class (a data set).

    ``source``: a stimulus (``.shape``, ``.sample``; grouped by the engine's
    decisions) or a :class:`_Rows` data set (grouped by its labels). The
    activations come from a :class:`Prefix` of the plain model, run in chunks
    inside :meth:`update` (thread-safe: no hooks, the model in eval mode).
    """

    name = "activation_means"

    def __init__(self, model: torch.nn.Module, layers, source, num_classes: int):
        super().__init__(source)
        self.prefix = Prefix(model, layers)
        self.num_classes = int(num_classes)
        self.device = next(model.parameters()).device
        self.prefix.check(self.sample_at(0, 2, torch.Generator().manual_seed(0))[0].to(self.device)
                          if isinstance(source, _Rows) else
                          source.sample(2, torch.Generator().manual_seed(0)).to(self.device))
        # a channels-last copy runs the chunks (about 1.5x faster on a CPU; checked chain above)
        self.layout = torch.contiguous_format
        convs = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        if self.device.type == "cpu" and convs:
            self.layout = torch.channels_last
            self.prefix = Prefix(copy.deepcopy(model).eval().to(memory_format=self.layout), layers)

    def key(self) -> dict:
        return {**super().key(), "layers": self.prefix.layers}

    def sample_at(self, start, n, generator):
        if isinstance(self.stimulus, _Rows):
            return self.stimulus.head(start, n)
        return self.sample(n, generator)

    def update(self, stimuli, outputs):
        x = stimuli[0] if isinstance(stimuli, tuple) else stimuli
        group = stimuli[1].to(outputs.device) if isinstance(stimuli, tuple) else decide(outputs)[0]
        C = self.num_classes
        sums = {f"sum:{n}": None for n in self.prefix.layers}
        for i in range(0, len(x), FAST_CHUNK):
            c = x[i:i + FAST_CHUNK].to(self.device)
            acts = self.prefix(c.contiguous(memory_format=self.layout) if c.ndim == 4 else c)
            g = group[i:i + FAST_CHUNK].to(self.device)
            # float32 sums of one chunk (serial index_add), added in float64
            for n, a in acts.items():
                s = a.new_zeros((C, a[0].numel())).index_add_(0, g, a.flatten(1))
                s = s.double().reshape(C, *a.shape[1:])
                sums[f"sum:{n}"] = s if sums[f"sum:{n}"] is None else sums[f"sum:{n}"] + s
        if len(x) == 0:  # zero sums of the right shapes
            acts = self.prefix(x.new_zeros((1, *self.shape)).to(self.device))
            sums = {f"sum:{n}": torch.zeros((C, *a.shape[1:]), dtype=torch.float64,
                                            device=self.device)
                    for n, a in acts.items()}
        return {**sums, "count": class_counts(group, C)}

    def finalize(self, sums, n, meta):
        group = "label" if isinstance(self.stimulus, _Rows) else "predicted"
        means = {k[4:]: v for k, v in sums.items() if k.startswith("sum:")}
        means = {n_: means[n_] for n_ in self.prefix.layers}
        return ActivationMeans(means, sums["count"], n, group, meta)


def _probe(model, batch_size, fast, progress) -> tuple[Probe, bool]:
    if isinstance(model, Probe):
        return model, False
    return Probe(model, fast=fast, batch_size=batch_size, progress=progress), True


def _num_classes(probe: Probe, shape) -> int:
    with torch.inference_mode(), eval_mode(probe.model):
        return decide(probe.model(torch.zeros((1, *shape), device=probe.device)))[1]


def noise_activations(model, layers, stimulus, n_samples: int, *, seed: int = 0,
                      batch_size: int = 4096, fast="auto",
                      progress: bool = True) -> ActivationMeans:
    """Mean activation of each of ``layers`` per *predicted* class over ``n_samples`` noise images
    drawn from ``stimulus`` (e.g. ``wna.stimuli.WhiteNoise((3, 32, 32))``). ``model``: a model or
    a :class:`wna.Probe` (one probe can then serve noise, data and more)."""
    probe, own = _probe(model, batch_size, fast, progress)
    try:
        C = _num_classes(probe, stimulus.shape)
        est = ActivationEstimator(probe.model, layers, stimulus, C)
        return probe.run(est, n_samples, seed=seed, desc="noise activations")
    finally:
        if own:
            probe.close()


def data_activations(model, layers, images, labels, *, num_classes: int | None = None,
                     batch_size: int = 4096, fast="auto",
                     progress: bool = True) -> ActivationMeans:
    """Mean activation of each of ``layers`` per *true* class over a data set (every row once)."""
    rows = _Rows(images, labels)
    probe, own = _probe(model, batch_size, fast, progress)
    try:
        C = _num_classes(probe, rows.shape) if num_classes is None else int(num_classes)
        est = ActivationEstimator(probe.model, layers, rows, C)
        return probe.run(est, len(rows.images), desc="data activations")
    finally:
        if own:
            probe.close()


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
