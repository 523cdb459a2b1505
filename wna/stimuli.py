"""Stimulus generators.

Every generator has a ``.shape`` (of one stimulus, without the batch axis) and
``.sample(n, generator) -> Tensor`` of shape ``(n, *shape)`` drawn only from
the given :class:`torch.Generator` (on the generator's device), so that a
seed fixes the stimuli exactly.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ._gabor import GaborPCANoise

__all__ = ["Stimulus", "WhiteNoise", "GaborPCANoise", "mix"]


@runtime_checkable
class Stimulus(Protocol):
    shape: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor: ...


class WhiteNoise:
    """Independent pixel noise: uniform U[low, high] (the paper's U[0,1]) or Gaussian.

    >>> noise = WhiteNoise((1, 28, 28))                       # U[0, 1]
    >>> noise = WhiteNoise((1, 28, 28), "gaussian", mean=0.5, std=0.25)
    """

    def __init__(self, shape, distribution: str = "uniform", *, low: float = 0.0, high: float = 1.0,
                 mean: float = 0.0, std: float = 1.0, dtype: torch.dtype = torch.float32):
        shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,)))
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"shape must be non-empty positive sizes, got {shape}")
        if distribution not in ("uniform", "gaussian"):
            raise ValueError(f"distribution must be 'uniform' or 'gaussian', got {distribution!r}")
        if distribution == "uniform" and not high > low:
            raise ValueError(f"need high > low, got low={low}, high={high}")
        if distribution == "gaussian" and not std > 0:
            raise ValueError(f"need std > 0, got {std}")
        self.shape = shape
        self.distribution = distribution
        self.low, self.high, self.mean, self.std = float(low), float(high), float(mean), float(std)
        self.dtype = dtype

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        dev = generator.device
        if self.distribution == "uniform":
            x = torch.rand((n, *self.shape), generator=generator, device=dev, dtype=self.dtype)
            if (self.low, self.high) != (0.0, 1.0):
                x.mul_(self.high - self.low).add_(self.low)
        else:
            x = torch.randn((n, *self.shape), generator=generator, device=dev, dtype=self.dtype)
            if (self.mean, self.std) != (0.0, 1.0):
                x.mul_(self.std).add_(self.mean)
        return x

    def __repr__(self) -> str:
        p = (f"low={self.low}, high={self.high}" if self.distribution == "uniform"
             else f"mean={self.mean}, std={self.std}")
        return f"WhiteNoise({self.shape}, {self.distribution!r}, {p})"


def mix(signal: torch.Tensor, noise: torch.Tensor, gamma: float) -> torch.Tensor:
    """The paper's Eq. 3: ``t = gamma * signal + (1 - gamma) * noise``."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    return gamma * signal + (1.0 - gamma) * noise
