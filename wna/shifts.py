"""Threshold shifts of micro-stimulated psychometric curves, as tables (Section 3.4, Figs. 9 and 23-25).

A sweep of Fig. 9 gives one :class:`wna.stimulation.PsychometricCurves` per
panel, keyed by a tuple (layer, direction, digit for the 10-way CNN; pair,
layer, direction, digit for the binary CNNs of Fig. 25). :func:`shift_table`
summarises each panel (:func:`wna.stimulation.shift_summary`: the threshold
shift at the largest k against k = 0, its interval, which way the curve moved)
in one row; :func:`direction_counts` counts the left and right shifts per
layer and direction (the paper's claim: fc stimulation moves every digit's
curve left, inhibition right); :func:`shift_grid` lays the shifts out as the
notebook's table; :func:`fit_counts` says which fit gave the shifts;
:func:`sweep_totals` gives the stimuli, seconds and rate of the sweep;
:func:`without_threshold` and :func:`arrows` say in words which panels had no
threshold to move and which way chosen digits moved.
:func:`wna.tables.glue_items` names their cells for the notebook's glue.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .stimulation import PsychometricCurves, shift_summary

__all__ = ["ARROWS", "LEFT", "RIGHT", "shift_table", "direction_counts", "fit_counts", "shift_grid",
           "sweep_totals", "without_threshold", "arrows"]

ARROWS = {"left": "←", "right": "→", "none": "·", "left (flat)": "flat ←", "right (flat)": "flat →",
          "no fit": "no fit"}  # the notebook's symbol for each direction of shift_summary
LEFT = ("left", "left (flat)")  # directions counted as a move to the left (more stimuli called the target)
RIGHT = ("right", "right (flat)")


def _text(s: Mapping) -> str:
    if np.isnan(s["shift"]):
        return ARROWS[s["moved"]]
    star = "*" if s["extrapolated"] else ""
    return f"{s['shift']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}]{star} {ARROWS[s['moved']]}"


def shift_table(curves: Mapping[tuple, PsychometricCurves], names: Sequence[str], **fit_options) -> pd.DataFrame:
    """One row per panel of a micro-stimulation sweep: how its largest k moved the curve (Figs. 9, 23-25).

    ``curves``: ``{key: PsychometricCurves}`` with tuple keys, whose parts
    ``names`` names (the table's index, in the order of ``curves``).
    Columns: those of :func:`wna.stimulation.shift_summary` (``k``,
    ``shift``, ``low``, ``high``, ``area``, ``extrapolated``, and its
    ``direction`` as ``moved``, since "direction" names the sign of Eq. 6
    in the keys; ``fit_options`` go to it), ``noise`` (the fraction of the
    first level, pure noise at g = 0, called the target at the first k),
    ``stimuli`` (trials of the panel), ``seconds`` (its sweep's time) and
    ``text`` (the shift, its interval, "*" when extrapolated and the arrow
    of :data:`ARROWS`; the arrow alone for a curve without a fitted shift).
    """
    names = list(names)
    rows = []
    for key, c in curves.items():
        if len(key) != len(names):
            raise ValueError(f"key {key!r} has {len(key)} parts, names {names} {len(names)}")
        s = shift_summary(c, **fit_options)
        s["moved"] = s.pop("direction")
        rows.append({**s, "noise": float(c.fraction[0, 0]), "stimuli": int(c.trials.sum()),
                     "seconds": float(c.meta.get("seconds", np.nan)), "text": _text(s)})
    index = pd.MultiIndex.from_tuples(list(curves), names=names)
    return pd.DataFrame(rows, index=index)


def direction_counts(table: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by`` (e.g. layer and direction of stimulation): which way the curves moved.

    Columns: ``left`` (panels whose ``moved`` is in :data:`LEFT`), ``right``
    (:data:`RIGHT`), ``neither``, ``n`` (panels), ``fitted`` (panels with a
    fitted shift) and ``median`` (the median fitted shift; NaN when none).
    Groups keep the order in which they first appear in ``table``.
    """
    groups = table.groupby(list(by), sort=False)
    out = pd.DataFrame({"left": groups["moved"].agg(lambda d: int(d.isin(LEFT).sum())),
                        "right": groups["moved"].agg(lambda d: int(d.isin(RIGHT).sum())),
                        "n": groups.size()})
    out["neither"] = out["n"] - out["left"] - out["right"]
    out["fitted"] = groups["shift"].count()
    out["median"] = groups["shift"].median()
    return out[["left", "right", "neither", "n", "fitted", "median"]]


def fit_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Which fit produced the shifts of :func:`shift_table`: panels per ``fit`` ("psignifit", "ml", or
    "psignifit, ml") and ``note`` (why the maximum-likelihood fit stood in), column ``panels``."""
    return table.value_counts(["fit", "note"], sort=False).rename("panels").to_frame()


def _levels(index: pd.MultiIndex, names: Sequence[str]) -> list:
    return [list(dict.fromkeys(index.get_level_values(n))) for n in names]


def shift_grid(table: pd.DataFrame, rows: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """:func:`shift_table`'s ``text`` laid out with ``rows`` down and ``columns`` across (the notebook's table).

    The first column, "noise called the target", is the ``noise`` of each row's
    first panel in percent; the other columns are named by their ``columns``
    values joined with a space ("fc1 increase"), each level in the order it
    first appears in ``table``; a row of several ``rows`` levels is named
    "a: b". Panels that were not run are empty strings.
    """
    rows, columns = list(rows), list(columns)
    text = table["text"].reset_index(level=[n for n in table.index.names if n not in rows + columns], drop=True)
    row_keys = list(dict.fromkeys(zip(*(text.index.get_level_values(n) for n in rows))))
    col_keys = [c for c in itertools.product(*_levels(text.index, columns))]
    flat = {tuple(k[text.index.names.index(n)] for n in rows + columns): v for k, v in text.items()}

    def name(parts):
        return ": ".join(str(p) for p in parts)

    noise = table["noise"].groupby(level=rows, sort=False).first()
    grid = {"noise called the target": {name(r): f"{100 * noise[r if len(rows) > 1 else r[0]]:.1f}%"
                                        for r in row_keys}}
    for c in col_keys:
        if any(r + c in flat for r in row_keys):
            grid[" ".join(str(p) for p in c)] = {name(r): flat.get(r + c, "") for r in row_keys}
    return pd.DataFrame(grid).rename_axis(" ".join(rows) if len(rows) == 1 else ": ".join(rows))


def sweep_totals(table: pd.DataFrame) -> pd.DataFrame:
    """One row: ``stimuli`` (all panels of :func:`shift_table`), ``seconds`` (their sweeps alone, summed)
    and ``stimuli_per_second``."""
    stimuli, seconds = int(table["stimuli"].sum()), float(table["seconds"].sum())
    return pd.DataFrame({"stimuli": [stimuli], "seconds": [seconds],
                         "stimuli_per_second": [stimuli / seconds if seconds > 0 else np.nan]})


def _panels(table: pd.DataFrame, layer: str, direction: str) -> pd.DataFrame:
    return table[(table.index.get_level_values("layer") == layer)
                 & (table.index.get_level_values("direction") == direction)]


def without_threshold(table: pd.DataFrame, layer: str = "fc1", direction: str = "increase") -> str:
    """The panels of ``layer`` and ``direction`` whose curve had no threshold to move ("no fit"), in words.

    Each is its target digit (after its pair, for Fig. 25's table) with the
    share of pure noise the unstimulated network already called it, e.g.
    "3 (96.0% of pure noise called 3 at k = 0)"; "none" when every panel
    had a threshold.
    """
    out = []
    for key, row in _panels(table, layer, direction).iterrows():
        parts = dict(zip(table.index.names, key))
        d = parts["digit"]
        pair = f"{parts['pair']}, " if "pair" in parts else ""
        if row["moved"] == "no fit":
            out.append(f"{d} ({pair}{100 * row['noise']:.1f}% of pure noise called {d} at k = 0)")
    return ", ".join(out) or "none"


def arrows(table: pd.DataFrame, layer: str, direction: str, digits: Sequence[int]) -> str:
    """Which way the curves of ``digits`` moved under ``layer`` and ``direction``, e.g. "0: →, 1: →, 3: ←"
    (the symbols of :data:`ARROWS`; digits not run are left out; "not run" when none was)."""
    panels = _panels(table, layer, direction)
    moved = dict(zip(panels.index.get_level_values("digit"), panels["moved"]))
    return ", ".join(f"{d}: {ARROWS[moved[d]]}" for d in digits if d in moved) or "not run"
