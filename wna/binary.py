"""Binary observers: the four stimulus-response cells, Eq. 1 and Eq. 2 (Fig. 1 of the paper).

Each trial shows the observer ``t = gamma * s + (1 - gamma) * n`` (Eq. 3): a
signal ``s`` of class 0 or 1 and a noise image ``n``, and records its answer.
:func:`stimulus_response_cells` runs a model through the engine
(:class:`wna.Probe`); :func:`cells_from_responses` computes the same from
recorded trials (a human observer's, say).
"""

from __future__ import annotations

from typing import Callable

import torch

from ._cells import CellsEstimator, StimulusResponseCells, cell_sums, make_cells
from ._stream import digest
from .engine import Probe, probe_for  # noqa: F401 (Probe: re-exported)

__all__ = ["StimulusResponseCells", "CellsEstimator", "stimulus_response_cells", "cells_from_responses"]


def stimulus_response_cells(model: Callable, signals: torch.Tensor, signal_classes: torch.Tensor,
                            noise, gamma: float, n_samples: int, batch_size: int = 4096,
                            seed: int = 0, device="cpu", progress: bool = True,
                            shard: tuple[int, int] | None = None, fast="auto",
                            checkpoint=None, checkpoint_every: float = 60.0,
                            outputs: str = "auto") -> StimulusResponseCells:
    """A binary classification-image experiment (Eqs. 1-3, Fig. 1).

    Each trial draws a signal uniformly from ``signals`` (its class, 0 or 1,
    from ``signal_classes``) and a noise image from ``noise``, shows the
    observer ``t = gamma * s + (1 - gamma) * n`` and records its response
    (class 1 when its single logit is > 0, or the argmax of two logits).
    A one-off call of :meth:`wna.Probe.stimulus_response_cells`: seeding,
    sharding, ``torch.distributed``, ``fast``, ``checkpoint`` and ``outputs``
    work as in :func:`wna.probe.classification_images`.
    """
    with probe_for(model, device=device, fast=fast, batch_size=batch_size, progress=progress,
                   outputs=outputs) as probe:
        return probe.stimulus_response_cells(signals, signal_classes, noise, gamma, n_samples, seed=seed,
                                             shard=shard, checkpoint=checkpoint,
                                             checkpoint_every=checkpoint_every)


def cells_from_responses(noise: torch.Tensor, signal_classes: torch.Tensor, responses: torch.Tensor, *,
                         stimuli: torch.Tensor | None = None, gamma: float = float("nan"),
                         chunk: int = 4096) -> StimulusResponseCells:
    """The four cells from recorded trials (no model): Eq. 1 and Eq. 2 for a human observer's data.

    ``noise`` ``(N, *shape)``: the noise field of each trial; ``signal_classes``
    and ``responses`` ``(N,)``: 0 or 1. ``stimuli``: what was shown (defaults
    to the noise; only the stimulus means use it). ``gamma`` is recorded as given.
    """
    noise = torch.as_tensor(noise)
    stimuli = noise if stimuli is None else torch.as_tensor(stimuli)
    s, r = torch.as_tensor(signal_classes).long(), torch.as_tensor(responses).long()
    N = len(noise)
    if N == 0 or s.shape != (N,) or r.shape != (N,) or stimuli.shape != noise.shape:
        raise ValueError("need N >= 1 trials: noise and stimuli (N, *shape), signal classes and responses (N,)")
    if not bool(((s == 0) | (s == 1)).all() and ((r == 0) | (r == 1)).all()):
        raise ValueError("signal classes and responses must be 0 or 1")
    total = None
    for i in range(0, N, chunk):
        part = cell_sums(stimuli[i:i + chunk], noise[i:i + chunk], s[i:i + chunk], r[i:i + chunk])
        total = part if total is None else {k: total[k] + part[k] for k in total}
    meta = {"source": "recorded", "n_samples": N}
    return make_cells(total, N, float(gamma), meta, "recorded", digest("recorded", [("classes", s)]),
                     tuple(noise.shape[1:]))
