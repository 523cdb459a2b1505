"""Figure helpers draw what they are given: one grey scale per grid unless told to normalise."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from wna import plots  # noqa: E402


def _limits(fig):
    return [ax.images[0].get_clim() for ax in fig.axes if ax.images]


def test_map_grid_without_normalising_draws_every_grey_map_on_one_fixed_scale():
    faint = torch.full((1, 4, 4), 0.5)
    faint[0, 0, 0] = 0.55  # a map of low contrast: stretched per map, it would span black to white
    bright = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0))
    fig = plots.map_grid(torch.stack([faint, bright]), normalize=False, ncols=2)
    assert _limits(fig) == [(0.0, 1.0), (0.0, 1.0)]
    wide = torch.stack([faint, bright * 3 - 1])  # values outside [0, 1]: the grid's own range
    lo, hi = float(wide.min()), float(wide.max())
    assert _limits(plots.map_grid(wide, normalize=False, ncols=2)) == [(lo, hi), (lo, hi)]


def test_map_grid_normalises_each_map_to_its_own_range_by_default():
    maps = torch.stack([torch.linspace(0.4, 0.6, 16).reshape(1, 4, 4), torch.linspace(-2, 5, 16).reshape(1, 4, 4)])
    fig = plots.map_grid(maps, ncols=2)
    for ax in fig.axes:
        data = np.asarray(ax.images[0].get_array())
        assert data.min() == 0.0 and data.max() == 1.0


def test_layer_panels_draw_fig20s_bottom_row_from_the_layer_table():
    import pandas as pd
    from wna.plots import layer_panels
    layers = pd.DataFrame({"paper": ["input", "fc"], "dist_noise": [1.0, 2.0], "dist_real": [1.5, 3.0],
                           "unit_noise": [0.1, 0.2], "unit_real": [0.2, 0.3], "cos": [0.5, 0.9],
                           "ccos": [0.1, 0.7]}, index=["input", "fc_layer1"])
    fig = layer_panels(layers)
    a, b, c = fig.axes
    assert list(a.lines[1].get_ydata()) == [1.5, 3.0] and list(b.lines[0].get_ydata()) == [0.1, 0.2]
    assert sorted(round(p.get_height(), 3) for p in c.patches) == [0.1, 0.5, 0.7, 0.9]
    assert [t.get_text() for t in a.get_legend().get_texts()] == ["noise", "real"]
