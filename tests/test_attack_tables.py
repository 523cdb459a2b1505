"""Known answers of the bias-map attack's tables (wna.attack_tables: Table 2 ours vs the paper, the variants)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from wna import stimuli
from wna.attack import AttackResult
from wna.attack_tables import (ERROR, ROWS, VARIANT_INFO, OtherCNN, Variant, attack_totals, attack_variants,
                               map_patterns, paper_rates, table2_cells, table2_errors, table2_glue, table2_table,
                               variant_glue, variant_summary, variant_sweep)
from wna.paper import TABLE2, TABLE2_GAMMAS

SHAPE = (1, 4, 4)
# a known offset of our fooling rate from the paper's, per Table 2 row (in thousandths)
OFFSET = {("noise", "bias"): 10, ("digits", "bias"): 20, ("noise", "mean"): -30, ("digits", "mean"): -50}


def _result(rates_in_thousandths, gammas, seconds=1.0):
    """One pattern (class 0), n = 1000: ``counts[i, 0, 0]`` hits at γ_i, the rest to class 1."""
    hits = torch.tensor(rates_in_thousandths, dtype=torch.int64)
    counts = torch.stack([hits, 1000 - hits], 1)[:, None, :]  # (G, K=1, C=2)
    return AttackResult(np.asarray(gammas, dtype=np.float64), [0], counts, 1000, {"seconds": seconds})


def _shifted():
    """Each row of Table 2 shifted by OFFSET: our rate = the paper's + offset, exactly in thousandths."""
    return {k: _result([round(1000 * p) + OFFSET[k] for p in TABLE2[k]], TABLE2_GAMMAS) for k in ROWS}


def test_paper_rates_picks_the_printed_columns():
    assert paper_rates("digits", "bias", [0.8]).tolist() == [0.214]
    assert paper_rates("noise", "bias", (0.5, 1.0)).tolist() == [0.207, 0.9]
    assert paper_rates("noise", "mean", TABLE2_GAMMAS).tolist() == list(TABLE2[("noise", "mean")])
    with pytest.raises(ValueError, match="no column"):
        paper_rates("noise", "bias", [0.25])


def test_table2_cells_table_errors_and_glue_know_the_offsets():
    cells = table2_cells(_shifted())
    assert len(cells) == 44 and list(cells["row"].unique()) == ["noise + bias", "digits + bias",
                                                                "noise + mean", "digits + mean"]
    c = cells.loc["t2_digits_bias_g08"]
    assert (c["base"], c["pattern"], c["gamma"], c["paper"]) == ("digits", "bias", 0.8, 0.214)
    assert c["ours"] == pytest.approx(0.234, abs=1e-12) and c["difference"] == pytest.approx(0.02, abs=1e-12)
    for k in ROWS:
        part = cells[(cells["base"] == k[0]) & (cells["pattern"] == k[1])]
        assert np.allclose(part["difference"], OFFSET[k] / 1000, atol=1e-12)

    wide = table2_table(cells)
    assert list(wide.columns) == [f"{g:.1f}" for g in TABLE2_GAMMAS]
    assert wide.loc[("noise + mean", "paper")].tolist() == list(TABLE2[("noise", "mean")])
    assert wide.loc[("noise + mean", "ours"), "0.5"] == pytest.approx(0.842 - 0.030, abs=1e-12)
    assert wide.loc[("digits + mean", "difference"), "1.0"] == pytest.approx(-0.05, abs=1e-12)
    assert list(wide.index.get_level_values(1)[:3]) == ["paper", "ours", "difference"]

    errors = table2_errors(cells)
    assert list(errors.index) == ["noise_bias", "digits_bias", "noise_mean", "digits_mean"]
    for (b, p), off in OFFSET.items():
        assert errors.at[f"{b}_{p}", ERROR] == pytest.approx(abs(off) / 1000, abs=1e-12)

    glued = table2_glue(cells, errors)
    assert len(glued) == 3 * 44 + 4
    assert glued["t2_noise_bias_g05"] == 0.217 and glued["paper_t2_noise_bias_g05"] == 0.207
    assert glued["t2_noise_bias_g05_diff"] == 0.01 and glued["t2_digits_mean_mad"] == 0.05
    assert all(type(v) is float for v in glued.values())


def test_table2_cells_of_a_partial_sweep_use_its_own_gammas():
    cells = table2_cells({("noise", "bias"): _result([500, 900], (0.5, 1.0))})
    assert list(cells.index) == ["t2_noise_bias_g05", "t2_noise_bias_g10"]
    assert cells["difference"].tolist() == pytest.approx([0.5 - 0.207, 0.9 - 0.9], abs=1e-12)
    assert table2_errors(cells).at["noise_bias", ERROR] == pytest.approx((0.293 + 0) / 2, abs=1e-12)


def test_attack_totals_counts_every_stimulus():
    a = _result([100, 200, 300], (0.0, 0.5, 1.0), seconds=2.0)  # 3 γ x 1 pattern x 1000
    b = AttackResult(np.array([0.5]), [0, 1], torch.ones((1, 2, 5), dtype=torch.int64) * 10, 50, {"seconds": 3.0})
    t = attack_totals([a, b])
    assert t.at[0, "stimuli"] == 3000 + 100 and t.at[0, "seconds"] == 5.0
    assert t.at[0, "stimuli_per_second"] == pytest.approx(3100 / 5)


class _Maps:
    """Classification images as attack_variants reads them: ``mean``, ``count``, ``n``."""

    def __init__(self, count, n=700):
        self.count = torch.tensor(count)
        self.mean = torch.arange(len(count), dtype=torch.float32)[:, None, None, None].expand(-1, *SHAPE)
        self.n = n


def test_map_patterns_drops_classes_without_a_map():
    patterns, classes = map_patterns(_Maps([3, 0, 2, 0]))
    assert classes == [0, 2] and patterns[:, 0, 0, 0].tolist() == [0.0, 2.0]


def test_attack_variants_lists_the_settings_main_first():
    maps, means = _Maps([5, 0, 1]), torch.rand((3, *SHAPE))
    v = attack_variants(maps, means, map_scale="minmax", mean_scale="minmax", fewer={100: _Maps([1, 1, 0])},
                        cnns=[OtherCNN("CNN B", "model B", _Maps([0, 4, 4], n=500)), OtherCNN("CNN C", "C", maps)])
    assert [x.label for x in v] == [
        "maps minmax", "maps none", "maps minmax8", "maps viridis", "maps from 100 noise images",
        "mean digits minmax", "mean digits none", "mean digits minmax8",
        "CNN B, maps of 500, minmax", "CNN B, maps of 500, viridis", "CNN B",
        "CNN C, maps of 700, minmax", "CNN C, maps of 700, viridis", "CNN C"]
    assert [x.key for x in v] == ["minmax", "none", "minmax8", "viridis", "maps_100", "mean_minmax", "mean_none",
                                  "mean_minmax8", "epoch_minmax", "epoch_viridis", "epoch_mean", None, None, None]
    assert [x.label for x in v if x.main] == ["maps minmax", "mean digits minmax"]
    assert v[0].classes == [0, 2] and v[4].classes == [0, 1] and v[8].classes == [1, 2]
    assert v[8].model == "model B" and v[0].model is None and v[5].classes == [0, 1, 2]
    assert [x.scale for x in v[8:11]] == ["minmax", "viridis", "minmax"]
    only = attack_variants(maps, means, map_scale="viridis", mean_scale="none", cnns=[OtherCNN("B", 0, maps)])
    assert [x.label for x in only][:4] == ["maps viridis", "maps none", "maps minmax", "maps minmax8"]
    assert [x.label for x in only][4:] == ["mean digits none", "mean digits minmax8", "B, maps of 700, viridis", "B"]


class Always(torch.nn.Module):
    """Every stimulus goes to class ``c`` (of 3): a pattern's fooling rate is 1 if it targets c, else 0."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((len(x),), self.c), 3).float()


def test_variant_sweep_scores_known_rates_against_the_paper():
    """With a model that always answers class 0, a variant's rate is the share of its patterns that target
    class 0, at every γ and on every base; its error is the mean of |rate - paper| over the γ."""
    pats = torch.rand((3, *SHAPE), generator=torch.Generator().manual_seed(0))
    variants = [Variant("bias", "half", pats[:2], [0, 1], "minmax", key="half", main=True),
                Variant("bias", "all", pats[:1], [0], "viridis", key="viridis"),
                Variant("mean", "third", pats, [0, 1, 2], "none", model=Always(1), main=True),
                Variant("mean", "none", pats, [0, 1, 2], "none", key="mean_none")]
    bases = {"noise": stimuli.WhiteNoise(SHAPE), "digits": torch.rand((5, *SHAPE))}
    gammas = (0.5, 1.0)
    t = variant_sweep(Always(0), variants, bases, gammas, n_samples=10, seed=0)
    assert list(t.index) == [("digits + bias", "half"), ("digits + bias", "all"), ("digits + mean", "third"),
                             ("digits + mean", "none"), ("noise + bias", "half"), ("noise + bias", "all"),
                             ("noise + mean", "third"), ("noise + mean", "none")]
    assert list(t.columns) == VARIANT_INFO + ["0.5", "1", ERROR]
    rate = {"half": 0.5, "all": 1.0, "third": 1 / 3, "none": 1 / 3}
    for (row, label), r in t.iterrows():
        assert r["0.5"] == pytest.approx(rate[label]) and r["1"] == pytest.approx(rate[label])
        paper = [TABLE2[(r["base"], r["pattern"])][i] for i in (5, 10)]
        assert r[ERROR] == pytest.approx(np.mean([abs(rate[label] - p) for p in paper]), abs=1e-12)
    assert t.at[("noise + bias", "half"), ERROR] == pytest.approx((0.293 + 0.4) / 2)

    s = variant_summary(t)
    assert list(s.index) == ["noise_bias", "digits_bias", "noise_mean", "digits_mean"]
    # noise + bias: "half" (0.3465) beats "all" ((0.793 + 0.1) / 2 = 0.4465)
    assert s.at["noise_bias", "best"] == "half" and s.at["noise_bias", "best_err"] == pytest.approx(0.3465)
    # digits + bias, paper (0.102, 0.9): "half" (0.399) beats "all" (0.499)
    assert s.at["digits_bias", "best"] == "half" and s.at["digits_bias", "main_err"] == pytest.approx(0.399)
    # noise + mean: both third; ties go to the first
    assert s.at["noise_mean", "best"] == "third"
    g = variant_glue(t, s)
    assert g["best_noise_bias"] == "half" and g["best_noise_bias_err"] == pytest.approx(0.3465, abs=6e-4)
    assert g["main_digits_bias_err"] == 0.399 and g["main_noise_mean_err"] == g["best_noise_mean_err"]
    assert g["viridis_noise_err"] == 0.447 and g["half_digits_err"] == 0.399
    assert g["mean_none_digits_err"] == round(np.mean([abs(1 / 3 - 0.28), abs(1 / 3 - 1)]), 3)
    assert math.isnan(g["epoch_viridis_noise_err"]) and math.isnan(g["epoch_minmax_digits_err"])
    assert "third_noise_err" not in g


def test_variant_summary_without_a_main_row_gives_nan():
    t = pd.DataFrame({"row": ["noise + bias"] * 2, "variant": ["a", "b"], "base": "noise", "pattern": "bias",
                      "key": None, "main": [False, False], ERROR: [0.3, 0.2]}).set_index(["row", "variant"])
    s = variant_summary(t)
    assert list(s.index) == ["noise_bias"] and s.at["noise_bias", "best"] == "b"
    assert math.isnan(s.at["noise_bias", "main_err"])
