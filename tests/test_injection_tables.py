"""Known answers for the tables of Figs. 7C, 20 and 21: wna.injection_tables."""

import math
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from wna.activations import ActivationMeans, InjectionSweep
from wna.injection_tables import (class_ease, claims, ease_cells, ease_glue, ease_grid, ease_summary, first_correct,
                                  flip_gamma, flip_panels, injected_class, layer_glue, layer_table,
                                  noise_counts, top_layers)

NAMES = ["a", "b", "c"]


def _means(means, count):
    """An ActivationMeans of one layer ``x`` with the given class means and counts."""
    count = torch.tensor(count)
    sums = torch.tensor(means, dtype=torch.float64) * count[:, None]
    return ActivationMeans({"x": sums}, count, int(count.sum()), "label")


def test_noise_counts_by_hand():
    noise = _means([[0.0], [0.0], [0.0], [0.0]], [0, 3, 1, 0])
    assert noise_counts(noise, ["a", "b", "c", "d"]) == {
        "empty_classes": "a, d", "n_empty": 2, "top_name": "b", "top_share": 75.0}
    full = _means([[0.0], [0.0]], [1, 1])
    assert noise_counts(full, ["a", "b"])["empty_classes"] == "none"


def test_layer_table_by_hand():
    # noise: class 2 received nothing; real: every class
    noise = _means([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [2, 1, 0])
    real = _means([[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]], [1, 1, 1])
    t = layer_table(noise, real, {"x": "X"})
    assert list(t.index) == ["x"] and t.at["x", "paper"] == "X"
    assert t.at["x", "dist_noise"] == pytest.approx(math.sqrt(2))  # the pair with class 2 left out
    assert t.at["x", "unit_noise"] == pytest.approx(1.0)  # divided by sqrt(2 units)
    assert t.at["x", "dist_real"] == pytest.approx((math.sqrt(13) + 2 + 3) / 3)
    assert t.at["x", "cos"] == pytest.approx(1.0)  # [1, 0] ~ [2, 0] and [0, 1] ~ [0, 3]
    # contrasts over classes 0, 1: noise ±[0.5, -0.5], real ±[1, -1.5]
    assert t.at["x", "ccos"] == pytest.approx(1.25 / math.sqrt(0.5 * 3.25))


def test_top_layers_take_the_largest_and_the_first_on_a_tie():
    t = pd.DataFrame({"paper": ["P", "Q", "R"], "ccos": [0.1, 0.3, 0.3], "cos": [0.9, 0.2, 0.1],
                      "dist_noise": [1, 5, 2], "dist_real": [7, 5, 2], "unit_noise": [0, 0, 1],
                      "unit_real": [0, 2, 1]}, index=["p", "q", "r"])
    assert top_layers(t) == {"most_alike": "Q", "most_alike_raw": "P", "dist_top_noise": "Q",
                             "dist_top_real": "P", "unit_top_noise": "R", "unit_top_real": "Q"}
    g = layer_glue(t.assign(unit_real=[0.123456, 0, 0], cos=[0.98765, 0, 0]))
    assert g["unit_real_p"] == 0.1235 and g["cos_p"] == 0.988 and g["dist_noise_q"] == 5
    assert len(g) == 3 * 6


@pytest.fixture
def sweeps():
    gammas = np.array([0.0, 0.5, 1.0])
    nan = [np.nan] * 3
    one = InjectionSweep("l1", gammas, np.array([[1.0, 0.6, 0.0], [0.4, 0.2, 0.0], nan]), None)
    two = InjectionSweep("l2", gammas, np.array([[0.5, 0.0, 0.0], [1.0, 1.0, 0.1], nan]), None)
    return {"l1": one, "l2": two}


def test_ease_and_fooling_gamma_by_hand(sweeps):
    cells = ease_cells(sweeps, {"l1": "L1", "l2": "L2"}).set_index(["cls", "layer"])
    assert cells.at[(0, "l1"), "ease"] == pytest.approx(1.6 / 3)
    assert cells.at[(0, "l1"), "fool"] == 0.5 and cells.at[(0, "l2"), "fool"] == 0.0
    assert np.isnan(cells.at[(1, "l1"), "fool"]) and cells.at[(1, "l2"), "fool"] == 0.5
    assert np.isnan(cells.at[(2, "l2"), "ease"]) and cells.at[(1, "l2"), "paper"] == "L2"


def test_classes_ranked_and_summarised_by_hand(sweeps):
    cells = ease_cells(sweeps, {"l1": "L1", "l2": "L2"})
    t = class_ease(cells)
    assert list(t["measured"]) == [True, True, False]
    assert t.at[0, "ease"] == pytest.approx((1.6 / 3 + 0.5 / 3) / 2)  # 0.35
    assert t.at[1, "ease"] == pytest.approx((0.6 / 3 + 2.1 / 3) / 2)  # 0.45
    assert list(t["strongest"][:2]) == ["L1", "L2"] and list(t["rank"]) == [2, 1, 0]
    s = ease_summary(t, NAMES, {"a": 0, "c": 2})
    assert s == {"easiest": "b", "hardest": "a", "rank_a": "2 of 2", "rank_c": "not measured",
                 "n_measured": 2, "n_strongest_layers": 2, "strongest_layers": "L1, L2"}
    g = ease_glue(cells, t)
    assert g["ease_0_l1"] == "0.533" and g["fool_0_l1"] == "0.5" and g["fool_1_l1"] == "—"
    assert g["ease_1"] == "0.450" and g["strongest_1"] == "L2"
    assert g["ease_2_l2"] == "—" and g["ease_2"] == "—" and g["strongest_2"] == "no noise image"
    assert len(g) == 3 * 2 * 2 + 3 * 2
    grid = ease_grid(cells, t, NAMES)
    assert list(grid.index) == list(NAMES[:3]) and list(grid.columns) == [
        "ease L1", "ease L2", "fool L1", "fool L2", "ease", "strongest", "rank"]
    assert grid.at["a", "ease L1"] == pytest.approx(1.6 / 3) and grid.at["b", "fool L2"] == 0.5
    assert grid.at["b", "rank"] == 1 and np.isnan(grid.at["c", "ease L2"])


def test_claims_by_hand(sweeps):
    t = class_ease(ease_cells(sweeps, {"l1": "L1", "l2": "fc"}))
    s = ease_summary(t, NAMES, {})
    tops = {"most_alike": "fc", "dist_top_noise": "fc", "dist_top_real": "L1"}
    got = claims(tops, t, s, easy=(1, 2), hard=0, flipped=False)
    assert got == {"most_alike": "yes", "dist_noise": "yes", "dist_real": "no", "easy": "yes",
                   "horse": "yes", "layers": "yes", "frog": "no"}
    got = claims(tops, t, s, easy=(0, 2), hard=2, flipped=True)
    assert got["easy"] == "no" and got["horse"] == "not measured" and got["frog"] == "yes"
    assert claims(tops, t, s, easy=(2,), hard=1, flipped=True)["easy"] == "not measured"


def _identity():
    """Logits = the 3 pixels of a (3, 1, 1) image; a layer ``conv3`` whose output is those logits."""
    return nn.Sequential(OrderedDict(conv3=nn.Flatten())).eval()


def test_flip_gamma_and_the_injected_class_by_hand():
    model = _identity()
    x = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)  # class 0
    a = torch.tensor([0.0, 0.0, 2.0])  # mixed: [γ, 0, 2 (1 - γ)]: class 2 while γ < 2/3
    gammas = [0.0, 0.5, 0.6, 0.7, 1.0]
    assert flip_gamma(model, "input", a.reshape(3, 1, 1), x, 2, gammas) == 0.6
    assert flip_gamma(model, "conv3", a, x, 2, gammas) == 0.6
    assert flip_gamma(model, "conv3", a, x, 1, gammas) is None
    assert flip_gamma(model, "conv3", torch.full((3,), math.nan), x, 2, gammas) is None
    assert injected_class(model, "conv3", a, x, 0.7) == 0 and injected_class(model, "conv3", a, x, 0.5) == 2


def test_first_correct_skips_the_misclassified():
    images = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1], [2, 0, 0]], dtype=torch.float32)
    labels = torch.tensor([0, 1, 0, 0])
    got = first_correct(_identity(), images.reshape(4, 3, 1, 1), labels, 0)
    assert torch.equal(got, images[3].reshape(1, 3, 1, 1))


def test_flip_panels_by_hand():
    x = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    means = {"input": torch.tensor([[0.0, 0, 0], [0, 0, 2]]).reshape(2, 3, 1, 1),
             "conv3": torch.tensor([[0.0, 0, 0], [0, 0, 2]])}
    images, titles = flip_panels(_identity(), means, x, 1, {"input": 0.6, "conv3": None}, ["p", "q", "r"])
    torch.testing.assert_close(images[2].flatten(), torch.tensor([0.6, 0.0, 0.8]))
    assert torch.equal(images[0], x[0]) and torch.equal(images[1], means["input"][1])
    assert titles == ["p", "mean noise: q", "input, γ = 0.6:\nr", "conv3 (conv6), γ = 0.5:\nr"]
