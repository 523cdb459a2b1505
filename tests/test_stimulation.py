"""Micro-stimulation (Eq. 6, Fig. 9): bias shifts, the paper's rule, psychometric curves and fits.

Known answer 5 of the book's Methods page, ``book/methods.md`` (a bias shift on a two-class
linear model under Gaussian noise) and from curves of known parameters.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from wna import Probe, models, stimuli
from wna.stimulation import (LAMBDAS, PsychometricCurves, fit_psychometric, paper_delta, psychometric_curves,
                             psychometric_function, stimulate)


def _cnn(seed=0, classes=10):
    torch.manual_seed(seed)
    return models.MnistCNN(num_classes=classes).eval()


# ---------------------------------------------------------------- the context manager

def test_biases_are_restored_bitwise_also_after_an_exception():
    net = _cnn()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    delta = torch.linspace(-1, 1, 500) / 3  # values whose sums round: a subtraction would not restore
    with stimulate(net, "fc1", delta) as shifted:
        assert torch.equal(net.fc1.bias, before["fc1.bias"] + delta) and torch.equal(shifted, net.fc1.bias)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(RuntimeError, match="inside"):
        with stimulate(net, "conv2", torch.full((50,), 0.7)):
            with stimulate(net, "conv2", torch.full((50,), 0.1)):  # nested: restored in turn
                assert torch.allclose(net.conv2.bias, before["conv2.bias"] + 0.8)
                raise RuntimeError("inside the block")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with Probe(net, progress=False) as p:  # through a probe: the model and its fast copy
        p.classification_images(stimuli.WhiteNoise((1, 28, 28)), 10)
        with pytest.raises(KeyError):
            with stimulate(p, "fc2", torch.ones(10)):
                raise KeyError
        (eng,) = p._engines.values()
        assert eng.kind == "eager" and torch.equal(eng.fast_model.fc2.bias, before["fc2.bias"])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_stimulate_refuses_unknown_layers_missing_biases_and_wrong_shapes():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 26 * 26, 10))
    with pytest.raises(ValueError, match=r"no layer named 'fc9'; layers with a bias: \['3'\]"):
        with stimulate(net, "fc9", torch.zeros(10)):
            pass
    with pytest.raises(ValueError, match="'0' .*Conv2d.* has no bias"):
        with stimulate(net, "0", torch.zeros(4)):
            pass
    with pytest.raises(ValueError, match=r"delta has shape \(4,\), the bias of '3' \(10,\)"):
        with stimulate(net, "3", torch.zeros(4)):
            pass
    with pytest.raises(ValueError, match="finite"):
        with stimulate(net, "3", torch.full((10,), float("nan"))):
            pass
    with pytest.raises(ValueError, match="no lambda for layer '3'"):
        paper_delta(net, "3", torch.rand(2, 1, 28, 28), 1)


# ---------------------------------------------------------------- the paper's rule

class Tiny(torch.nn.Module):
    """conv1: 1x1, weights (1, 2, -1), biases (-0.25, 0, 0); fc1 on the flattened ReLU maps."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 3, 1)
        self.fc1 = torch.nn.Linear(12, 2)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([1.0, 2.0, -1.0]).reshape(3, 1, 1, 1))
            self.conv1.bias.copy_(torch.tensor([-0.25, 0.0, 0.0]))
            self.fc1.weight.zero_()
            self.fc1.weight[0] = 1 / 12  # the mean of the ReLU maps
            self.fc1.weight[1, 4:8] = 1.0  # the sum of channel 1's map, minus 1
            self.fc1.bias.copy_(torch.tensor([0.0, -1.0]))

    def forward(self, x):
        return self.fc1(torch.relu(self.conv1(x)).flatten(1))


def test_paper_delta_equals_the_hand_computed_rule():
    """Images A = (.1 .2; .3 .4), B = (.5 .6; .7 .8), mean pixel 0.45.

    conv1 post-ReLU means a = (mean relu(x - .25), 2 x .45, 0) = (0.225, 0.9, 0): the ReLU acts per
    position, before averaging; pre-ReLU a = (0.2, 0.9, -0.45). fc1 post-ReLU: unit 0 is the mean of
    the conv1 maps, (0.225 + 0.9 + 0) / 3 = 0.375; unit 1 is 2 sum(x) - 1 = 1.0 (A) and 4.2 (B), mean 2.6.
    """
    net, k = Tiny(), 3
    x = torch.tensor([[.1, .2, .3, .4], [.5, .6, .7, .8]]).reshape(2, 1, 2, 2)
    close = dict(rtol=1e-6, atol=1e-7)
    got = paper_delta(net, "conv1", x, k)  # 0.1 * k * a / max(a)
    assert torch.allclose(got, 0.1 * k * torch.tensor([0.25, 1.0, 0.0]), **close) and got.dtype == torch.float32
    assert torch.allclose(paper_delta(net, "conv1", x, k, direction="decrease"), -got)
    assert torch.allclose(paper_delta(net, "conv1", x, k, activation="none"),
                          0.1 * k * torch.tensor([0.2, 0.9, -0.45]) / 0.9, **close)
    assert torch.allclose(paper_delta(net, "fc1", x, k), 0.01 * k * torch.tensor([0.375, 2.6]), **close)  # no max
    assert torch.allclose(paper_delta(net, "fc1", x, k, normalise=True, direction=-1),
                          -0.01 * k * torch.tensor([0.375, 2.6]) / 2.6, **close)
    assert torch.allclose(paper_delta(net, "fc1", x, k, lambdas={"fc1": 0.5}),
                          0.5 * k * torch.tensor([0.375, 2.6]), **close)
    assert torch.equal(paper_delta(net, "conv1", x, np.int64(k)), got)
    many = paper_delta(net, "conv1", x, range(4))
    assert list(many) == [0, 1, 2, 3] and torch.equal(many[3], got) and not many[0].any()
    assert LAMBDAS == {"conv1": 0.1, "conv2": 1.0, "fc1": 0.01}
    with pytest.raises(ValueError, match="direction"):
        paper_delta(net, "conv1", x, 1, direction="up")
    with pytest.raises(ValueError, match="activation"):
        paper_delta(net, "conv1", x, 1, activation="sigmoid")


# ---------------------------------------------------------------- psychometric fits

def test_the_fit_recovers_a_known_curve_and_its_interval_covers_the_truth():
    """Counts drawn from known curves (21 levels, 200 trials each): the estimates lie within 4
    standard errors, and the 95% Wald intervals cover the truth in 91-99% of 200 repeats (the
    binomial spread of 200 repeats at 95% is 1.5 points: 2.7 s.d. on either side)."""
    rng = np.random.default_rng(0)
    x, n = np.linspace(0, 1, 21), np.full(21, 200)
    for shape, guess, lapse in [("gaussian", 0.0, 0.0), ("logistic", 0.1, 0.02)]:
        p = psychometric_function(x, 0.4, 0.08, shape=shape, guess=guess, lapse=lapse)
        covered, errors = np.zeros(2), []
        for _ in range(200):
            f = fit_psychometric(x, rng.binomial(n, p), n, shape=shape, guess=guess, lapse=lapse)
            assert f.converged and not f.at_bound
            covered += [f.threshold_ci[0] <= 0.4 <= f.threshold_ci[1], f.scale_ci[0] <= 0.08 <= f.scale_ci[1]]
            errors.append([(f.threshold - 0.4) / f.se["threshold"], math.log(f.scale / 0.08) / f.se["log_scale"]])
        assert (np.abs(errors) < 4).all(), shape
        assert ((0.91 <= covered / 200) & (covered / 200 <= 0.99)).all(), (shape, covered)
        assert not f.extrapolated
        assert abs(np.mean(errors, 0)).max() < 0.3  # no bias beyond 0.3 s.e. (its spread: 0.07)
    slope = (1 - guess - lapse) * 0.25 / 0.08  # logistic: F'(0) = 1/4
    assert f.slope_ci[0] < f.slope < f.slope_ci[1] and abs(f.slope / slope - 1) < 0.2
    # a flat curve (every stimulus a hit, as conv2 stimulation at large k gives) has no threshold
    p = psychometric_function(x, 0.4, 0.08)
    curves = PsychometricCurves(x, [0, 10], np.stack([rng.binomial(n, p), n]), np.stack([n, n]), 7, "conv2")
    fits = curves.fit()
    assert fits[10].at_bound and math.isnan(fits[10].threshold_ci[0]) and not fits[0].at_bound
    shifts = curves.threshold_shifts()
    assert shifts[0][0] == 0 and shifts[0][1][0] < 0 < shifts[0][1][1] and math.isnan(shifts[10][0])


def test_a_bias_shift_moves_the_threshold_by_the_closed_form_amount():
    """Known answer 5 (book/methods.md) through the engine: logits W x + b, x ~ N(0, sigma^2 I), class 1's bias
    shifted by delta: P(1) = Phi((b1 - b0 + delta) / (sigma |w1 - w0|)). Fitted against delta, the
    threshold is -(b1 - b0) and the scale sigma |w1 - w0| (= 1 here). With 11 shifts of 2,000
    stimuli, the Fisher information of the design gives se 0.012 (threshold) and 1.1% (scale): the
    tolerances are 4 se. A second, outer shift beta of class 1's bias moves the threshold by -beta.
    (Each shift draws its own noise: one noise sample for all shifts would correlate the counts.)
    """
    torch.manual_seed(0)
    D, sigma, db, beta = 16, 0.5, 0.6, 0.45
    net = torch.nn.Sequential(torch.nn.Linear(D, 2)).eval()
    with torch.no_grad():
        u = torch.randn(D)
        net[0].weight[1] = net[0].weight[0] + 2.0 * u / u.norm()  # |w1 - w0| = 2
        net[0].bias[1] = net[0].bias[0] + db
    t, s = -db, sigma * 2.0
    grid = t + s * np.linspace(-2.5, 2.5, 11)
    deltas = {float(d): torch.tensor([0.0, d]) for d in grid}
    noise = stimuli.WhiteNoise((D,), "gaussian", std=sigma)
    z = np.linspace(-2.5, 2.5, 11)  # expected information of the threshold: sum n phi^2 / (s^2 Phi (1 - Phi))
    se = s / math.sqrt(np.sum(2000 * stats.norm.pdf(z) ** 2 / (stats.norm.cdf(z) * stats.norm.sf(z))))
    with Probe(net, progress=False) as p:
        for outer in (0.0, beta):
            hits = []
            with stimulate(p, "0", torch.tensor([0.0, outer])):
                for i, (d, delta) in enumerate(deltas.items()):  # a seed per shift: independent counts
                    c = psychometric_curves(p, torch.zeros(1, D), 1, layer="0", deltas={d: delta}, levels=[0.0],
                                            n_per_level=2000, noise=noise, seed=i, progress=False)
                    hits.append(int(c.hits[0, 0]))
            f = fit_psychometric(grid, hits, np.full(len(grid), 2000))
            assert abs(f.threshold - (t - outer)) < 4 * se, (outer, f.threshold, t - outer)
            assert f.threshold_ci[0] < t - outer < f.threshold_ci[1]
            assert abs(f.scale / s - 1) < 0.045 and abs(f.se["threshold"] / se - 1) < 0.1
    assert torch.equal(net[0].bias[1], net[0].bias[0] + db)  # restored


# ---------------------------------------------------------------- through the engine

def test_stimulation_through_one_engine_changes_the_decisions(engine_builds):
    """A large fc2 bias shift for class 3 makes noise (g = 0) class 3; the whole (k, g) sweep builds
    one engine (the eager fast copy, shifted in place), and its counts equal the plain model's."""
    built = engine_builds
    net = _cnn()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    signals = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    deltas = {0: torch.zeros(10), 1: torch.zeros(10).index_fill_(0, torch.tensor([3]), 0.1),
              2: torch.zeros(10).index_fill_(0, torch.tensor([3]), 50.0)}
    args = dict(layer="fc2", deltas=deltas, levels=[0.0, 0.5, 1.0], n_per_level=300, seed=0, batch_size=300,
                progress=False)
    c = psychometric_curves(net, signals, 3, **args)
    assert built == [(1, 28, 28)] and c.meta["fast_path"] == "eager"
    assert c.fraction[0, 0] < 0.5 and (c.fraction[2] == 1).all() and c.meta["stimuli_per_second"] > 0
    assert c.hits[1].sum() >= c.hits[0].sum()
    plain = psychometric_curves(net, signals, 3, fast="off", **args)
    assert np.array_equal(plain.hits, c.hits) and plain.meta["fast_path"] is None
    # the paper's rule on a hidden layer: the fast copy and the plain model still agree
    fc1 = paper_delta(net, "fc1", signals, [0, 10])
    assert np.array_equal(psychometric_curves(net, signals, 3, **{**args, "layer": "fc1", "deltas": fc1}).hits,
                          psychometric_curves(net, signals, 3, fast="off", **{**args, "layer": "fc1",
                                                                                  "deltas": fc1}).hits)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="freezes the weights"):
        psychometric_curves(net, signals, 3, fast="onnx", **args)


def test_same_seed_same_curves():
    net = _cnn(classes=1)  # a binary observer: hits are class 1 (logit > 0)
    signals = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    args = dict(layer="fc2", deltas={0: torch.zeros(1), 1: torch.full((1,), 0.02)}, levels=np.linspace(0, 1, 5),
                n_per_level=400, progress=False)
    a = psychometric_curves(net, signals, 1, seed=5, **args)
    b = psychometric_curves(net, signals, 1, seed=5, **args)
    other = psychometric_curves(net, signals, 1, seed=6, **args)
    assert np.array_equal(a.hits, b.hits) and np.array_equal(a.trials, b.trials)
    assert not np.array_equal(a.hits, other.hits)
    assert (a.trials == 400).all() and a.ks == [0, 1] and a.meta["seed"] == 5
    with pytest.raises(ValueError, match="target 2"):
        psychometric_curves(net, signals, 2, **args)


@pytest.mark.slow
def test_fc1_stimulation_shifts_the_trained_cnns_curve_left_and_inhibition_right(mnist_available):
    """Fig. 9A and Fig. 24 on the zoo's CNN: k = 10 on fc1 lowers the threshold of digit 7 and the
    "decreasing" rule raises it (measured -0.061 and +0.052 in g from 0.367; thresholds' se 0.0026).
    Maximum-likelihood fit with Wald intervals: psignifit's credible intervals (overdispersion free)
    are wider, and its interval for the increase reached +0.004 in one run."""
    from wna import data, zoo
    net = zoo.load("mnist_cnn", epochs=4, seed=1, progress=False)
    x, y = data.mnist(train=True)
    xt, yt = data.mnist(train=False)
    shifts = {}
    for direction in ("increase", "decrease"):
        deltas = paper_delta(net, "fc1", x[y == 7][:2000], [0, 10], direction=direction)
        c = psychometric_curves(net, xt[yt == 7], 7, layer="fc1", deltas=deltas, n_per_level=500,
                                progress=False)
        shifts[direction] = c.threshold_shifts(method="ml")[10]  # psignifit's wider intervals: see below
    assert shifts["increase"][1][1] < 0 < shifts["decrease"][1][0], shifts


def test_shift_summary_says_which_way_a_curve_moved():
    """Curves of known thresholds (0.5 at k = 0, 0.4 at k = 1, 0.6 at k = 2; 400 trials per level):
    a lower threshold is a left shift, a higher one right; a curve of all hits (flat, no threshold)
    is "left (flat)", all misses "right (flat)", the reference itself "none"."""
    from wna.stimulation import shift_summary
    rng = np.random.default_rng(0)
    x, n = np.linspace(0, 1, 21), np.full(21, 400)
    hits = [rng.binomial(n, psychometric_function(x, t, 0.08)) for t in (0.5, 0.4, 0.6)]
    curves = PsychometricCurves(x, [0, 1, 2, 3, 4], np.stack([*hits, n, 0 * n]), np.stack([n] * 5), 7, "fc1")
    got = {k: shift_summary(curves, k) for k in curves.ks}
    assert [got[k]["direction"] for k in curves.ks] == ["none", "left", "right", "left (flat)", "right (flat)"]
    assert abs(got[1]["shift"] + 0.1) < 0.02 and got[1]["low"] < -0.1 < got[1]["high"] < 0
    assert got[1]["area"] > 0 > got[2]["area"] and not got[1]["extrapolated"]
    assert shift_summary(curves)["k"] == 4 and math.isnan(got[3]["shift"])


# ---------------------------------------------------------------- psignifit (the optional extra wna[fits])

def _clean_curve(threshold=0.4, scale=0.08, seed=0):
    x, n = np.linspace(0, 1, 21), np.full(21, 1000)
    return x, np.random.default_rng(seed).binomial(n, psychometric_function(x, threshold, scale)), n


def test_psignifit_finds_the_known_threshold_of_a_clean_curve_like_the_ml_fit():
    """A cumulative Gaussian of threshold 0.4 and s.d. 0.08, 1,000 trials at each of 21 levels: psignifit's
    MAP threshold lies within 0.01 of 0.4 and within 0.003 of the maximum-likelihood fit (flat priors over
    the levels, guess and lapse fixed at 0: the same model), its s.d. within 10% of 0.08, and its 95%
    credible interval covers 0.4."""
    pytest.importorskip("psignifit")
    from wna.stimulation import fit_curve
    x, y, n = _clean_curve()
    ps, ml = fit_curve(x, y, n), fit_curve(x, y, n, method="ml")
    assert (ps.method, ps.note, ml.method) == ("psignifit", "", "ml")
    assert abs(ps.threshold - 0.4) < 0.01 and abs(ps.threshold - ml.threshold) < 0.003, (ps.threshold, ml.threshold)
    assert abs(ps.scale / 0.08 - 1) < 0.1 and ps.threshold_ci[0] < 0.4 < ps.threshold_ci[1]
    assert ps.guess == ps.lapse == 0 and not ps.at_bound and not ps.extrapolated
    # the credible interval is as wide as the likelihood's (psignifit's default 40 x 40 grid: 1.4 times)
    width = (ps.threshold_ci[1] - ps.threshold_ci[0]) / (ml.threshold_ci[1] - ml.threshold_ci[0])
    assert 0.8 < width < 1.2, width


def test_without_psignifit_or_for_a_flat_curve_the_fit_is_maximum_likelihood_with_a_note(monkeypatch):
    from wna.stimulation import fit_curve
    x, y, n = _clean_curve()
    flat = fit_curve(x, n, n)  # every stimulus a hit: no threshold in the data
    assert flat.method == "ml" and flat.at_bound and "flat curve" in flat.note
    monkeypatch.setitem(__import__("sys").modules, "psignifit", None)  # import psignifit now raises ImportError
    f, ml = fit_curve(x, y, n), fit_psychometric(x, y, n)
    assert f.method == "ml" and "psignifit not installed" in f.note
    assert (f.threshold, f.scale, f.threshold_ci) == (ml.threshold, ml.scale, ml.threshold_ci)
    with pytest.raises(ValueError, match="method"):
        fit_curve(x, y, n, method="bayes")
