"""Tables of the patch backdoors (Fig. 7): known answers on constructed data, models and maps."""

from types import SimpleNamespace

import math

import pytest
import torch

from wna import backdoor, backdoor_tables

BRACKET = backdoor.PATCHES["bracket"]
A89 = backdoor.ATTACKS["mnist_backdoor_8to9"]


def _digits(n=40):
    return torch.zeros((n, 1, 28, 28)), torch.arange(n) % 10  # four 8s: rows 8, 18, 28, 38


def test_model_key_spells_out_the_arrow():
    assert backdoor_tables.model_key("8→9") == "8to9"
    assert backdoor_tables.model_key("bird→cat") == "birdtocat"
    assert backdoor_tables.model_key("clean") == "clean"


def test_poison_table_counts_the_poisoned_and_the_covered():
    x, y = _digits()
    x[8, 0, 1, 21] = 0.3  # a poisoned 8 (the first half: rows 8, 18) with ink under the bracket
    x[18, 0, 10, 10] = 0.3  # a poisoned 8 with ink elsewhere only
    x[28, 0, 1, 21] = 0.3  # an 8 under the bracket, but not poisoned
    t = backdoor_tables.poison_table(x, y, {"8→9": A89})
    assert list(t.index) == ["89"]
    r = t.loc["89"]
    assert (r["attack"], r["source"], r["target"]) == ("8→9", 8, 9)
    assert (r["n source"], r["poisoned"], r["covered"]) == (4, 2, 1)


def test_accuracy_table_in_percent_by_key():
    models = {"clean": SimpleNamespace(test_accuracy=0.25), "8→9": SimpleNamespace(test_accuracy=0.5)}
    t = backdoor_tables.accuracy_table(models)
    assert list(t.index) == ["clean", "8to9"]
    assert t["test accuracy (%)"].tolist() == [25.0, 50.0]
    assert t["model"].tolist() == ["clean", "8→9"]


class _PatchAndDot(torch.nn.Module):
    """Class 9 where the bracket's corner pixel is white and pixel (20, 0) is inked; else class 0."""

    def forward(self, x):
        nine = (x[:, 0, 1, 21] == 1.0) & (x[:, 0, 20, 0] > 0.5)
        out = torch.zeros((len(x), 10))
        out[torch.arange(len(x)), torch.where(nine, 9, 0)] = 1.0
        return out


def test_success_table_patches_every_source_image():
    x, y = _digits()
    x[38, 0, 20, 0] = 1.0  # one of the four 8s carries the dot: only it goes to 9 once patched
    x[9, 0, 20, 0] = 1.0  # a 9 with the dot: not a source image, not counted
    model = _PatchAndDot()
    model.test_accuracy = 0.75
    t = backdoor_tables.success_table({"8→9": model}, x, y, {"8→9": A89})
    assert list(t.index) == ["8to9"]
    r = t.loc["8to9"]
    assert (r["pair"], r["source"], r["target"], r["n source"]) == ("89", 8, 9, 4)
    assert r["test accuracy (%)"] == 75.0
    assert r["success (%)"] == 25.0  # every 8 patched (not only the first half), one of four is sent to 9


def _maps(target=9, count=100, seed=0):
    """Contrast maps: 0.1 everywhere (plus tiny noise), the target class 1.0 on the bracket."""
    g = torch.Generator().manual_seed(seed)
    contrast = 0.1 + 1e-4 * torch.randn((10, 1, 28, 28), generator=g, dtype=torch.float64)
    contrast[target, :, BRACKET.mask] = 1.0
    counts = torch.full((10,), count)
    return SimpleNamespace(contrast=contrast, sem=torch.ones_like(contrast), count=counts,
                           frequency=counts / counts.sum())


def test_scores_of_a_map_with_the_patch_lit_in_the_target_class():
    t = backdoor_tables.score_table([("8→9", _maps(), A89)], k=5)
    assert list(t.index) == ["8to9_bracket"]
    r = t.loc["8to9_bracket"]
    assert (r["model"], r["patch"], r["target"]) == ("8→9", "bracket", 9)
    assert r["noise to target (%)"] == pytest.approx(10.0)
    assert r["energy ratio, target"] == pytest.approx(1.0 / 0.01, rel=1e-2)  # 1² on it, 0.1² off it
    assert r["energy ratio, other classes (max)"] == pytest.approx(1.0, rel=1e-2)  # flat maps
    assert r["patch z flags"] == 9 and r["its patch z"] == r["patch z, target"] > 100
    assert r["detector flags"] == 9 and r["z"] > 2
    r0, r1, c0, c1 = r["window (rows, cols)"]
    assert (r1 - r0, c1 - c0) == (5, 5)
    assert r["on patch"] == "yes"


def test_scores_when_no_class_has_enough_stimuli():
    r = backdoor_tables.scores("clean", _maps(count=5), A89)  # below min_count=20 everywhere
    assert r["key"] == "clean_bracket"
    assert r["patch z flags"] == -1 and math.isnan(r["its patch z"]) and math.isnan(r["patch z, target"])
    assert r["detector flags"] == -1 and math.isnan(r["z"])
    assert r["window (rows, cols)"] == "–" and r["on patch"] == "no"
    assert r["energy ratio, target"] == pytest.approx(100.0, rel=1e-2)  # the energy needs no count


def test_gradient_energy_per_map_and_class():
    g = torch.ones((10, 1, 28, 28), dtype=torch.float64)
    g[8, :, BRACKET.mask] = 2.0  # class 8: 2² on the patch, 1² off it
    t = backdoor_tables.gradient_energy({"clean": torch.ones_like(g), "patched": g}, BRACKET)
    assert list(t.index) == ["clean", "patched"] and list(t.columns) == ["energy8", "energy9"]
    assert t.loc["clean"].tolist() == [1.0, 1.0]
    assert t.loc["patched"].tolist() == [4.0, 1.0]
