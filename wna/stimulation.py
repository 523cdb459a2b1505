"""Micro-stimulation (the paper's Section 3.4, Eq. 6, Figs. 9 and 23-25) and psychometric curves.

Eq. 6 raises the bias of each map ``m`` of layer ``l`` in proportion to the
map's mean activation over training images of a target digit::

    b_m  <-  b_m + lambda_l * k * a_m / max(a)

and the psychometric curve is the fraction of stimuli ``(1 - g) * U[0, 1] + g * digit``
(Eq. 3) classified as the target, for ``g`` in 21 levels from 0 to 1 and
``k = 0..10``. :func:`stimulate` shifts a layer's biases and restores them
bitwise; :func:`paper_delta` computes the shifts by the paper's rule;
:func:`psychometric_curves` measures the curves through the streaming engine
(one :class:`wna.Probe`, so one fast copy of the model, for the whole
``(k, g)`` sweep); :meth:`PsychometricCurves.fit` fits them (:func:`fit_curve`:
psignifit 4 with credible intervals where installed, else :func:`fit_psychometric`,
maximum likelihood with Wald intervals; cumulative Gaussian or logistic).

The rule follows the authors' released code (the book's Methods page): ``a`` is
the mean post-ReLU activation (over images, and over positions for a
convolution), ``lambda`` is 0.1 for ``conv1``, 1 for ``conv2`` and 0.01 for
``fc1`` (the paper's "fc", the 500-unit hidden layer), and the fc shift is
*not* divided by ``max(a)``; the "decreasing" panels (Fig. 24) subtract.
Known answer 5 of the Methods page (``book/methods.md``): shifting class 1's bias of a two-class
linear model by ``delta`` under Gaussian noise of s.d. ``sigma`` gives
``P(predict 1) = Phi((b1 - b0 + delta) / (sigma |w1 - w0|))`` exactly.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
from scipy import stats

from ._backends import eval_mode
from ._checks import check_seed
from ._psychometric import PsychometricFit, fit_curve, fit_psychometric, psychometric_function
from .binary import CellsEstimator
from .engine import Probe, Result, class_counts, probe_for
from .models import decide, record
from .stimuli import WhiteNoise
from .sweep import sweep

__all__ = ["LAMBDAS", "LEVELS", "stimulate", "mean_activation", "paper_delta", "Decisions",
           "DecisionEstimator", "PsychometricCurves", "psychometric_curves", "PsychometricFit",
           "fit_curve", "fit_psychometric", "psychometric_function", "shift_summary"]

LAMBDAS = {"conv1": 0.1, "conv2": 1.0, "fc1": 0.01}  # the paper's lambda_l (MnistCNN's layer names)
LEVELS = tuple(float(g) for g in np.linspace(0.0, 1.0, 21))  # the paper's signal levels g
_ACTIVATIONS = {"relu": torch.relu, "none": None, None: None}


def _bias(model, layer: str) -> torch.Tensor:
    """The bias tensor of ``model``'s submodule ``layer``, with clear errors."""
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"micro-stimulation needs a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    biased = [n for n, m in modules.items() if n and isinstance(getattr(m, "bias", None), torch.Tensor)]
    if layer not in modules:
        raise ValueError(f"no layer named {layer!r}; layers with a bias: {biased}")
    bias = getattr(modules[layer], "bias", None)
    if not isinstance(bias, torch.Tensor):
        raise ValueError(f"layer {layer!r} ({type(modules[layer]).__name__}) has no bias; "
                         f"layers with a bias: {biased}")
    return bias


@contextlib.contextmanager
def stimulate(target, layer: str, delta):
    """Add ``delta`` to the bias of ``layer`` inside the block; restore the bias bitwise on exit.

    ``target``: a model, or a :class:`wna.Probe` (then the model and every
    copy the probe runs are shifted alike, without rebuilding its engines:
    :meth:`wna.Probe.edit_in_place`). ``delta`` must have the bias's shape
    (one value per channel or unit). The original bias comes back on exit,
    also when the block raises. Yields the shifted bias (a copy).

    >>> with stimulate(model, "fc1", paper_delta(model, "fc1", sevens, k=5)):
    ...     logits = model(x)
    """
    probe = target if isinstance(target, Probe) else None
    model = target.model if probe is not None else target
    bias = _bias(model, layer)
    delta = torch.as_tensor(delta)
    if tuple(delta.shape) != tuple(bias.shape):
        raise ValueError(f"delta has shape {tuple(delta.shape)}, the bias of {layer!r} {tuple(bias.shape)}")
    if not bool(torch.isfinite(delta).all()):
        raise ValueError("delta must be finite")
    original = bias.detach().clone()
    shifted = original + delta.to(original.device, original.dtype)

    def put(value):
        def fn(m):
            _bias(m, layer).copy_(value)
        if probe is None:
            with torch.no_grad():
                fn(model)
        else:
            probe.edit_in_place(fn)

    put(shifted)
    try:
        yield shifted.clone()
    finally:
        put(original)


def _mean_activation(model, layer, images, activation, batch_size) -> tuple[torch.Tensor, int]:
    if not callable(activation) and activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be 'relu', 'none' or a callable, got {activation!r}")
    act = activation if callable(activation) else _ACTIVATIONS[activation]
    images = torch.as_tensor(images)
    if len(images) == 0:
        raise ValueError("need at least one image")
    device = _bias(model, layer).device
    total, count, ndim = None, 0, 0
    with torch.inference_mode(), eval_mode(model), record(model, layer) as acts:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size].to(device, torch.float32))
            out = acts[layer]
            if not isinstance(out, torch.Tensor) or out.ndim < 2:
                raise ValueError(f"layer {layer!r} must output (B, C, ...) activations")
            out, ndim = (act(out) if act is not None else out).double(), out.ndim
            s = out.sum(dim=[0, *range(2, out.ndim)])
            total, count = (s if total is None else total + s), count + out[:, 0].numel()
    return (total / count).cpu(), ndim


def mean_activation(model: torch.nn.Module, layer: str, images: torch.Tensor, *, activation="relu",
                    batch_size: int = 1024) -> torch.Tensor:
    """Per-channel mean activation of ``layer`` over ``images``, float64 ``(C,)``: the ``a`` of Eq. 6.

    The layer's output (read with :func:`wna.models.record`) goes through
    ``activation`` (``"relu"``: the post-ReLU maps of the released code;
    ``"none"``; or a callable), then is averaged over the images and over
    every axis after the channel axis (the positions of a convolution).
    ``images`` are fed as they are (in [0, 1] for the zoo's models).
    """
    return _mean_activation(model, layer, images, activation, batch_size)[0]


def paper_delta(model: torch.nn.Module, layer: str, images_of_target: torch.Tensor, k, *, direction=+1,
                lambdas: Mapping[str, float] | None = None, normalise: bool | None = None,
                activation="relu"):
    """The bias shift of Eq. 6: ``direction * lambda * k * a / max(a)`` (``a``: :func:`mean_activation`).

    ``lambdas`` overrides :data:`LAMBDAS` (the layer must be in it).
    ``normalise``: divide by ``max(a)``; None follows the released code
    (convolutions yes, fully connected layers no: ``0.01 * k * a`` for fc1),
    True is Eq. 6 as printed for every layer. ``direction``: +1 or
    ``"increase"`` (Figs. 9, 23), -1 or ``"decrease"`` (Fig. 24). ``k``: a
    number gives one shift (the bias's shape and dtype); a sequence gives
    ``{k: shift}`` from one pass over the images.
    """
    lam = {**LAMBDAS, **(lambdas or {})}
    if layer not in lam:
        raise ValueError(f"no lambda for layer {layer!r}; pass lambdas={{{layer!r}: ...}} (known: {sorted(lam)})")
    sign = {"increase": 1, "decrease": -1, 1: 1, -1: -1}.get(direction)
    if sign is None:
        raise ValueError(f"direction must be +1, -1, 'increase' or 'decrease', got {direction!r}")
    bias = _bias(model, layer)
    a, ndim = _mean_activation(model, layer, images_of_target, activation, 1024)
    if a.shape != bias.shape:
        raise ValueError(f"layer {layer!r} has {tuple(a.shape)} channels but a bias of shape {tuple(bias.shape)}")
    if ndim > 2 if normalise is None else normalise:  # a convolution's output has positions
        if not float(a.max()) > 0:
            raise ValueError(f"max(a) of layer {layer!r} is {float(a.max())}: cannot normalise by it")
        a = a / a.max()

    def one(kk):
        return (sign * lam[layer] * float(kk) * a).to(bias.dtype)

    if isinstance(k, numbers.Real):
        return one(k)
    return {kk: one(kk) for kk in k}


@dataclass(repr=False)
class Decisions(Result):
    """How many stimuli of one signal level the model assigned to each class: ``count`` ``(C,)``."""

    count: torch.Tensor
    n: int
    gamma: float
    meta: dict = field(default_factory=dict)
    noise: str | None = None
    signals: str | None = None

    kind = "decisions"
    summed = ("count",)
    identity = ("gamma", "noise", "signals")

    def __repr__(self) -> str:
        return f"Decisions(n={self.n}, gamma={self.gamma}, count={self.count.tolist()})"


class DecisionEstimator(CellsEstimator):
    """Stimuli ``gamma * s + (1 - gamma) * n`` (Eq. 3; ``s`` drawn from ``signals`` with replacement,
    ``n`` from ``noise``) and the model's decisions per class: one cell of a psychometric curve."""

    name = "psychometric_trials"
    unit = "stim"

    def __init__(self, signals, noise, gamma: float, device="cpu"):
        super().__init__(signals, torch.zeros(len(signals), dtype=torch.long), noise, gamma, device)

    def update(self, stimuli, outputs):
        response, c = decide(outputs)
        return {"count": class_counts(response, c)}

    def finalize(self, sums, n, meta):
        meta = {**meta, "noise": meta.pop("stimulus", repr(self.stimulus))}
        return Decisions(sums["count"], n, self.gamma, meta, repr(self.stimulus), self.digest)


@dataclass
class PsychometricCurves:
    """Fraction of stimuli classified as ``target`` per stimulation ``ks[i]`` and signal level ``levels[j]``.

    ``hits[i, j]`` of ``trials[i, j]`` stimuli were classified as ``target``.
    ``meta``: seed, stimuli per level, ``seconds`` and ``stimuli_per_second``
    of the whole sweep, the engine's fast path.
    """

    levels: np.ndarray
    ks: list
    hits: np.ndarray
    trials: np.ndarray
    target: int
    layer: str | None
    meta: dict = field(default_factory=dict)

    @property
    def fraction(self) -> np.ndarray:
        """``hits / trials``, ``(len(ks), len(levels))``."""
        return self.hits / self.trials

    def fit(self, ks=None, **options) -> dict:
        """``{k: PsychometricFit}``: the curves of ``ks`` (default all) fitted against ``levels``
        (options: :func:`fit_curve`, e.g. ``method="ml"``; each fit's ``method`` and ``note`` say which fit
        it is)."""
        return {k: fit_curve(self.levels, self.hits[i], self.trials[i], **options)
                for i, k in enumerate(self.ks) if ks is None or k in ks}

    def threshold_shifts(self, reference=None, **options) -> dict:
        """``{k: (shift, (low, high))}``: each curve's fitted threshold minus that of ``reference``
        (default the first k, normally k = 0). The interval adds the two variances (Wald's, or
        psignifit's intervals read as normal ones), which is conservative: every k sees the same
        stimuli, so their thresholds correlate positively. All NaN where either fit ended on its
        search bounds (a flat curve: no threshold)."""
        return self._shifts(self.fit(**options), self.ks[0] if reference is None else reference, options)

    @staticmethod
    def _shifts(fits, reference, options) -> dict:
        ref = fits[reference]
        z = float(stats.norm.ppf(0.5 + options.get("ci", 0.95) / 2))
        out = {}
        for k, f in fits.items():
            d = math.nan if f.at_bound or ref.at_bound else f.threshold - ref.threshold
            h = z * math.hypot(f.se["threshold"], ref.se["threshold"])
            out[k] = (d, (d - h, d + h))
        return out


def _level_seed(seed: int, j: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(j)]).generate_state(1, dtype=np.uint32)[0])


def psychometric_curves(model, signals: torch.Tensor, target: int, *, layer: str | None = None,
                        deltas: Mapping | None = None, levels=LEVELS, n_per_level: int | None = None,
                        noise=None, seed: int = 0, batch_size: int | None = None, device=None, fast=None,
                        progress: bool = True) -> PsychometricCurves:
    """Psychometric curves of ``model`` under micro-stimulation (Fig. 9), streamed through one engine.

    For each ``k, delta`` of ``deltas`` (e.g. ``paper_delta(model, "fc1",
    train_sevens, range(11))``; None: the unstimulated model alone, k = 0)
    the bias of ``layer`` is shifted by ``delta`` (:func:`stimulate`) and,
    at each level ``g`` of ``levels``, ``n_per_level`` stimuli
    ``g * s + (1 - g) * n`` (``s`` drawn with replacement from ``signals``,
    e.g. the target's test images; ``n`` from ``noise``, default U[0, 1])
    are classified; a hit is the class index ``target`` (for a binary
    observer 0 or 1). Level ``j`` draws from seed ``(seed, j)`` whatever k is:
    every k sees the same stimuli. ``model`` may be a :class:`wna.Probe`
    (its settings apply unless given here: :func:`wna.engine.probe_for`);
    otherwise one is built (``fast``: "auto", "eager" or "off", since a
    stimulated fast copy must be editable; batch size 4096 by default).
    """
    seed = check_seed(seed)
    signals = torch.as_tensor(signals, dtype=torch.float32)
    levels = np.asarray(levels, dtype=np.float64).ravel()
    if len(signals) == 0 or len(levels) == 0:
        raise ValueError("need at least one signal and one level")
    n_per_level = len(signals) if n_per_level is None else n_per_level
    noise = WhiteNoise(tuple(signals.shape[1:])) if noise is None else noise
    if deltas is None:
        deltas = {0: None}
    elif layer is None:
        raise ValueError("deltas need a layer")
    if fast in ("compile", "onnx"):
        raise ValueError(f"fast={fast!r} freezes the weights; micro-stimulation needs 'auto', 'eager' or 'off'")
    with probe_for(model, {"progress": False}, device=device, fast=fast, batch_size=batch_size) as probe:
        return _curves(probe, signals, target, layer, deltas, levels, n_per_level, noise, seed, progress)


def _curves(probe, signals, target, layer, deltas, levels, n_per_level, noise, seed, progress):
    ests = [DecisionEstimator(signals, noise, float(g), probe.device) for g in levels]
    cells = [(delta, j) for delta in deltas.values() for j in range(len(ests))]

    def run_cell(p, cell):
        r = p.run(ests[cell[1]], n_per_level, seed=_level_seed(seed, cell[1]))
        if not 0 <= target < len(r.count):
            raise ValueError(f"target {target} is not a class of this {len(r.count)}-class model")
        return r

    out = sweep(probe, cells, run_cell, size=lambda cell: n_per_level, desc=f"stimulation {layer or ''}".strip(),
                edit=lambda cell: None if cell[0] is None else stimulate(probe, layer, cell[0]), progress=progress)
    shape = (len(deltas), len(levels))
    hits = np.array([int(r.count[target]) for r in out.results], dtype=np.int64).reshape(shape)
    trials = np.array([r.n for r in out.results], dtype=np.int64).reshape(shape)
    meta = {"seed": int(seed), "n_per_level": int(n_per_level), "noise": repr(noise), **out.timing.meta(),
            "fast_path": out.results[-1].meta["fast_path"], "device": str(probe.device)}
    return PsychometricCurves(levels, list(deltas), hits, trials, int(target), layer, meta)


def shift_summary(curves: PsychometricCurves, k=None, *, reference=None, min_area: float = 0.05,
                  **fit_options) -> dict:
    """How stimulation ``k`` (default the largest) moved a curve, against ``reference`` (default k = 0).

    Returns ``shift`` (threshold difference, :meth:`PsychometricCurves.threshold_shifts`) with its
    interval ``low``, ``high``; ``area`` (the mean over levels of the change in the fraction of
    hits: fit-free, positive when the curve moved up or left); ``extrapolated`` (either threshold
    lies outside the sampled levels: its interval rests on the fitted shape); and ``direction``:
    "left" or "right" when the interval excludes 0, "none" when it does not, and for a flat
    curve (no threshold: the fit ended on its bounds) "left (flat)" or "right (flat)" when
    ``|area| > min_area``, else "no fit". ``fit``: the method of the two fits (:func:`fit_curve`;
    "psignifit", "ml", or "psignifit, ml" when they differ) and ``note`` their notes.
    """
    ks = list(curves.ks)
    k = ks[-1] if k is None else k
    ref = ks[0] if reference is None else reference
    fits = curves.fit(ks=[ref, k], **fit_options)  # only the two curves compared
    shift, (low, high) = PsychometricCurves._shifts(fits, ref, fit_options)[k]
    frac = curves.fraction
    area = float(np.mean(frac[ks.index(k)] - frac[ks.index(ref)]))
    if math.isnan(shift):
        direction = ("left (flat)" if area > min_area else "right (flat)" if area < -min_area
                     else "no fit")
    else:
        direction = "right" if low > 0 else "left" if high < 0 else "none"
    return {"k": k, "shift": float(shift), "low": float(low), "high": float(high), "area": area,
            "extrapolated": bool(fits[k].extrapolated or fits[ref].extrapolated),
            "direction": direction, "fit": ", ".join(dict.fromkeys(fits[q].method for q in (ref, k))),
            "note": "; ".join(dict.fromkeys(fits[q].note for q in (ref, k) if fits[q].note))}
