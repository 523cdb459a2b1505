"""A model read at one layer: the responses of its units as the model's output (for :mod:`wna.sta`).

:func:`units` holds a forward hook on the layer for the length of a
``with`` block and yields :class:`Units`, a module that maps stimuli
``(B, *shape)`` to the activations ``(B, C)`` of the layer's channels at one
feature-map position. That is a model output the engine (:class:`wna.Probe`)
takes as it is: its checks, its fast channels-last copy and its worker
threads all apply. The forward pass stops once the layer has run.
"""

from __future__ import annotations

import contextlib
import threading

import torch
from torch import nn

from ._backends import eval_mode
from .models import record

__all__ = ["Units", "units", "feature_shape"]


class _Stop(BaseException):
    """Ends a forward pass once the layer has run (a BaseException: a model's ``except Exception`` lets it by)."""


class _Slot:
    """Per-thread hand-over from the hook to :class:`Units`.

    Deep copies share it on purpose: the engine's fast copy of a :class:`Units`
    carries a copy of the hook, and each worker thread reads its own slot.
    """

    def __init__(self):
        self.local = threading.local()

    def __deepcopy__(self, memo):
        return self


class Units(nn.Module):
    """``model`` read at ``layer``: stimuli ``(B, *shape)`` to the unit activations ``(B, C)``.

    Made by :func:`units`, which holds the hook that does the reading; outside
    that ``with`` block calling it raises a ``RuntimeError``. Its training
    flag is the model's (so :class:`wna.Probe`'s eval mode is the model's).
    """

    def __init__(self, model: nn.Module, layer: str, slot: _Slot):
        super().__init__()
        self.model = model
        self.layer = layer
        self._slot = slot

    @property
    def training(self) -> bool:
        m = self.__dict__.get("_modules", {}).get("model")
        return True if m is None else m.training

    @training.setter
    def training(self, mode: bool) -> None:  # nn.Module.train sets the children's flags itself
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self._slot.local
        local.out, local.armed = None, True
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            local.armed = False
        out, local.out = local.out, None
        if out is None:
            raise RuntimeError(f"layer {self.layer!r} did not run (call this model inside `with sta.units(...)`)")
        return out


def feature_shape(model: nn.Module, layer: str, shape, device="cpu") -> tuple[int, ...]:
    """The shape ``(C, H, W)`` or ``(C,)`` of one stimulus's activations at ``layer`` (one pass on zeros).

    A ``ValueError`` for an unknown layer (listing the names) or an output
    that is not a ``(B, C, H, W)`` or ``(B, C)`` tensor.
    """
    with eval_mode(model), torch.no_grad(), record(model, layer) as acts:
        try:
            model(torch.zeros((2, *shape), device=device))
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"the model rejected stimuli of shape {tuple(shape)}: {exc}") from exc
    out = acts.get(layer)
    if not isinstance(out, torch.Tensor) or out.ndim not in (2, 4):
        raise ValueError(f"layer {layer!r} must output a (B, C, H, W) or (B, C) tensor, got "
                         f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    return tuple(out.shape[1:])


@contextlib.contextmanager
def units(model: nn.Module, layer: str, position=None, *, channels=None, nonlinearity=None):
    """Within the block, a :class:`Units` module: the activations of ``layer`` at ``position``.

    >>> with units(model, "conv2", (4, 4), nonlinearity=torch.relu) as cells:
    ...     r = cells(x)                       # (B, 50): every conv2 channel at row 4, column 4

    ``position``: ``(i, j)`` in the layer's feature map (None for a layer
    with a ``(B, C)`` output); ``channels``: indices to keep (all when None);
    ``nonlinearity``: applied to the activations read (e.g. ``torch.relu``
    for the paper's post-ReLU responses when the model's ReLU is functional).
    The activations are cloned the moment the layer returns them (in-place
    operations after the layer cannot change them) and the forward pass
    stops there. The hook acts only inside :meth:`Units.forward`, so other
    calls of ``model`` meanwhile are unaffected; it is removed when the block
    ends, also on an exception.
    """
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise ValueError(f"no layer named {layer!r}; layers: {[n for n in modules if n]}")
    slot = _Slot()
    index = None if channels is None else [int(c) for c in channels]

    def hook(_module, _inputs, output):
        local = slot.local
        if not getattr(local, "armed", False):
            return None
        a = output.detach()
        if position is not None:
            a = a[:, :, int(position[0]), int(position[1])]
        if index is not None:
            a = a[:, index]
        a = a.clone()  # a copy: an in-place op after the layer (e.g. ReLU(inplace=True)) cannot change it
        local.out = a if nonlinearity is None else nonlinearity(a)
        raise _Stop

    handle = modules[layer].register_forward_hook(hook)
    try:
        yield Units(model, layer, slot)
    finally:
        handle.remove()
