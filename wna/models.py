"""The paper's architectures (its Figs. 10 and 11).

Every ``forward`` returns logits only. Inner activations are read by layer
name with forward hooks (:func:`record`), never returned as tuples; the
authors' models returned ``(softmax, x3, x2, x1)`` and then applied
cross-entropy to the softmax, a bug this package does not copy.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MnistCNN", "LogisticRegression", "build", "record", "ARCHITECTURES"]


class MnistCNN(nn.Module):
    """The paper's MNIST CNN: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10.

    Layer names (for :func:`record`): ``conv1``, ``conv2`` (pre-ReLU conv
    outputs), ``fc1`` (pre-ReLU), ``fc2`` (logits).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class LogisticRegression(nn.Module):
    """Multinomial logistic regression on flattened pixels (784 -> 10)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


ARCHITECTURES = {
    "mnist_cnn": MnistCNN,
    "logreg": LogisticRegression,
}


def build(arch: str, **kwargs) -> nn.Module:
    """A fresh, untrained model of the named architecture."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}") from None
    return cls(**kwargs)


@contextlib.contextmanager
def record(model: nn.Module, *names: str, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named submodules during forward passes.

    >>> with record(model, "conv1", "fc1") as acts:
    ...     logits = model(x)
    >>> acts["conv1"].shape

    The dict holds the output of the most recent forward pass of each layer.
    """
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"no layer named {unknown}; layers: {[n for n in modules if n]}")
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        def hook(_m, _inp, output, _name=name):
            out[_name] = output.detach() if detach else output
        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
