"""The :class:`Estimator` base: what a probe adds up (re-exported by :mod:`wna.engine`, where
the engine is documented for users)."""

from __future__ import annotations

from typing import ClassVar

import torch

__all__ = ["Estimator"]


class Estimator:
    """What a probe adds up. Subclasses set ``name`` and implement ``update`` and ``finalize``.

    ``sample(n, generator)`` returns the batch's stimuli: a tensor (the model
    input) or a tuple whose first element is the model input (the rest is
    passed on to ``update``, e.g. the noise behind a mixed stimulus).
    ``update(stimuli, outputs)`` returns this batch's sums, a dict of tensors;
    ``finalize(sums, n, meta)`` turns the sums over all batches into the result.
    ``key()`` identifies the experiment in checkpoints.

    The probe asks for batch ``i`` through ``sample_at(i * batch_size, n,
    generator)``, which calls ``sample``: an estimator over a finite data set
    (the test digits of a bias-map attack) overrides it to return rows
    ``[start, start + n)`` of its data, so a run over ``n_samples = len(data)``
    sees every row exactly once.

    Inner layers: an estimator whose :meth:`layers` names submodules of the
    model (names from ``model.named_modules()``) gets their outputs too,
    ``update(stimuli, outputs, layers)`` with ``layers = {name: output}``
    (what :meth:`read` keeps of each; rows as the stimuli's). The probe hooks
    the layers on the copies it runs for that call only (see
    :mod:`wna._layers`) and ``meta["layers_from"]`` says which copy they came
    from. ``rows_per_update``: with layers, each batch is run and updated in
    parts of this many rows (None: whole), their sums added in order, so
    that a batch's activations need not fit in memory at once.

    ``reads_outputs = False`` (only with layers): :meth:`update` ignores the
    outputs, so they are neither checked nor rechecked and the model may
    return anything (e.g. a feature map, for spike-triggered analysis).

    ``reads_logits``: the estimator reads the outputs as logits (decisions),
    so the probe refuses outputs that look like probabilities on the first
    batch (:mod:`wna._checks`); an estimator of raw responses (spike-triggered
    analysis) sets it False.
    """

    name: ClassVar[str] = "estimator"
    unit: ClassVar[str] = "img"
    reads_logits: ClassVar[bool] = True
    reads_outputs: bool = True
    rows_per_update: ClassVar[int | None] = None

    def __init__(self, stimulus):
        if not hasattr(stimulus, "sample") or not hasattr(stimulus, "shape"):
            raise ValueError("stimulus must have .shape and .sample(n, generator)")
        if stimulus.shape is None:
            fit = callable(getattr(stimulus, "fit", None))
            raise ValueError(f"{type(stimulus).__name__} has no stimulus shape yet" + (
                ": it is not fitted; call .fit(images) first" if fit else " (its .shape is None)"))
        self.stimulus = stimulus

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.stimulus.shape)

    def key(self) -> dict:
        return {"stimulus": repr(self.stimulus)}

    def sample(self, n: int, generator: torch.Generator):
        return self.stimulus.sample(n, generator)

    def sample_at(self, start: int, n: int, generator: torch.Generator):
        """Stimuli ``[start, start + n)`` of the run's stream; by default ``sample(n, generator)``."""
        return self.sample(n, generator)

    def layers(self) -> tuple[str, ...]:
        """The names of the model's submodules whose outputs :meth:`update` reads (none by default)."""
        return ()

    def read(self, name: str, output) -> torch.Tensor:
        """What is kept of layer ``name``'s output for one forward pass (a chunk of rows), on the
        worker thread that ran it: by default a copy (an in-place operation after the layer,
        e.g. ``ReLU(inplace=True)``, cannot change it)."""
        return output.detach().clone()

    def update(self, stimuli, outputs: torch.Tensor, layers: dict | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def finalize(self, sums: dict[str, torch.Tensor], n: int, meta: dict):
        raise NotImplementedError
