"""Threshold-shift tables of micro-stimulation sweeps (Figs. 9, 23-25): :mod:`wna.shifts`.

Known answers from curves of known thresholds (0.5 at k = 0; 0.4, a left shift; 0.6, a right
shift; all hits or all misses: flat, no threshold) built by hand, not by a network.
"""

import math

import numpy as np
import pandas as pd
import pytest

from wna.shifts import (arrows, direction_counts, fit_counts, shift_grid, shift_table, sweep_totals,
                        without_threshold)
from wna.stimulation import PsychometricCurves, psychometric_function

X, N = np.linspace(0, 1, 21), np.full(21, 400)


def _curve(second, seed=0, seconds=2.0):
    """k = 0 at threshold 0.5, k = 10 at ``second`` (a threshold, or "all"/"none" for a flat curve)."""
    rng = np.random.default_rng(seed)
    first = rng.binomial(N, psychometric_function(X, 0.5, 0.08))
    last = N if second == "all" else 0 * N if second == "none" else rng.binomial(N, psychometric_function(X, second, 0.08))
    return PsychometricCurves(X, [0, 10], np.stack([first, last]), np.stack([N, N]), 3, "fc1",
                              {"seconds": seconds})


@pytest.fixture(scope="module")
def table():
    curves = {("fc1", "increase", 3): _curve(0.4), ("fc1", "increase", 5): _curve("all", 1),
              ("fc1", "decrease", 3): _curve(0.6, 2), ("fc1", "decrease", 5): _curve(0.5, 3),
              ("conv1", "increase", 3): _curve("none", 4)}
    return shift_table(curves, ["layer", "direction", "digit"])


def test_shift_table_has_one_row_per_panel_with_the_known_shifts(table):
    assert list(table.index.names) == ["layer", "direction", "digit"] and len(table) == 5
    assert list(table["moved"]) == ["left", "left (flat)", "right", "none", "right (flat)"]
    assert abs(table.at[("fc1", "increase", 3), "shift"] + 0.1) < 0.02
    assert abs(table.at[("fc1", "decrease", 3), "shift"] - 0.1) < 0.02
    assert math.isnan(table.at[("fc1", "increase", 5), "shift"])
    assert (table["stimuli"] == 2 * 21 * 400).all() and (table["seconds"] == 2.0).all()
    # the first level of k = 0 at g = 0: Phi(-0.5 / 0.08), about 2e-10, so no hits in 400
    assert (table["noise"] == 0).all()
    assert table.at[("fc1", "increase", 5), "text"] == "flat ←"
    text = table.at[("fc1", "increase", 3), "text"]
    s = table.loc[("fc1", "increase", 3)]
    assert text == f"{s['shift']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}] ←"


def test_shift_table_refuses_keys_that_do_not_match_the_names():
    with pytest.raises(ValueError, match="parts"):
        shift_table({("fc1", 3): _curve(0.4)}, ["layer", "direction", "digit"])


def test_direction_counts_counts_left_and_right_by_hand(table):
    counts = direction_counts(table, ["layer", "direction"])
    assert list(counts.index) == [("fc1", "increase"), ("fc1", "decrease"), ("conv1", "increase")]
    up, down, conv = (counts.loc[k] for k in counts.index)
    assert (up["left"], up["right"], up["neither"], up["n"], up["fitted"]) == (2, 0, 0, 2, 1)
    assert (down["left"], down["right"], down["neither"], down["n"], down["fitted"]) == (0, 1, 1, 2, 2)
    assert (conv["left"], conv["right"], conv["n"], conv["fitted"]) == (0, 1, 1, 0)
    assert up["median"] == table.at[("fc1", "increase", 3), "shift"]  # the one fitted shift
    shifts = table.xs(("fc1", "decrease"), level=["layer", "direction"])["shift"]
    assert down["median"] == pytest.approx((shifts.iloc[0] + shifts.iloc[1]) / 2)  # two values: their mean
    assert math.isnan(conv["median"])


def test_shift_grid_lays_out_the_text_with_empty_cells_for_panels_not_run(table):
    grid = shift_grid(table, ["digit"], ["layer", "direction"])
    assert list(grid.columns) == ["noise called the target", "fc1 increase", "fc1 decrease", "conv1 increase"]
    assert list(grid.index) == ["3", "5"] and grid.index.name == "digit"
    assert grid.at["5", "conv1 increase"] == "" and grid.at["3", "conv1 increase"] == "flat →"
    assert grid.at["3", "noise called the target"] == "0.0%"
    assert grid.at["3", "fc1 decrease"] == table.at[("fc1", "decrease", 3), "text"]
    binary = shift_table({("1 vs 3", "fc1", "increase", 1): _curve(0.4)}, ["pair", "layer", "direction", "digit"])
    assert list(shift_grid(binary, ["pair", "digit"], ["layer", "direction"]).index) == ["1 vs 3: 1"]


def test_sweep_totals_adds_stimuli_and_seconds(table):
    totals = sweep_totals(table).iloc[0]
    assert totals["stimuli"] == 5 * 2 * 21 * 400 and totals["seconds"] == 10.0
    assert totals["stimuli_per_second"] == 5 * 2 * 21 * 400 / 10.0


def test_fit_counts_says_which_fit_gave_each_panel(table):
    """Each panel compares two fits. The two panels whose k = 10 curve is flat (all hits, all misses)
    have one maximum-likelihood fit with the flat note; the other three are psignifit's alone."""
    pytest.importorskip("psignifit")
    counts = fit_counts(table)["panels"]
    flat = "flat curve: no threshold for psignifit; maximum likelihood"
    assert counts.to_dict() == {("psignifit", ""): 3, ("psignifit, ml", flat): 2}


def test_panels_in_words_name_the_digits_without_a_threshold_and_the_arrows():
    """Known panels; a "no fit" row (a curve that starts near 1) is set by hand."""
    both = shift_table({("fc1", "increase", 3): _curve(0.4), ("fc1", "increase", 5): _curve("all", 1),
                        ("conv2", "increase", 0): _curve(0.6, 2), ("conv2", "increase", 1): _curve(0.4, 3)},
                       ["layer", "direction", "digit"])
    assert without_threshold(both) == "none"
    assert arrows(both, "conv2", "increase", (0, 1, 3)) == "0: →, 1: ←"
    assert arrows(both, "conv1", "increase", (0, 1, 3)) == "not run"
    assert arrows(both, "fc1", "increase", (5,)) == "5: flat ←"
    fake = both.copy()
    fake.loc[("fc1", "increase", 5), ["moved", "noise"]] = ["no fit", 0.75]
    assert without_threshold(fake) == "5 (75.0% of pure noise called 5 at k = 0)"
    binary = fake.set_axis(pd.MultiIndex.from_tuples([("1 vs 5", *k) for k in fake.index],
                                                     names=["pair", *fake.index.names]))
    assert without_threshold(binary) == "5 (1 vs 5, 75.0% of pure noise called 5 at k = 0)"
