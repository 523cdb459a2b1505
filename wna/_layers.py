"""Inner layers read during a probe's run: forward hooks on the copies the engine runs, for one run.

An :class:`~wna.engine.Estimator` whose ``layers()`` names submodules gets
their outputs next to the logits: ``update(stimuli, outputs, {name: output})``.
:class:`LayerReader` registers one forward hook per layer on each model the
engine may run for that call (the plain model, and the eager fast copy, which
keeps the module names), and :meth:`LayerReader.remove` takes them off at the
end of the run, also on an exception. A hook acts only inside
:meth:`LayerReader.run` on the thread that called it, so the worker threads
each collect their own chunks and any other call of the model meanwhile is
unaffected. Outside the engine, :func:`wna.models.record` reads layers.
"""

from __future__ import annotations

import threading
from typing import Callable

import torch

from ._checks import ProbabilitiesAsLogits

__all__ = ["LayerReader", "modules_of"]


def modules_of(model) -> dict[str, torch.nn.Module]:
    """``{name: module}`` of ``model`` (of the model inside a probabilities wrapper)."""
    if isinstance(model, ProbabilitiesAsLogits):
        model = model.model
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"reading a layer needs a torch.nn.Module, got {type(model).__name__}")
    return dict(model.named_modules())


class LayerReader:
    """Forward hooks on ``names`` of the models given to :meth:`attach`; ``read(name, output)``
    (on the worker thread, for each forward pass) returns what is kept of a layer's output."""

    def __init__(self, names, read: Callable):
        self.names = tuple(names)
        self.read = read
        self._local = threading.local()
        self._handles: list = []

    def check(self, model) -> None:
        """Raise a ValueError naming the layers if ``model`` lacks one of :attr:`names`."""
        modules = modules_of(model)
        bad = [n for n in self.names if not n or n not in modules]
        if bad:
            raise ValueError(f"no layer named {bad[0]!r}; layers: {[n for n in modules if n]}")

    def attach(self, *models) -> None:
        """Hook every layer of each model (checked first: nothing is hooked on an error)."""
        for m in models:
            self.check(m)
        for m in models:
            modules = modules_of(m)
            for name in self.names:
                self._handles.append(modules[name].register_forward_hook(self._hook(name)))

    def remove(self) -> None:
        """Remove every hook this reader registered."""
        while self._handles:
            self._handles.pop().remove()

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            acts = getattr(self._local, "acts", None)
            if acts is not None:
                acts[name].append(self.read(name, output))
        return hook

    def run(self, fn: Callable[[], torch.Tensor]):
        """``(fn(), {name: output})``: the layers' outputs during ``fn()`` on this thread, the
        outputs of several forward passes (chunks) concatenated along the batch axis."""
        self._local.acts = {n: [] for n in self.names}
        try:
            out = fn()
            acts = self._local.acts
        finally:
            self._local.acts = None
        missing = [n for n, v in acts.items() if not v]
        if missing:
            raise ValueError(f"layer {missing[0]!r} did not run in the model's forward pass")
        return out, {n: v[0] if len(v) == 1 else torch.cat(v) for n, v in acts.items()}
