"""Binary-observer trials as sums: the Result and the estimator behind :mod:`wna.binary`.

The engine (:meth:`wna.Probe.stimulus_response_cells`) and the pure functions
of :mod:`wna.binary` share these; users import them from :mod:`wna.binary`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._estimator import Estimator
from ._result import Result, class_counts, class_sums
from ._stream import digest
from .stimuli import mix
from .models import decide

__all__ = ["StimulusResponseCells", "CellsEstimator", "cell_sums", "make_cells"]


@dataclass(repr=False)
class StimulusResponseCells(Result):
    """Sums over the four (signal, response) cells of a binary experiment (Fig. 1).

    Trial ``t = gamma * s + (1 - gamma) * n`` (Eq. 3): a signal ``s`` of class
    0 or 1 and a noise image ``n``. ``noise_sums[s, r]`` and ``stimulus_sums[s, r]``
    are float64 sums of ``n`` and of ``t`` over the trials with signal class
    ``s`` and response ``r``; ``count[s, r]`` their number. ``noise_sq`` is
    the per-pixel sum of ``n**2`` over all trials (for Eq. 2). ``noise``
    names the noise generator and ``signals`` is a digest of the signals and
    their classes: results merge only when both (and ``gamma``) agree.
    """

    noise_sums: torch.Tensor
    stimulus_sums: torch.Tensor
    count: torch.Tensor
    noise_sq: torch.Tensor
    n: int
    gamma: float
    meta: dict = field(default_factory=dict)
    noise: str | None = None
    signals: str | None = None

    kind = "stimulus_response_cells"
    summed = ("noise_sums", "stimulus_sums", "count", "noise_sq")
    identity = ("gamma", "noise", "signals")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.noise_sums.shape[2:])

    def _cell_mean(self, sums: torch.Tensor) -> torch.Tensor:
        c = self.count.to(torch.float64).reshape(2, 2, *([1] * len(self.shape)))
        m = sums / c
        m[self.count == 0] = float("nan")
        return m

    @property
    def noise_means(self) -> torch.Tensor:
        """Mean noise per cell ``(2, 2, *shape)``: the paper's n̄_sr (NaN for an empty cell)."""
        return self._cell_mean(self.noise_sums)

    @property
    def stimulus_means(self) -> torch.Tensor:
        """Mean stimulus ``t`` per cell ``(2, 2, *shape)`` (Fig. 1's first four columns)."""
        return self._cell_mean(self.stimulus_sums)

    @property
    def classification_image(self) -> torch.Tensor:
        """Eq. 1 on the noise alone: ``(n̄_01 + n̄_11) - (n̄_00 + n̄_10)`` (Fig. 1's "*" column)."""
        m = self.noise_means
        return (m[0, 1] + m[1, 1]) - (m[0, 0] + m[1, 0])

    def _response_mean(self, sums: torch.Tensor, r: int) -> torch.Tensor:
        c = int(self.count[:, r].sum())
        return sums[:, r].sum(0) / c if c else torch.full(self.shape, float("nan"), dtype=torch.float64)

    @property
    def response_difference(self) -> torch.Tensor:
        """The simplified map n̄_·1 - n̄_·0 on the noise, whatever the signal."""
        return self._response_mean(self.noise_sums, 1) - self._response_mean(self.noise_sums, 0)

    @property
    def stimulus_difference(self) -> torch.Tensor:
        """Mean stimulus answered 1 minus mean stimulus answered 0 (Fig. 1's fifth column)."""
        return self._response_mean(self.stimulus_sums, 1) - self._response_mean(self.stimulus_sums, 0)

    @property
    def correlation(self) -> torch.Tensor:
        """Eq. 2: the per-pixel Pearson correlation between the noise and the response (1 or 0)."""
        n = float(self.n)
        p1 = float(self.count[:, 1].sum()) / n
        mean_n = self.noise_sums.sum((0, 1)) / n
        mean_nr = self.noise_sums[:, 1].sum(0) / n
        var_n = (self.noise_sq / n - mean_n ** 2).clamp_min(0)
        sd_r = math.sqrt(p1 * (1 - p1))
        return (mean_nr - mean_n * p1) / (var_n.sqrt() * sd_r)

    @property
    def accuracy(self) -> float:
        """Fraction of trials whose response equals the signal class."""
        return float(self.count[0, 0] + self.count[1, 1]) / max(self.n, 1)

    def __repr__(self) -> str:
        return (f"StimulusResponseCells(n={self.n}, gamma={self.gamma}, shape={self.shape}, "
                f"count={self.count.tolist()})")


def cell_sums(t: torch.Tensor, n: torch.Tensor, signal_class: torch.Tensor, response: torch.Tensor) -> dict:
    cell = signal_class * 2 + response  # 0..3 = (s, r) row-major
    noise_sums, noise_sq = class_sums(n.flatten(1), cell, 4, squares="total")
    return {"noise_sums": noise_sums, "stimulus_sums": class_sums(t.flatten(1), cell, 4),
            "count": class_counts(cell, 4), "noise_sq": noise_sq}


def make_cells(sums: dict, n: int, gamma: float, meta: dict, noise: str, signals: str, shape):
    return StimulusResponseCells(sums["noise_sums"].reshape(2, 2, *shape),
                                 sums["stimulus_sums"].reshape(2, 2, *shape), sums["count"].reshape(2, 2),
                                 sums["noise_sq"].reshape(shape), n, gamma, meta, noise, signals)


class CellsEstimator(Estimator):
    """The estimator behind :func:`stimulus_response_cells` (use it with :meth:`wna.Probe.run`)."""

    name = "stimulus_response_cells"
    unit = "trial"

    def __init__(self, signals, signal_classes, noise, gamma: float, device="cpu"):
        super().__init__(noise)
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        shape = tuple(noise.shape)
        signals = torch.as_tensor(signals, dtype=torch.float32).to(device)
        signal_classes = torch.as_tensor(signal_classes).long().to(device)
        if tuple(signals.shape[1:]) != shape:
            raise ValueError(f"signals have shape {tuple(signals.shape[1:])}, the noise {shape}")
        if signal_classes.shape != (len(signals),) or len(signals) == 0:
            raise ValueError("need one class (0 or 1) per signal, and at least one signal")
        if not bool(((signal_classes == 0) | (signal_classes == 1)).all()):
            raise ValueError("signal classes must be 0 or 1")
        self.signals, self.signal_classes, self.gamma = signals, signal_classes, float(gamma)
        self.digest = digest("signals", [("signals", signals), ("classes", signal_classes)])

    def key(self) -> dict:
        return {"noise": repr(self.stimulus), "signals": self.digest, "gamma": self.gamma}

    def sample(self, n, generator):
        idx = torch.randint(len(self.signals), (n,), generator=generator, device=generator.device)
        noise = self.stimulus.sample(n, generator)
        t = mix(self.signals[idx], noise, self.gamma)  # Eq. 3
        return t, noise, self.signal_classes[idx]

    def update(self, stimuli, outputs):
        t, noise, signal_class = stimuli
        response, c = decide(outputs)
        if c != 2:
            raise ValueError(f"a binary observer needs one logit or two classes, got {c}")
        return cell_sums(t, noise, signal_class, response)

    def finalize(self, sums, n, meta):
        meta = {**meta, "noise": meta.pop("stimulus", repr(self.stimulus))}
        return make_cells(sums, n, self.gamma, meta, repr(self.stimulus), self.digest, self.shape)
