"""Activation injection (the paper's §3.3 end, Figs. 7C, 20 and 21), re-exported by :mod:`wna.attack`.

Mean layer activations of white noise per *predicted* class
(:func:`noise_activations`, an :class:`~wna.engine.Estimator` on the probe)
and of real images per *true* class (:func:`data_activations`), with the mean
L2 distance between the classes' means per layer (:func:`mean_class_distance`,
Fig. 20). :func:`inject` replaces a layer's output by
``(1 - γ) a + γ output`` inside a block (a forward hook, always removed);
:func:`injection_sweep` measures the misclassification ratio of Fig. 21 for
every class and γ through one engine per layer.

Activations are read without hooks on the caller's model: the model's forward
must be a chain of its children (a flatten allowed before a fully connected
child); the prefix up to a layer is run directly and checked once against a
hook capture (:func:`wna.models.record`). ``"input"`` names the model's input.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ._backends import FAST_CHUNK, eval_mode
from ._stream import digest
from .engine import Estimator, Probe, class_counts
from .models import decide, record

__all__ = ["INPUT", "GAMMAS", "Prefix", "ActivationMeans", "ActivationEstimator", "noise_activations",
           "data_activations", "class_distances", "mean_class_distance", "Injection", "inject",
           "InjectionSweep", "injection_sweep", "misclassification_ratio"]

INPUT = "input"
GAMMAS = tuple(round(0.1 * i, 1) for i in range(11))  # γ = 0, 0.1, ..., 1 (as Table 2)


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
            raise ValueError(f"layer activations need a torch.nn.Module, got {type(model).__name__}")
        children = list(model.named_children())
        names = [n for n, _ in children]
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("need at least one layer")
        bad = [n for n in self.layers if n != INPUT and n not in names]
        if bad:
            raise ValueError(f"no layer named {bad}: use {INPUT!r} or one of the model's children {names}")
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
    """A finite data set as a stimulus: rows in order (``sample_at``), never drawn at random."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images = torch.as_tensor(images, dtype=torch.float32)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if self.images.ndim < 2 or len(self.images) == 0 or self.labels.shape != (len(self.images),):
            raise ValueError(f"need images (N, ...) with N > 0 and labels (N,), got "
                             f"{tuple(self.images.shape)} and {tuple(self.labels.shape)}")
        self.shape = tuple(self.images.shape[1:])
        self.digest = digest("rows", [("images", self.images), ("labels", self.labels)])[:12]

    def sample(self, n, generator):
        raise ValueError("a data set is streamed in order (sample_at), not drawn at random")

    def rows(self, start: int, n: int):
        if start + n > len(self.images):
            raise ValueError(f"rows [{start}, {start + n}) of a data set of {len(self.images)}: run "
                             f"with n_samples <= {len(self.images)}")
        return self.images[start:start + n], self.labels[start:start + n]

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
        """``{layer: (C, *shape)}`` mean activation per class; NaN where a class has no stimulus."""
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

    def key(self) -> dict:
        return {**super().key(), "layers": self.prefix.layers}

    def sample_at(self, start, n, generator):
        if isinstance(self.stimulus, _Rows):
            return self.stimulus.rows(start, min(n, len(self.stimulus.images) - start))
        return self.sample(n, generator)

    def update(self, stimuli, outputs):
        x = stimuli[0] if isinstance(stimuli, tuple) else stimuli
        group = stimuli[1].to(outputs.device) if isinstance(stimuli, tuple) else decide(outputs)[0]
        C = self.num_classes
        sums = {f"sum:{n}": None for n in self.prefix.layers}
        for i in range(0, len(x), FAST_CHUNK):
            acts = self.prefix(x[i:i + FAST_CHUNK].to(self.device))
            g = group[i:i + FAST_CHUNK].to(self.device)
            for n, a in acts.items():  # float32 sums of one chunk (serial index_add), added in float64
                s = a.new_zeros((C, a[0].numel())).index_add_(0, g, a.flatten(1))
                s = s.double().reshape(C, *a.shape[1:])
                sums[f"sum:{n}"] = s if sums[f"sum:{n}"] is None else sums[f"sum:{n}"] + s
        if len(x) == 0:  # zero sums of the right shapes
            acts = self.prefix(x.new_zeros((1, *self.shape)).to(self.device))
            sums = {f"sum:{n}": torch.zeros((C, *a.shape[1:]), dtype=torch.float64, device=self.device)
                    for n, a in acts.items()}
        return {**sums, "count": class_counts(group, C)}

    def finalize(self, sums, n, meta):
        group = "label" if isinstance(self.stimulus, _Rows) else "predicted"
        means = {k[4:]: v for k, v in sums.items() if k.startswith("sum:")}
        return ActivationMeans({n_: means[n_] for n_ in self.prefix.layers}, sums["count"], n, group, meta)


def _probe(model, batch_size, fast, progress) -> tuple[Probe, bool]:
    if isinstance(model, Probe):
        return model, False
    return Probe(model, fast=fast, batch_size=batch_size, progress=progress), True


def _num_classes(probe: Probe, shape) -> int:
    with torch.inference_mode(), eval_mode(probe.model):
        return decide(probe.model(torch.zeros((1, *shape), device=probe.device)))[1]


def noise_activations(model, layers, stimulus, n_samples: int, *, seed: int = 0,
                      batch_size: int = 4096, fast="auto", progress: bool = True) -> ActivationMeans:
    """Mean activation of each of ``layers`` per *predicted* class over ``n_samples`` noise images
    drawn from ``stimulus`` (e.g. ``wna.stimuli.WhiteNoise((3, 32, 32))``). ``model``: a model or
    a :class:`wna.Probe` (one probe can then serve noise, data and more)."""
    probe, own = _probe(model, batch_size, fast, progress)
    try:
        est = ActivationEstimator(probe.model, layers, stimulus, _num_classes(probe, stimulus.shape))
        return probe.run(est, n_samples, seed=seed, desc="noise activations")
    finally:
        if own:
            probe.close()


def data_activations(model, layers, images, labels, *, num_classes: int | None = None,
                     batch_size: int = 4096, fast="auto", progress: bool = True) -> ActivationMeans:
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


# --------------------------------------------------------------------------
# Injection
# --------------------------------------------------------------------------


def _gamma(gamma) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0 <= float(gamma) <= 1:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    return float(gamma)


class Injection:
    """A hook that mixes ``activation`` into a layer's output: ``(1 - γ) a + γ out`` (``torch.lerp``,
    exact at both ends; γ = 1 leaves the output untouched). As a pre-hook on the model it mixes the
    model's input. The holder is shared, never copied (a deep copy of a hooked model shares it), so
    changing :meth:`set` changes every copy's injection."""

    def __init__(self, activation=None, gamma: float = 1.0):
        self.activation, self.gamma = None, 1.0
        if activation is not None:
            self.set(activation, gamma)

    def set(self, activation, gamma) -> None:
        a = torch.as_tensor(activation)
        if not bool(torch.isfinite(a).all()):
            raise ValueError("the activation has NaN or inf values (a class that received no noise?)")
        self.activation, self.gamma = a, _gamma(gamma)

    def __deepcopy__(self, memo):
        return self

    def _mix(self, out):
        if self.gamma == 1.0 or self.activation is None:
            return None
        if not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != tuple(self.activation.shape):
            raise ValueError(f"the activation has shape {tuple(self.activation.shape)}, the layer's output "
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
        raise ValueError(f"no layer named {layer!r}; use {INPUT!r} or one of {[n for n in modules if n]}")
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


class _Decisions(Estimator):
    """Confusion counts ``(true, predicted)`` of a labelled data set, streamed in order."""

    name = "injection_decisions"

    def __init__(self, rows: _Rows, num_classes: int):
        super().__init__(rows)
        self.num_classes = num_classes

    def sample_at(self, start, n, generator):
        return self.stimulus.rows(start, min(n, len(self.stimulus.images) - start))

    def update(self, stimuli, outputs):
        pred, C = decide(outputs)
        if C != self.num_classes:
            raise ValueError(f"the model has {C} classes, expected {self.num_classes}")
        cells = stimuli[1].to(pred.device) * C + pred
        return {"confusion": class_counts(cells, C * C).reshape(C, C)}

    def finalize(self, sums, n, meta):
        return sums["confusion"], meta


@dataclass
class InjectionSweep:
    """Fig. 21 for one layer: ``ratio[c, j]``, the share of the images not of class ``c`` that are
    classified as ``c`` when ``c``'s activation is injected at ``gammas[j]`` (NaN: no activation).
    ``confusion[c, j]``: the ``(true, predicted)`` counts; ``meta``: seconds, stimuli_per_second."""

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
    return float((confusion[:, target].sum() - confusion[target, target]) / others) if others else np.nan


def injection_sweep(model, layer: str, activations, images, labels, gammas=GAMMAS, *,
                    batch_size: int = 4096, fast="auto", progress: bool = True) -> InjectionSweep:
    """Fig. 21 for one ``layer``: every class's ``activations[c]`` injected at every γ into ``images``.

    One private copy of ``model`` carries a permanent hook whose activation
    and γ are changed between runs; one :class:`wna.Probe` on it (one fast
    copy, sharing the hook's holder) serves the whole sweep. The caller's
    model is never hooked. A class whose activation has NaN (no noise image
    was assigned to it) gets NaN ratios.
    """
    if fast in ("compile", "onnx"):
        raise ValueError(f"fast={fast!r} freezes the model; injection needs 'auto', 'eager' or 'off'")
    gammas = np.array([_gamma(g) for g in gammas], dtype=np.float64)
    if gammas.size == 0:
        raise ValueError("need at least one gamma")
    rows = _Rows(images, labels)
    activations = torch.as_tensor(activations, dtype=torch.float32)
    C = len(activations)
    hooked = copy.deepcopy(model).eval()
    holder = Injection()
    _hook(hooked, layer, holder)
    ratio = np.full((C, len(gammas)), np.nan)
    confusion = np.zeros((C, len(gammas), C, C), dtype=np.int64)
    est, n, fast_path, plain = _Decisions(rows, C), 0, None, None
    t0 = time.perf_counter()
    from tqdm import tqdm
    with Probe(hooked, fast=fast, batch_size=batch_size, progress=False) as probe, \
            tqdm(total=C * len(gammas), desc=f"injection {layer}", unit="cell", disable=not progress) as bar:
        for c in range(C):
            if not bool(torch.isfinite(activations[c]).all()):
                bar.update(len(gammas))
                continue
            for j, g in enumerate(gammas):
                if g == 1.0 and plain is not None:  # γ = 1 is the plain model whatever the class
                    confusion[c, j] = plain
                else:
                    holder.set(activations[c], g)
                    conf, meta = probe.run(est, len(rows.images))
                    confusion[c, j] = conf.numpy()
                    n, fast_path = n + len(rows.images), meta["fast_path"]
                    plain = confusion[c, j] if g == 1.0 else plain
                ratio[c, j] = misclassification_ratio(confusion[c, j], c)
                bar.update()
    seconds = time.perf_counter() - t0
    meta = {"seconds": seconds, "stimuli_per_second": n / max(seconds, 1e-9), "n_images": len(rows.images),
            "stimuli": n, "fast_path": fast_path, "data": repr(rows)}
    return InjectionSweep(layer, gammas, ratio, confusion, meta)
