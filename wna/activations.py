"""Mean layer activations per class and activation injection (the paper's Figs. 7C, 20, 21).

Noise per *predicted* class (:func:`noise_activations`, an
:class:`~wna.engine.Estimator` on the probe), real images per *true* class
(:func:`data_activations`, a finite data set streamed in order), and the mean
L2 distance between the classes' means per layer (:func:`mean_class_distance`).
The layers are read by the probe's forward hooks in the pass that computes
the decisions (:mod:`wna._layers`); ``"input"`` names the model's input.

:func:`inject` replaces a layer's output by ``(1 - γ) a + γ output`` inside a
block (a forward hook, always removed); :func:`injection_sweep` measures
Fig. 21's misclassification ratio for every class and γ through one engine
per layer. The tables the book reads from these (Fig. 20's layers compared,
Fig. 21's ease and fooling γ, Fig. 7C's flip): :mod:`wna.injection_tables`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from ._backends import FAST_CHUNK, eval_mode
from .engine import Estimator, Probe, Result, class_counts, probe_for
from .models import decide
from .stimuli import Rows
from .sweep import sweep

__all__ = ["INPUT", "ActivationMeans", "ActivationEstimator", "noise_activations",
           "data_activations", "class_distances", "mean_class_distance",
           "GAMMAS", "Injection", "inject", "Confusion", "InjectionSweep", "injection_sweep",
           "misclassification_ratio", "channel_maps"]

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


GAMMAS = tuple(round(0.1 * i, 1) for i in range(11))  # γ = 0, 0.1, ..., 1 (as Table 2)

# --------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------


def _gamma(gamma) -> float:
    number = isinstance(gamma, numbers.Real) and not isinstance(gamma, bool)
    if not number or not 0 <= float(gamma) <= 1:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    return float(gamma)


class Injection:
    """A hook that mixes ``activation`` into a layer's output: ``(1 - γ) a + γ out``
    (``torch.lerp``, exact at both ends; γ = 1 leaves the output untouched). As a pre-hook on
    the model it mixes the
    model's input. The holder is shared, never copied (a deep copy of a hooked model shares it), so
    changing :meth:`set` changes every copy's injection."""

    def __init__(self, activation=None, gamma: float = 1.0):
        self.activation, self.gamma = None, 1.0
        if activation is not None:
            self.set(activation, gamma)

    def set(self, activation, gamma) -> None:
        a = torch.as_tensor(activation)
        if not bool(torch.isfinite(a).all()):
            raise ValueError("the activation has NaN or inf values "
                             "(a class that received no noise?)")
        self.activation, self.gamma = a, _gamma(gamma)

    def __deepcopy__(self, memo):
        return self

    def _mix(self, out):
        if self.gamma == 1.0 or self.activation is None:
            return None
        want = tuple(self.activation.shape)
        if not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != want:
            raise ValueError(f"the activation has shape {want}, the layer's output "
                             f"{tuple(getattr(out, 'shape', ()))[1:]} per image")
        a = self.activation.to(out.device, out.dtype).expand_as(out)
        return torch.lerp(a, out, self.gamma) if self.gamma > 0 else a.contiguous()

    def __call__(self, module, args, output=None):
        if output is None:  # a forward pre-hook on the model: mix its input
            x = self._mix(args[0])
            return None if x is None else (x, *args[1:])
        return self._mix(output)


def _hook(model: torch.nn.Module, layer: str, holder: Injection):
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"injection needs a torch.nn.Module, got {type(model).__name__}")
    if layer == INPUT:
        return model.register_forward_pre_hook(holder)
    modules = dict(model.named_modules())
    if not layer or layer not in modules:
        names = [n for n in modules if n]
        raise ValueError(f"no layer named {layer!r}; use {INPUT!r} or one of {names}")
    return modules[layer].register_forward_hook(holder)


@contextlib.contextmanager
def inject(model: torch.nn.Module, layer: str, activation, gamma: float):
    """Inside the block, ``layer``'s output is ``(1 - gamma) * activation + gamma * output``.

    ``layer``: a submodule's name, or ``"input"`` (the model's input is mixed).
    ``activation``: one image's activation (the output's shape without the
    batch axis), e.g. a class's mean noise activation. The hook is removed on
    exit, also when the block raises. Yields the :class:`Injection`.
    """
    holder = Injection(activation, gamma)
    handle = _hook(model, layer, holder)
    try:
        yield holder
    finally:
        handle.remove()


@dataclass(repr=False)
class Confusion(Result):
    """Counts ``confusion[true, predicted]`` ``(C, C)`` of a labelled data set's ``n`` images."""

    confusion: torch.Tensor
    n: int
    meta: dict = field(default_factory=dict)

    kind = "confusion"
    summed = ("confusion",)

    def __repr__(self) -> str:
        return f"Confusion(n={self.n}, classes={len(self.confusion)})"


class _Decisions(Estimator):
    """Confusion counts ``(true, predicted)`` of a labelled data set, streamed in order
    (a :class:`Confusion`)."""

    name = "injection_decisions"

    def __init__(self, rows: Rows, num_classes: int):
        super().__init__(rows)
        self.num_classes = num_classes

    def sample_at(self, start, n, generator):
        return self.stimulus.head(start, n)

    def update(self, stimuli, outputs):
        pred, C = decide(outputs)
        if C != self.num_classes:
            raise ValueError(f"the model has {C} classes, expected {self.num_classes}")
        cells = stimuli[1].to(pred.device) * C + pred
        return {"confusion": class_counts(cells, C * C).reshape(C, C)}

    def finalize(self, sums, n, meta):
        return Confusion(sums["confusion"], n, meta)


@dataclass
class InjectionSweep:
    """Fig. 21 for one layer: ``ratio[c, j]``, the share of the images not of class ``c`` that are
    classified as ``c`` when ``c``'s activation is injected at ``gammas[j]`` (NaN: no activation).
    ``confusion[c, j]``: the ``(true, predicted)`` counts; ``meta``: seconds,
    stimuli_per_second."""

    layer: str
    gammas: np.ndarray
    ratio: np.ndarray
    confusion: np.ndarray
    meta: dict = field(default_factory=dict)

    def fooling_gamma(self, level: float = 0.5) -> np.ndarray:
        """Per class, the largest γ (the most real image) at which the ratio is ``>= level``;
        NaN where no γ reaches it."""
        out = np.full(len(self.ratio), np.nan)
        for c, r in enumerate(self.ratio):
            hit = self.gammas[np.nan_to_num(r, nan=-1.0) >= level]
            out[c] = hit.max() if hit.size else np.nan
        return out


def misclassification_ratio(confusion: np.ndarray, target: int) -> float:
    """Images not of ``target`` classified as ``target`` over images not of ``target``;
    ``confusion[true, predicted]``."""
    confusion = np.asarray(confusion)
    others = confusion.sum() - confusion[target].sum()
    if not others:
        return np.nan
    return float((confusion[:, target].sum() - confusion[target, target]) / others)


def injection_sweep(model, layer: str, activations, images, labels, gammas=GAMMAS, *,
                    batch_size: int = 4096, fast="auto", progress: bool = True) -> InjectionSweep:
    """Fig. 21 for one ``layer``: each ``activations[c]`` injected at each γ into ``images``.

    One private copy of ``model`` carries a permanent hook whose activation
    and γ are changed between runs; one :class:`wna.Probe` on it (one fast
    copy, sharing the hook's holder) serves the whole sweep. The caller's
    model is never hooked. A class whose activation has NaN (no noise image
    was assigned to it) gets NaN ratios.
    """
    if fast in ("compile", "onnx"):
        raise ValueError(f"fast={fast!r} freezes the model; injection needs 'auto', 'eager' "
                         "or 'off'")
    gammas = np.array([_gamma(g) for g in gammas], dtype=np.float64)
    if gammas.size == 0:
        raise ValueError("need at least one gamma")
    rows = Rows(images, labels)
    activations = torch.as_tensor(activations, dtype=torch.float32)
    C = len(activations)
    hooked = copy.deepcopy(model).eval()
    holder = Injection()
    _hook(hooked, layer, holder)
    ratio = np.full((C, len(gammas)), np.nan)
    confusion = np.zeros((C, len(gammas), C, C), dtype=np.int64)
    est, n_images = _Decisions(rows, C), len(rows.images)
    finite = [c for c in range(C) if bool(torch.isfinite(activations[c]).all())]
    ones = np.flatnonzero(gammas == 1.0)
    plain = (finite[0], int(ones[0])) if finite and ones.size else None  # γ = 1: the plain model, run once
    cells = [(c, j) for c in finite for j, g in enumerate(gammas) if g != 1.0 or (c, j) == plain]

    @contextlib.contextmanager
    def edit(cell):  # the hook's holder, shared by the private copy and its fast copy
        before = holder.activation, holder.gamma
        holder.set(activations[cell[0]], gammas[cell[1]])
        try:
            yield
        finally:
            holder.activation, holder.gamma = before

    with Probe(hooked, fast=fast, batch_size=batch_size, progress=False) as probe:
        out = sweep(probe, cells, lambda p, cell: p.run(est, n_images), size=lambda cell: n_images, edit=edit,
                    desc=f"injection {layer}", progress=progress)
    for (c, j), r in zip(cells, out.results):
        confusion[c, j] = r.confusion.numpy()
    for c in finite:
        for j, g in enumerate(gammas):
            if g == 1.0 and (c, j) != plain:
                confusion[c, j] = confusion[plain]
            ratio[c, j] = misclassification_ratio(confusion[c, j], c)
    timing = out.timing.meta()
    meta = {"seconds": timing["seconds"], "stimuli_per_second": timing["stimuli_per_second"],
            "n_images": n_images, "stimuli": out.timing.stimuli,
            "fast_path": out.results[-1].meta["fast_path"] if out.results else None, "data": repr(rows)}
    return InjectionSweep(layer, gammas, ratio, confusion, meta)


def channel_maps(mean: torch.Tensor) -> torch.Tensor:
    """Mean activations ``(C, *shape)`` as images for display: a convolution's maps averaged over
    channels ``(C, H, W)``, an RGB input kept ``(C, 3, H, W)``, a vector of D units laid out as a
    ``(C, h, D / h)`` grid (h the largest divisor of D up to sqrt(D))."""
    mean = torch.as_tensor(mean)
    if mean.ndim == 4 and mean.shape[1] != 3:
        return mean.mean(1)
    if mean.ndim == 2:
        d = mean.shape[1]
        h = max(k for k in range(1, int(d ** 0.5) + 1) if d % k == 0)
        return mean.reshape(len(mean), h, d // h)
    return mean
