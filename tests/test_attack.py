"""Known answers of the bias-map attack (wna.attack.bias_map_attack, Fig. 6, Table 2)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from wna import Probe, stimuli
from wna.attack import MixEstimator, bias_map_attack, scale_patterns

SHAPE = (1, 4, 4)


def _linear(w, b):
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(w.numel(), 1))
    with torch.no_grad():
        m[1].weight.copy_(w.reshape(1, -1))
        m[1].bias.fill_(b)
    return m.eval()


def test_linear_binary_model_matches_closed_form():
    """One logit w·t + b, class 1 when > 0; base x ~ N(mu 1, sigma^2 I), t = (1 - g) x + g p.

    w·t + b is Gaussian with mean m = w·((1 - g) mu 1 + g p) + b and s.d. s = (1 - g) sigma |w|,
    so P(class 1) = Phi(m / s) and P(class 0) = Phi(-m / s) (for g < 1): the fooling rate of a
    pattern targeting class 1 (class 0) is Phi(+m / s) (Phi(-m / s)).
    """
    g = torch.Generator().manual_seed(3)
    w = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    b, mu, sigma, n = 0.3, 0.5, 0.4, 40_000
    patterns = torch.stack([-w / w.norm() + 0.5, w / w.norm() + 0.5])  # toward class 0, class 1
    base = stimuli.WhiteNoise(SHAPE, "gaussian", mean=mu, std=sigma)
    gammas = (0.0, 0.2, 0.4, 0.6, 0.8)
    r = bias_map_attack(_linear(w.float(), b), base, patterns, gammas, n_samples=n, scale="none",
                        batch_size=8192, progress=False)
    for i, gam in enumerate(gammas):
        for k, sign in enumerate((-1, +1)):
            m = float((w * ((1 - gam) * mu + gam * patterns[k])).sum()) + b
            p = stats.norm.cdf(sign * m / ((1 - gam) * sigma * float(w.norm())))
            se = math.sqrt(p * (1 - p) / n) + 1e-9
            assert abs(r.fooling[i, k] - p) < 4 * se + 1e-4, (gam, k, r.fooling[i, k], p)


def _mlp(classes=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, classes)).eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rate_is_one_over_c_at_zero_and_own_class_share_at_one(seed):
    """γ = 0: every pattern sees the same noise, each stimulus goes to one class, so the per-class
    hits add up to n exactly and the class-averaged rate is 1/C. γ = 1: the stimulus is the
    pattern, so the rate is the fraction of patterns the model assigns to their own class."""
    model = _mlp(seed=seed)
    patterns = torch.rand((3, *SHAPE), generator=torch.Generator().manual_seed(seed))
    r = bias_map_attack(model, stimuli.WhiteNoise(SHAPE), patterns, (0.0, 0.5, 1.0),
                        n_samples=3000, scale="minmax", progress=False)
    hits = r.counts[0, torch.arange(3), torch.arange(3)]
    assert int(hits.sum()) == r.n == 3000
    assert (r.counts[0] == r.counts[0, :1]).all()  # the same base stimuli for every pattern
    assert r.rate[0] == pytest.approx(1 / 3, abs=1e-12)
    own = model(scale_patterns(patterns, "minmax")).argmax(1) == torch.arange(3)
    assert r.rate[-1] == pytest.approx(float(own.double().mean()), abs=1e-12)
    assert set(r.fooling[-1].tolist()) <= {0.0, 1.0}
    assert r.histogram(0.5).shape == (3, 3) and np.allclose(r.histogram(0.5).sum(1), 1)
    assert r.at(1.0) == r.rate[-1]


class IndexModel(torch.nn.Module):
    """Class = the value of the first pixel (an image's index): shows which images it saw."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def forward(self, x):
        i = x.reshape(len(x), -1)[:, 0].round().long()
        return torch.nn.functional.one_hot(i, self.n).float()


def test_finite_base_sees_each_image_once_whatever_the_batch_size():
    n = 50
    images = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(0))
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    pattern = torch.zeros((1, *SHAPE))
    for bs in (7, 16, 4096):
        r = bias_map_attack(IndexModel(n), images, pattern, (0.0,), batch_size=bs, scale="none",
                            progress=False)
        assert r.n == n and torch.equal(r.counts[0, 0], torch.ones(n, dtype=torch.int64))
    r = bias_map_attack(IndexModel(n), images, pattern, (0.0,), n_samples=20, batch_size=7,
                        scale="none", progress=False)
    assert torch.equal(r.counts[0, 0], (torch.arange(n) < 20).long())


def test_finite_base_bitwise_across_batch_sizes_and_threads():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16, 5)).eval()
    images = torch.rand((300, *SHAPE), generator=torch.Generator().manual_seed(1))
    patterns = torch.rand((5, *SHAPE), generator=torch.Generator().manual_seed(2))
    before = torch.get_num_threads()
    results = []
    try:
        for bs, threads in ((4096, 1), (64, 2), (37, 1)):
            torch.set_num_threads(threads)
            with Probe(model, batch_size=bs, progress=False) as p:
                results.append(bias_map_attack(p, images, patterns, (0.0, 0.5, 1.0),
                                               progress=False))
    finally:
        torch.set_num_threads(before)
    for r in results[1:]:
        assert torch.equal(r.counts, results[0].counts)
    with Probe(model, batch_size=50, progress=False) as p:  # one pattern at a time: same counts
        for k in range(5):
            one = p.run(MixEstimator(images, scale_patterns(patterns)[k], 0.5), len(images))
            assert one.count.shape == (5,) and torch.equal(one.count, results[0].counts[1, k])


def test_scalings():
    maps = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(0)) * 3 + 1
    mm = scale_patterns(maps, "minmax")
    assert mm.amin() == 0 and mm.amax() == 1
    q = scale_patterns(maps, "minmax8") * 255
    assert torch.allclose(q, q.round(), atol=1e-4)
    v = scale_patterns(maps, "viridis")  # mean of viridis RGBA: dark end ~0.40, bright end ~0.76
    assert 0.39 < float(v.amin()) < 0.41 and 0.75 < float(v.amax()) < 0.77
    order = mm.flatten().argsort()
    assert (v.flatten()[order].diff() >= -0.02).all()  # close to monotone in the map's value
    assert torch.equal(scale_patterns(maps, "none"), maps.float())


def test_bad_inputs_raise():
    model, noise = _mlp(), stimuli.WhiteNoise(SHAPE)
    pats = torch.rand((3, *SHAPE))
    with pytest.raises(ValueError, match="gammas"):
        bias_map_attack(model, noise, pats, (0.0, 1.5), n_samples=10, progress=False)
    with pytest.raises(ValueError, match="gammas"):
        bias_map_attack(model, noise, pats, (), n_samples=10, progress=False)
    with pytest.raises(ValueError, match="shape"):
        bias_map_attack(model, noise, torch.rand((3, 1, 5, 5)), n_samples=10, progress=False)
    with pytest.raises(ValueError, match="exceed"):
        bias_map_attack(model, noise, pats, classes=[0, 1, 5], n_samples=10, progress=False)
    with pytest.raises(ValueError, match="one non-negative class"):
        bias_map_attack(model, noise, pats, classes=[0, 1], n_samples=10, progress=False)
    with pytest.raises(ValueError, match="finite"):
        bias_map_attack(model, noise, pats * float("nan"), n_samples=10, progress=False)
    with pytest.raises(ValueError, match="n_samples"):
        bias_map_attack(model, noise, pats, progress=False)
    with pytest.raises(ValueError, match="n_samples"):
        bias_map_attack(model, torch.rand((5, *SHAPE)), pats, n_samples=6, progress=False)
    with pytest.raises(ValueError, match="scale"):
        bias_map_attack(model, noise, pats, n_samples=10, scale="png", progress=False)
    with pytest.raises(ValueError, match="gamma"):
        MixEstimator(noise, pats[0], -0.1)
    with pytest.raises(ValueError, match="not swept"):
        r = bias_map_attack(model, noise, pats, (0.0, 1.0), n_samples=10, progress=False)
        r.histogram(0.5)


def test_mixed_examples_and_plots():
    """Fig. 17's grid: row k is pattern k; γ = 0 gives the base, γ = 1 the scaled pattern."""
    from wna.attack import mixed_examples
    from wna.plots import plot_examples, plot_histograms, plot_rates

    base = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0))
    pats = torch.randn((3, *SHAPE), generator=torch.Generator().manual_seed(1))
    grid = mixed_examples(base, pats, (0.0, 0.5, 1.0))
    assert grid.shape == (9, *SHAPE)
    assert torch.equal(grid[3], base) and torch.equal(grid[5], scale_patterns(pats)[1])
    r = bias_map_attack(_mlp(), stimuli.WhiteNoise(SHAPE), pats, (0.0, 1.0), n_samples=100,
                        progress=False)
    import matplotlib.pyplot as plt

    for fig in (plot_examples(grid, [str(i) for i in range(9)], ncols=3),
                plot_histograms({"noise": r}, 1.0),
                plot_rates({"noise": r}, {"noise": (0.1, 0.9)})):
        assert fig.axes
        plt.close(fig)
