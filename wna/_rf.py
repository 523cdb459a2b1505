"""Receptive-field geometry of a unit in a conv/pool stack, read from the model (for :mod:`wna.sta`).

The geometry is computed, never typed in: the model is traced with
:mod:`torch.fx` (so functional pooling such as the MNIST CNN's
``F.max_pool2d`` counts) and every convolution and pooling on the way from the
input to the layer composes its kernel, stride, padding and dilation
(Araujo, Norris & Sim, "Computing receptive fields of convolutional neural
networks", Distill 2019)::

    size  += dilation * (kernel - 1) * jump
    start -= padding * jump
    jump  *= stride

Elementwise operations (activations, batch norm in eval mode, dropout,
sums of branches, reductions over channels) pass the geometry through; where
branches meet, the window is their union. An operation this module does not
know raises a ``ValueError`` naming it rather than guessing. A model that
``torch.fx`` cannot trace falls back, with a warning, to its modules in
registration order (functional operations are then unseen).
"""

from __future__ import annotations

import functools
import operator
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._backends import eval_mode
from .models import record

__all__ = ["RF", "receptive_field", "unit_geometry", "feature_shape"]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class RF:
    """Where the units of a feature map look in the input, per axis (rows, columns).

    ``size``: the window's side in input pixels; ``jump``: input pixels
    between neighbouring units (the product of the strides); ``start``: the
    input coordinate of the first row/column that unit ``(0, 0)`` sees
    (negative where padding reaches past the image). Unit ``(i, j)`` sees rows
    ``start[0] + i * jump[0]`` to ``start[0] + i * jump[0] + size[0] - 1``.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]

    def then(self, kernel, stride=1, padding=0, dilation=1) -> "RF":
        """The geometry after one more convolution or pooling with these (int or pair) settings."""
        k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
        return RF(tuple(self.size[a] + d[a] * (k[a] - 1) * self.jump[a] for a in (0, 1)),
                  tuple(self.jump[a] * s[a] for a in (0, 1)),
                  tuple(self.start[a] - p[a] * self.jump[a] for a in (0, 1)))

    def window(self, position, image=None) -> tuple[slice, slice]:
        """The input rows and columns unit ``position = (i, j)`` sees, clipped to ``image = (H, W)``."""
        out = []
        for a in (0, 1):
            lo = self.start[a] + int(position[a]) * self.jump[a]
            hi = lo + self.size[a]
            if image is not None:
                lo, hi = max(lo, 0), min(hi, int(image[a]))
            out.append(slice(lo, hi))
        return tuple(out)

    def union(self, other: "RF") -> "RF":
        """The window covering both (two branches meeting, e.g. a residual sum)."""
        if self.jump != other.jump:
            raise ValueError(f"branches of different strides meet ({self.jump} and {other.jump})")
        start = tuple(min(self.start[a], other.start[a]) for a in (0, 1))
        end = tuple(max(self.start[a] + self.size[a], other.start[a] + other.size[a]) for a in (0, 1))
        return RF(tuple(end[a] - start[a] for a in (0, 1)), self.jump, start)


PIXEL = RF((1, 1), (1, 1), (0, 0))  # the input itself
GLOBAL = "global"  # a unit that sees the whole input (after flatten, a linear layer, global pooling)

_POINTWISE_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.modules.batchnorm._BatchNorm,
                      nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                      nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Softplus,
                      nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Softmax2d)
_GLOBAL_MODULES = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_POINTWISE_FUNCTIONS = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu,
                        F.silu, F.mish, F.hardswish, F.hardtanh, F.softplus, torch.tanh, torch.sigmoid, F.tanh,
                        F.sigmoid, F.dropout, F.dropout2d, F.batch_norm, torch.abs, torch.square, torch.exp,
                        torch.clamp, torch.add, torch.sub, torch.mul, torch.div, torch.pow, operator.add,
                        operator.sub, operator.mul, operator.truediv, operator.neg, operator.pow, operator.abs}
_POINTWISE_METHODS = {"relu", "relu_", "tanh", "sigmoid", "abs", "square", "pow", "exp", "clamp", "clamp_",
                      "add", "add_", "sub", "mul", "mul_", "div", "neg", "contiguous", "float", "double", "to",
                      "detach", "clone"}
_CHANNEL_REDUCTIONS = {"sum", "mean", "amax", "amin", "norm", "prod"}  # fine over dim 1 only
_GLOBAL_METHODS = {"flatten", "view", "reshape"}
# positional parameter names of the functional convolutions and poolings
_FUNCTIONAL = {F.conv2d: ("input", "weight", "bias", "stride", "padding", "dilation"),
               F.max_pool2d: ("input", "kernel_size", "stride", "padding", "dilation"),
               torch.max_pool2d: ("input", "kernel_size", "stride", "padding", "dilation"),
               F.avg_pool2d: ("input", "kernel_size", "stride", "padding")}


def _conv_padding(padding, kernel, dilation):
    """Conv padding as pairs; ``"same"`` pads ``total // 2`` before (PyTorch's rule), ``"valid"`` 0."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        return tuple((_pair(dilation)[a] * (_pair(kernel)[a] - 1)) // 2 for a in (0, 1))
    return _pair(padding)


def _module_step(rf, mod: nn.Module, name: str):
    if isinstance(mod, nn.Conv2d):
        return rf.then(mod.kernel_size, mod.stride, _conv_padding(mod.padding, mod.kernel_size, mod.dilation),
                       mod.dilation)
    if isinstance(mod, nn.MaxPool2d):
        return rf.then(mod.kernel_size, mod.stride, mod.padding, mod.dilation)
    if isinstance(mod, nn.AvgPool2d):
        return rf.then(mod.kernel_size, mod.stride, mod.padding)
    if isinstance(mod, _POINTWISE_MODULES):
        return rf
    if isinstance(mod, _GLOBAL_MODULES):
        return GLOBAL
    raise ValueError(f"cannot follow the receptive field through module {name!r} ({type(mod).__name__})")


def _function_step(rf, node, root: nn.Module):
    names = _FUNCTIONAL[node.target]
    a = {**dict(zip(names, node.args)), **node.kwargs}
    if node.target is F.conv2d:
        w = a["weight"]
        if not (isinstance(w, torch.fx.Node) and w.op == "get_attr"):
            raise ValueError(f"cannot read the kernel size of {node.format_node()}")
        kernel = functools.reduce(getattr, w.target.split("."), root).shape[-2:]
        dil = a.get("dilation", 1)
        return rf.then(tuple(kernel), a.get("stride", 1), _conv_padding(a.get("padding", 0), kernel, dil), dil)
    k = a["kernel_size"]
    stride = a.get("stride") or k  # None or () means the kernel size
    return rf.then(k, stride, a.get("padding", 0), a.get("dilation", 1))


def _channel_dim(node) -> bool:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    return dim == 1 or dim == (1,) or dim == [1]


def _combine(rfs):
    rfs = [r for r in rfs if r is not None]
    if not rfs:
        return None  # a constant
    if any(r is GLOBAL for r in rfs):
        return GLOBAL
    out = rfs[0]
    for r in rfs[1:]:
        out = out.union(r)
    return out


class _Tracer(torch.fx.Tracer):
    """A tracer that also records the output node of every module call (leaf or not)."""

    def __init__(self):
        super().__init__()
        self.outputs: dict[str, torch.fx.Node] = {}

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        name = self.path_of_module(m)
        if isinstance(out, torch.fx.Proxy):
            self.outputs.setdefault(name, out.node)  # a module called twice: its first call
        return out


def _trace(model: nn.Module):
    tracer = _Tracer()
    return tracer.trace(model), tracer.outputs


def _traced(model: nn.Module, layer: str, graph, outputs):
    if layer not in outputs:
        raise ValueError(f"layer {layer!r} is not called in the traced forward of {type(model).__name__}")
    target = outputs[layer]
    modules = dict(model.named_modules())
    env: dict = {}
    for node in graph.nodes:
        ins = [env.get(n) for n in node.all_input_nodes]
        if node.op == "placeholder":
            env[node] = PIXEL if not env else None  # the first input is the stimulus
        elif node.op == "get_attr":
            env[node] = None
        elif node.op == "output":
            break
        elif _combine(ins) is None or _combine(ins) is GLOBAL:
            env[node] = _combine(ins)
        elif node.op == "call_module":
            env[node] = _module_step(_combine(ins), modules[node.target], node.target)
        elif node.op == "call_function" and node.target in _FUNCTIONAL:
            env[node] = _function_step(env[node.args[0]], node, model)
        elif node.op == "call_function" and (node.target in _POINTWISE_FUNCTIONS
                                             or (node.target is torch.cat and _channel_dim(node))):
            env[node] = _combine(ins)
        elif node.op == "call_function" and node.target in (torch.flatten, F.linear, F.adaptive_avg_pool2d):
            env[node] = GLOBAL
        elif node.op == "call_method" and (node.target in _POINTWISE_METHODS
                                           or (node.target in _CHANNEL_REDUCTIONS and _channel_dim(node))):
            env[node] = _combine(ins)
        elif node.op == "call_method" and node.target in _GLOBAL_METHODS:
            env[node] = GLOBAL
        else:
            raise ValueError(f"cannot follow the receptive field through {node.format_node()}")
        if node is target:
            return env[node]
    raise ValueError(f"layer {layer!r} does not depend on the input")  # pragma: no cover


def _registration_order(model: nn.Module, layer: str):
    rf, inside = PIXEL, False
    for name, mod in model.named_modules():
        if name == layer:
            inside = True
        elif inside and not name.startswith(layer + "."):
            return rf
        if next(mod.children(), None) is None and rf is not GLOBAL:  # a leaf module
            rf = _module_step(rf, mod, name)
    return rf


def receptive_field(model: nn.Module, layer: str) -> RF:
    """The receptive-field geometry of the units of ``layer`` (a name from ``model.named_modules()``).

    >>> receptive_field(MnistCNN(), "conv2")          # conv 5, pool 2 (functional), conv 5
    RF(size=(14, 14), jump=(2, 2), start=(0, 0))

    Raises a ``ValueError`` for an unknown layer name (listing the names), for
    a layer whose units see the whole input (after a flatten or a linear
    layer), and for operations on the way whose geometry is unknown.
    """
    names = [n for n, _ in model.named_modules() if n]
    if layer not in names:
        raise ValueError(f"no layer named {layer!r}; layers: {names}")
    try:
        traced = _trace(model)
    except Exception as exc:  # noqa: BLE001 - data-dependent control flow, shape arithmetic, ...
        traced = None
        warnings.warn(f"torch.fx cannot trace {type(model).__name__} ({str(exc)[:200]}); the receptive "
                      "field is computed from its modules in registration order (functional "
                      "operations unseen)", RuntimeWarning, stacklevel=2)
    rf = _registration_order(model, layer) if traced is None else _traced(model, layer, *traced)
    if rf is GLOBAL:
        raise ValueError(f"the units of layer {layer!r} see the whole input (it follows a flatten, "
                         "linear layer or global pooling): no receptive-field window")
    return rf


def unit_geometry(model: nn.Module, layer: str, fshape, shape, position):
    """``(position, (size, jump, start), (top, bottom, left, right))`` of a unit of ``layer``.

    ``fshape``: the layer's output shape per stimulus, ``(C, H, W)`` or
    ``(C,)`` (then all three are None: the unit sees the whole input);
    ``shape``: the stimulus shape; ``position``: ``(i, j)``, the centre of
    the map when None. The window is clipped to the image.
    """
    if len(fshape) == 1:
        if position is not None:
            raise ValueError(f"layer {layer!r} has no spatial map (its output is (B, {fshape[0]})): "
                             "leave position=None")
        return None, None, None
    h, w = fshape[1:]
    pos = (h // 2, w // 2) if position is None else tuple(int(v) for v in position)
    if len(pos) != 2 or not (0 <= pos[0] < h and 0 <= pos[1] < w):
        raise ValueError(f"position {position} lies outside the {h}x{w} feature map of layer {layer!r}")
    if len(shape) < 2:
        raise ValueError(f"stimuli of shape {shape} have no rows and columns for a receptive field")
    rf = receptive_field(model, layer)
    rows, cols = rf.window(pos, shape[-2:])
    if rows.stop <= rows.start or cols.stop <= cols.start:
        raise ValueError(f"unit {pos} of layer {layer!r} sees only padding")
    return pos, (rf.size, rf.jump, rf.start), (rows.start, rows.stop, cols.start, cols.stop)


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
