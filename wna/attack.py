"""The bias-map attack (§3.2 of the paper, Figs. 6, 17, Table 2).

A pattern ``p`` (a class's bias map, or its mean training image) is mixed
into a base stimulus ``x`` (white noise, or a test image),

    t = (1 - γ) x + γ p,

and the *fooling rate* is the fraction of the stimuli the model assigns to
``p``'s class. Table 2 averages it over the ten classes for γ = 0, 0.1 … 1.

The base is either a noise generator (a fresh seeded stream: every γ and
every pattern sees the same noise images) or a finite tensor of images (each
used exactly once, in order: :meth:`MixEstimator.sample_at` returns rows
``[start, start + n)``). :func:`bias_map_attack` runs every (γ, pattern) cell
through one :class:`wna.Probe`, so the model's fast copy is built once.

How a map is scaled before mixing is part of the method (:func:`scale_patterns`):
the authors re-read each bias map from a PNG rendered by ``matplotlib``
(``imshow`` of the min-max normalised map in the default ``viridis`` colour
map, saved as 8-bit RGBA, cropped, resized to 28 x 28 and averaged over the
four channels) and min-max normalised the mean digits; ours min-max scales
each map to [0, 1] (``"minmax"``); ``"viridis"`` imitates the rendered PNG.

The tables built from the results (Table 2 beside the paper, the variants of the attack) live in
:mod:`wna.attack_tables`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .stimuli import Rows, mix
from ._stream import digest
from .engine import Estimator, class_counts, probe_for
from .models import decide
from .paper import TABLE2_GAMMAS
from .stimulation import Decisions
from .sweep import sweep
from .templates import minmax

__all__ = ["SCALES", "scale_patterns", "MixEstimator", "AttackResult", "bias_map_attack",
           "mixed_examples"]

SCALES = ("none", "minmax", "minmax8", "viridis")


def scale_patterns(patterns, how: str = "minmax") -> torch.Tensor:
    """Scale each pattern ``(K, *shape)`` before mixing; float32.

    ``"none"``: as they are. ``"minmax"``: each pattern to [0, 1]
    (:func:`wna.templates.minmax`). ``"minmax8"``: min-max, then rounded to
    8 bits (a grey PNG). ``"viridis"``: the authors' re-read PNG: min-max,
    mapped through matplotlib's ``viridis`` colour map, each RGBA channel
    rounded to 8 bits, then the mean of the four channels (the opaque alpha
    channel included), so the pattern spans about [0.40, 0.76] instead of
    [0, 1] (the crop and the resize of the rendered figure are left out).
    """
    if how not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {how!r}")
    p = torch.as_tensor(patterns)
    if p.ndim < 2 or len(p) == 0:
        raise ValueError(f"patterns must be (K, *shape) with K >= 1, got shape {tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()):
        raise ValueError("patterns must be finite (a class without a bias map has none)")
    if how == "none":
        return p.to(torch.float32)
    p = minmax(p)
    if how == "minmax8":
        p = torch.round(p * 255) / 255
    elif how == "viridis":
        from matplotlib import colormaps

        rgba = colormaps["viridis"](p.numpy())  # (..., 4) in [0, 1]
        p = torch.from_numpy(np.round(rgba * 255) / 255).mean(-1)
    return p.to(torch.float32)


class MixEstimator(Estimator):
    """Stimuli ``(1 - gamma) x + gamma p`` and the model's decisions per class (``Decisions``).

    ``base``: a stimulus generator (``.shape``, ``.sample(n, generator)``,
    e.g. :class:`wna.stimuli.WhiteNoise`) or a tensor of images ``(N, *shape)``
    (then run it with ``n_samples <= N``: the stimuli are rows
    ``[0, n_samples)``, each exactly once, whatever the batch size).
    ``pattern``: one image ``(*shape)``, the result's ``count`` is ``(C,)``;
    or K patterns ``(K, *shape)``: each batch of base images is mixed with
    every pattern (K times the rows through the model; ``n`` still counts
    base images) and ``count`` is ``(K, C)``, row k that of pattern k.
    """

    name = "bias_map_attack"
    unit = "stim"

    def __init__(self, base, pattern, gamma: float, device="cpu"):
        if isinstance(base, torch.Tensor):
            if base.ndim < 2 or len(base) == 0:
                raise ValueError(f"base images must be (N, *shape), N > 0: {tuple(base.shape)}")
            base = Rows(base.to(device, torch.float32))
        super().__init__(base)
        self.finite = isinstance(base, Rows)
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        pattern = torch.as_tensor(pattern, dtype=torch.float32).to(device)
        self.single = tuple(pattern.shape) == self.shape
        if not self.single and (tuple(pattern.shape[1:]) != self.shape or len(pattern) == 0):
            raise ValueError(f"pattern shape {tuple(pattern.shape)}, base shape {self.shape}")
        self.patterns = pattern[None] if self.single else pattern
        self.gamma = float(gamma)
        self.digest = digest("pattern", [("pattern", pattern.cpu())])[:12]

    def key(self) -> dict:
        return {"base": repr(self.stimulus), "pattern": self.digest, "gamma": self.gamma}

    def sample_at(self, start, n, generator):
        if self.finite:
            x = self.stimulus.head(start, n)[0]
        else:
            x = self.stimulus.sample(n, generator)
        t = mix(self.patterns[:, None], x[None], self.gamma)  # Eq. 3 for every pattern: (K, n, *shape)
        return t.reshape(-1, *self.shape)

    def update(self, stimuli, outputs):
        response, c = decide(outputs)
        k = len(self.patterns)
        which = torch.arange(k, device=response.device).repeat_interleave(len(response) // k)
        count = class_counts(which * c + response, k * c).reshape(k, c)
        return {"count": count[0] if self.single else count}

    def finalize(self, sums, n, meta):
        meta = {**meta, "noise": meta.pop("stimulus", repr(self.stimulus))}
        return Decisions(sums["count"], n, self.gamma, meta, repr(self.stimulus), self.digest)


@dataclass
class AttackResult:
    """Decisions of one bias-map sweep: ``counts[i, k, c]`` of the ``n`` stimuli
    ``(1 - gammas[i]) x + gammas[i] p_k`` went to class ``c``; pattern ``k`` targets
    ``classes[k]``.

    ``meta``: seed, base, scale, ``seconds`` and ``stimuli_per_second`` of
    the whole sweep, the engine's ``fast_path``.
    """

    gammas: np.ndarray
    classes: list
    counts: torch.Tensor
    n: int
    meta: dict = field(default_factory=dict)

    @property
    def fooling(self) -> np.ndarray:
        """Fraction of stimuli assigned to the pattern's class, ``(len(gammas), K)``."""
        k = torch.arange(len(self.classes))
        hits = self.counts[:, k, torch.as_tensor(self.classes)]
        return hits.numpy().astype(np.float64) / self.n

    @property
    def rate(self) -> np.ndarray:
        """The fooling rate averaged over the patterns, per γ (a row of Table 2)."""
        return self.fooling.mean(1)

    @property
    def rate_se(self) -> np.ndarray:
        """Binomial standard error of :attr:`rate` (patterns treated as independent)."""
        f = self.fooling
        return np.sqrt((f * (1 - f) / self.n).sum(1)) / f.shape[1]

    def _index(self, gamma: float) -> int:
        i = int(np.argmin(np.abs(self.gammas - float(gamma))))
        if not math.isclose(self.gammas[i], float(gamma), abs_tol=1e-9):
            raise ValueError(f"γ = {gamma} was not swept (γ: {self.gammas.tolist()})")
        return i

    def histogram(self, gamma: float) -> np.ndarray:
        """Predicted-class distribution at ``gamma`` per pattern, ``(K, C)`` fractions (Fig. 6A/B);
        at γ = 0 every row is that of the intact base."""
        return self.counts[self._index(gamma)].numpy().astype(np.float64) / self.n

    def at(self, gamma: float) -> float:
        """:attr:`rate` at one γ."""
        return float(self.rate[self._index(gamma)])

    def __repr__(self) -> str:
        rates = ", ".join(f"{r:.3f}" for r in self.rate)
        return f"AttackResult(n={self.n}, patterns={len(self.classes)}, rate=[{rates}])"


def bias_map_attack(model, base, patterns, gammas=TABLE2_GAMMAS, *, classes=None,
                    n_samples: int | None = None, seed: int = 0, scale: str = "minmax",
                    batch_size: int | None = None, device=None, fast=None,
                    progress: bool = True) -> AttackResult:
    """The fooling rate of ``(1 - γ) x + γ p_k`` for every γ and pattern (Fig. 6C, Table 2).

    ``model``: a model or a :class:`wna.Probe` (its settings apply unless given
    here, :func:`wna.engine.probe_for`; one engine serves every cell either way). ``base``: a noise generator (e.g.
    ``WhiteNoise((1, 28, 28))``; ``n_samples`` draws from ``seed``, the same
    for every cell) or a tensor of images (the first ``n_samples`` rows,
    default all, each exactly once). ``patterns`` ``(K, *shape)``, scaled by
    :func:`scale_patterns` (``scale``); pattern ``k`` targets class
    ``classes[k]`` (default ``k``). The stimuli are not clipped.
    """
    gammas = np.asarray(gammas, dtype=np.float64).ravel()
    if len(gammas) == 0 or not np.all((gammas >= 0) & (gammas <= 1)):
        raise ValueError(f"gammas must be non-empty values in [0, 1], got {gammas.tolist()}")
    patterns = scale_patterns(patterns, scale)
    classes = list(range(len(patterns))) if classes is None else [int(c) for c in classes]
    if len(classes) != len(patterns) or min(classes) < 0:
        raise ValueError(f"need one non-negative class per pattern: {len(patterns)} patterns, "
                         f"classes {classes}")
    if isinstance(base, torch.Tensor):
        n_max = len(base)
        n_samples = n_max if n_samples is None else int(n_samples)
        if not 0 < n_samples <= n_max:
            raise ValueError(f"n_samples must lie in [1, {n_max}] (base images), got {n_samples}")
        base = Rows(base[:n_samples].to(torch.float32))
    elif n_samples is None:
        raise ValueError("a noise base needs n_samples")
    shape = tuple(base.shape)
    if tuple(patterns.shape[1:]) != shape:
        raise ValueError(f"patterns have shape {tuple(patterns.shape[1:])}, the base {shape}")
    with probe_for(model, {"progress": False}, device=device, fast=fast, batch_size=batch_size) as probe:
        return _attack(probe, base, patterns, gammas, classes, n_samples, seed, scale, progress)


def _attack(probe, base, patterns, gammas, classes, n_samples, seed, scale, progress) -> AttackResult:
    if isinstance(base, Rows) and base.images.device != probe.device:
        base = Rows(base.images.to(probe.device))

    def run_cell(p, g):
        r = p.run(MixEstimator(base, patterns, float(g), p.device), n_samples, seed=seed)
        if max(classes) >= r.count.shape[1]:
            raise ValueError(f"classes {classes} exceed the model's {r.count.shape[1]}")
        return r

    out = sweep(probe, gammas, run_cell, size=lambda g: n_samples * len(patterns), desc="bias-map attack",
                progress=progress)
    counts = torch.stack([r.count for r in out.results]).to(torch.int64)
    timing = out.timing.meta()
    meta = {"seed": int(seed), "n_samples": int(n_samples), "scale": scale, "base": repr(base),
            "seconds": timing["seconds"], "fast_path": out.results[-1].meta["fast_path"],
            "device": str(probe.device), "stimuli_per_second": timing["stimuli_per_second"]}
    return AttackResult(gammas, classes, counts, int(n_samples), meta)


def mixed_examples(base_image, patterns, gammas=(0.5, 0.8, 0.9, 1.0),
                   scale: str = "minmax") -> torch.Tensor:
    """Fig. 17: one base image mixed with every pattern at each γ, ``(K * len(gammas), *shape)``
    (row ``k`` of a grid with ``len(gammas)`` columns is pattern ``k``)."""
    patterns = scale_patterns(patterns, scale)
    x = torch.as_tensor(base_image, dtype=torch.float32)
    if tuple(x.shape) != tuple(patterns.shape[1:]):
        raise ValueError(f"the base image's shape is {tuple(x.shape)}, "
                         f"the patterns' {tuple(patterns.shape[1:])}")
    return torch.stack([mix(p, x, float(g)) for p in patterns for g in gammas])
