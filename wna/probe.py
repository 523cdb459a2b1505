"""Classification images: the mean stimulus per predicted class, with its standard error.

Each stimulus is assigned to the class the model predicts (argmax of the
logits; for a single output column, class 1 when the logit is > 0). Per class
the probe adds up the float64 sum of the stimuli, of their squares and their
count, so memory does not grow with the number of stimuli, and gives the mean
(the classification image), its standard error per pixel and the frequency of
each class. :func:`classification_images` runs a model through the engine
(:class:`wna.Probe`); :func:`from_responses` computes the same from recorded
stimuli and responses (psychophysics trials, data no model made).

Unlike the authors' code, a class that receives no stimulus has a NaN mean
(not 0), and class means are ratios of global sums and counts (not averages
of per-batch means, which bias classes that are rare in a batch).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ._backends import FAST_CHUNK, OnnxModel, predict  # noqa: F401 (re-exported)
from ._stream import batch_generator  # noqa: F401 (re-exported)
from .binary import StimulusResponseCells, stimulus_response_cells  # noqa: F401 (re-exported)
from ._classimages import WEIGHTINGS, ClassificationImages, ClassImageEstimator, accumulate
from .engine import Estimator, Probe, Result, probe_for  # noqa: F401 (wna.probe.Probe)
from .templates import assigned_classes, class_means, cosines, minmax, template_accuracy  # noqa: F401 (re-exported)

__all__ = [
    "ClassificationImages", "ClassImageEstimator", "classification_images", "from_responses",
    "batch_generator", "predict", "template_accuracy", "minmax", "class_means", "assigned_classes",
    "StimulusResponseCells", "stimulus_response_cells", "WEIGHTINGS",
    "expected_cosine", "fit_k", "map_cosines", "share_weighted",
]


def expected_cosine(n, dim: int, k: float = 1.0, reference=None):
    """Expected cosine of a classification image from ``n`` stimuli to the true template.

    Known answer 4 of ``book/methods.md`` (linear observer, ``dim`` pixels, ``k = S^2 / (sigma^2 |w|^2)``,
    1 without internal noise): ``rho(n) = [1 + (pi/2) (dim/n) k] ** -0.5``. With
    ``reference``, the expected cosine to the map of the first ``reference >= n``
    stimuli of the same stream instead: ``rho(n) / rho(reference)`` (the extra
    noise of the smaller sample is uncorrelated with the larger sample's mean).
    Works on numbers and arrays.
    """
    def rho(m):
        return (1 + math.pi / 2 * dim * k / np.asarray(m, dtype=float)) ** -0.5
    out = rho(n) if reference is None else rho(n) / rho(reference)
    return float(out) if np.ndim(out) == 0 else out


def fit_k(ns, cosines, dim: int, reference=None) -> float:
    """The ``k`` of :func:`expected_cosine` that fits measured cosines best (least squares).

    A nonlinear observer (a CNN) is summarised by the linear observer whose
    maps converge at the same rate; ``k > 1`` converges more slowly.
    """
    from scipy.optimize import minimize_scalar
    ns, cosines = np.asarray(ns, dtype=float), np.asarray(cosines, dtype=float)
    keep = np.isfinite(cosines)
    if not keep.any():
        raise ValueError("no finite cosine to fit")

    def loss(logk):
        return float(((expected_cosine(ns[keep], dim, math.exp(logk), reference) - cosines[keep]) ** 2).sum())
    return math.exp(minimize_scalar(loss, bounds=(-12, 12), method="bounded").x)


def map_cosines(results: dict, reference: int | None = None) -> tuple[list[int], torch.Tensor]:
    """Cosine of each class's :attr:`~ClassificationImages.contrast` at every N to the one at ``reference``.

    ``results``: ``{N: ClassificationImages}`` (e.g. :meth:`wna.Probe.classification_images`
    with ``snapshots``); ``reference`` defaults to the largest N. Returns the
    sorted Ns and a float64 tensor ``(len(Ns), C)``, NaN where a class is empty.
    """
    ns = sorted(results)
    ref = results[max(ns) if reference is None else reference].contrast.flatten(1)
    out = torch.stack([cosines(results[n].contrast, ref) for n in ns])
    return ns, out


def share_weighted(cosines: torch.Tensor, count: torch.Tensor) -> np.ndarray:
    """Each row of per-class ``cosines`` ``(len(Ns), C)`` averaged with weights ``count``
    (e.g. the classes' shares of the noise at the largest N); classes whose cosine is NaN
    in a row are left out of that row's average. The typical noise image's map."""
    c = np.asarray(cosines, dtype=float)
    w = np.broadcast_to(np.asarray(count, dtype=float), c.shape).copy()
    w[~np.isfinite(c)] = 0.0
    total = w.sum(1)
    summed = np.where(w > 0, c * w, 0.0).sum(1)
    return np.where(total > 0, summed / np.where(total > 0, total, 1.0), np.nan)



def classification_images(model: Callable, stimulus, n_samples: int, batch_size: int = 4096,
                          seed: int = 0, device="cpu", weighting: str = "none",
                          progress: bool = True, num_classes: int | None = None,
                          shard: tuple[int, int] | None = None, fast="auto",
                          checkpoint=None, checkpoint_every: float = 60.0,
                          outputs: str = "auto") -> ClassificationImages:
    """Classification images of ``model`` under ``stimulus`` (Fig. 2 of the paper).

    A one-off call of :meth:`wna.Probe.classification_images`; to probe one
    model several times, build a :class:`wna.Probe` once and reuse it.

    Parameters
    ----------
    model: maps a batch ``(B, *stimulus.shape)`` to logits ``(B, C)``; a single
        output ``(B,)`` or ``(B, 1)`` is a binary observer (class 1 when > 0);
        probabilities need ``outputs="probabilities"``.
        It runs in eval mode (its training flag is restored afterwards) and is
        never moved or changed.
    stimulus: a generator with ``.shape`` and ``.sample(n, generator)``, e.g.
        :class:`wna.stimuli.WhiteNoise`.
    n_samples: number of stimuli, >= 1; batch ``i`` holds stimuli
        ``[i * batch_size, (i + 1) * batch_size)`` drawn from
        :func:`batch_generator` ``(seed, i)``.
    weighting: ``"none"`` (mean stimulus per predicted class) or
        ``"confidence"`` (each stimulus weighted by its max softmax probability,
        the authors' variant).
    num_classes: read from the first batch unless given.
    shard: ``(k, K)`` processes only the batches ``i`` with ``i % K == k``; the
        K shard results :meth:`~ClassificationImages.merge` into the full one
        (counts bitwise, float64 sums up to rounding: see :meth:`wna.engine.Result.merge`).
        Under an initialised ``torch.distributed`` process group the ranks
        split the batches the same way and every rank returns the full result.
    fast: ``"auto"``/``"eager"``, ``"compile"``, ``"onnx"`` or ``"off"`` (see
        :class:`wna.Probe`); the predictions are the plain fp32 model's, and
        ``meta["fast_path"]`` says which path ran, ``meta["rechecked"]`` how
        many near-ties the plain model recomputed.
    checkpoint: a file path for the running sums (see :meth:`wna.Probe.run`);
        ``meta["resumed_batches"]`` counts the batches taken from it.
    outputs: ``"auto"`` (the default: logits; outputs that look like
        probabilities, e.g. of a final softmax or sigmoid, or integers are
        refused), ``"logits"`` (not checked, for logits that happen to lie in
        [0, 1]) or ``"probabilities"`` (read as log-probabilities; one column
        ``p`` as ``logit(p)``, class 1 when ``p > 0.5``). See :class:`wna.Probe`.
    seed: an integer >= 0.
    """
    with probe_for(model, device=device, fast=fast, batch_size=batch_size, progress=progress,
                   outputs=outputs) as probe:
        return probe.classification_images(stimulus, n_samples, seed=seed, weighting=weighting,
                                           num_classes=num_classes, shard=shard, checkpoint=checkpoint,
                                           checkpoint_every=checkpoint_every)


def from_responses(stimuli: torch.Tensor, responses: torch.Tensor, *, num_classes: int | None = None,
                   weighting: str = "none", chunk: int = 4096) -> ClassificationImages:
    """Classification images from recorded stimuli ``(N, *shape)`` and responses (no model).

    ``responses``: the class of each trial, integers ``(N,)`` in ``[0, C)``
    (e.g. a human observer's answers), or logits ``(N, C)`` / ``(N,)`` from
    which the decisions are taken as in a probe (``weighting="confidence"``
    needs logits). The result equals a probe's over the same stimuli.
    """
    stimuli, responses = torch.as_tensor(stimuli), torch.as_tensor(responses)
    if len(stimuli) != len(responses) or len(stimuli) == 0:
        raise ValueError(f"need one response per stimulus and at least one: {len(stimuli)} stimuli, "
                         f"{len(responses)} responses")
    labels = not responses.is_floating_point()
    if labels:
        if responses.ndim != 1 or int(responses.min()) < 0:
            raise ValueError("integer responses must be class indices (N,) >= 0")
        C = int(responses.max()) + 1 if num_classes is None else int(num_classes)
        if int(responses.max()) >= C:
            raise ValueError(f"responses must lie in [0, {C})")
        if weighting != "none":
            raise ValueError("weighting='confidence' needs logits, not class labels")
    est = ClassImageEstimator(_Recorded(tuple(stimuli.shape[1:])), weighting, num_classes)
    total = None
    for i in range(0, len(stimuli), chunk):
        x, r = stimuli[i:i + chunk], responses[i:i + chunk]
        part = accumulate(x, r.long(), C) if labels else est.update(x, r)
        total = part if total is None else {k: total[k] + part[k] for k in total}
    meta = {"source": "recorded", "n_samples": len(stimuli)}
    return est.finalize(total, len(stimuli), meta)


class _Recorded:
    """Stands in for a stimulus generator for recorded data (it cannot draw)."""

    def __init__(self, shape):
        self.shape = shape

    def sample(self, n, generator):
        raise TypeError("recorded stimuli cannot be drawn")

    def __repr__(self) -> str:
        return f"Recorded({self.shape})"
