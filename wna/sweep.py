"""One driver for a sweep of cells through one :class:`wna.Probe`: one progress bar, one timing record.

The psychometric curves (:func:`wna.stimulation.psychometric_curves`: levels
× stimulations), the bias-map attack (:func:`wna.attack.bias_map_attack`:
γ × patterns) and activation injection (:func:`wna.activations.injection_sweep`:
classes × γ) all run a list of cells through one probe, each cell under its
own edit of the model (a bias shift, an injection) or none:

>>> out = sweep(probe, cells, lambda p, cell: p.run(cell.estimator, cell.n),
...             size=lambda cell: cell.n, edit=lambda cell: stimulate(probe, "fc1", cell.delta))
>>> out.results, out.timing.meta()      # per-cell results; {"seconds": ..., "stimuli_per_second": ...}

The per-cell runs show no progress of their own (the probe's ``progress``
is off during the sweep and restored after it); one bar counts the stimuli
of every cell.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tqdm import tqdm

__all__ = ["Timing", "Sweep", "sweep"]


@dataclass(frozen=True)
class Timing:
    """The wall time of a sweep: ``seconds`` (the whole loop, edits included), ``stimuli`` (the sum of
    the cells' sizes), ``cell_seconds`` (each cell's run inside its edit, in order)."""

    seconds: float
    stimuli: int
    cell_seconds: tuple = ()

    @property
    def stimuli_per_second(self) -> float:
        return self.stimuli / max(self.seconds, 1e-9)

    def meta(self) -> dict:
        """``{"seconds", "stimuli_per_second"}``: the keys a sweep's result meta records."""
        return {"seconds": self.seconds, "stimuli_per_second": self.stimuli_per_second}


@dataclass(frozen=True)
class Sweep:
    """What :func:`sweep` returns: ``results[i]`` of ``cells[i]`` and the :class:`Timing`."""

    results: list
    timing: Timing = field(repr=False)


def sweep(probe, cells: Sequence, run_cell: Callable[[Any, Any], Any], *, size: Callable[[Any], int],
          edit: Callable[[Any], Any] | None = None, desc: str = "sweep", unit: str = "stim",
          progress: bool = True) -> Sweep:
    """Run ``run_cell(probe, cell)`` for every cell in order, each inside ``edit(cell)``; a :class:`Sweep`.

    ``size(cell)``: the stimuli the cell runs (the bar's and the timing's
    count). ``edit(cell)``: a context manager (or None: no edit) that changes
    the probe's model for the cell and restores it bitwise on exit, also when
    the cell raises (e.g. :func:`wna.stimulation.stimulate`). The probe's
    per-call progress is off during the sweep (restored on exit, also after
    an exception); one bar (``desc``, ``progress``) counts the stimuli of
    all cells. A cell's result is that of running it alone under its edit.
    """
    cells = list(cells)
    sizes = [int(size(c)) for c in cells]
    if any(s < 0 for s in sizes):
        raise ValueError(f"cell sizes must be >= 0, got {sizes}")
    results, cell_seconds = [], []
    was = probe.progress
    t0 = time.perf_counter()
    probe.progress = False
    try:
        with tqdm(total=sum(sizes), desc=desc, unit=unit, unit_scale=True, disable=not progress) as bar:
            for cell, n in zip(cells, sizes):
                with contextlib.nullcontext() if edit is None else (edit(cell) or contextlib.nullcontext()):
                    t = time.perf_counter()
                    results.append(run_cell(probe, cell))
                    cell_seconds.append(time.perf_counter() - t)
                bar.update(n)
    finally:
        probe.progress = was
    return Sweep(results, Timing(time.perf_counter() - t0, sum(sizes), tuple(cell_seconds)))
