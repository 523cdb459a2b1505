"""Spike-triggered analysis (wna.sta): known answers 3-4 (book/methods.md) on units of known filters.

Sample sizes follow the §4 argument. For a unit r = relu(w.x) under N(0, I)
noise in D pixels, the STA is E[r x] = w/2 (|w| = 1) plus noise of variance
E[r^2] / N = 1 / (2N) per pixel, so the expected cosine to w is
rho = [1 + 2 D / N]^-1/2. The regression (whitened) estimate under N(0, C)
has residual variance (1/4 - 1/(2 pi)) w'Cw, so
rho = [1 + (1 - 2/pi) (w'Cw) tr(Phi^-1) / (N |w|^2)]^-1/2 over the patch.
"""

import math

import pytest
import torch
from torch import nn

from conftest import cosine
from wna import Probe, models, sta, stimuli

GAUSS = (1, 16, 16)


def _gabor(k, freq=1.2, phase=0.0, sigma=2.0):
    yy, xx = torch.meshgrid(torch.arange(k) - (k - 1) / 2, torch.arange(k) - (k - 1) / 2, indexing="ij")
    return torch.cos(freq * xx + phase) * torch.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))


def _conv(weight, **kw):
    conv = nn.Conv2d(1, weight.shape[0], weight.shape[-1], bias=False, **kw)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(conv.weight.shape))
    return conv


def _strided_unit():
    """A linear-ReLU unit behind a stride-2 layer: conv 3x3/2 (pad 1), conv 3x3, ReLU."""
    torch.manual_seed(0)
    return nn.Sequential(_conv(torch.randn(1, 3, 3), stride=2, padding=1), _conv(torch.randn(1, 3, 3)), nn.ReLU())


def _filter_at(linear: nn.Module, shape, position):
    """The unit's filter in input space, by autograd through its linear part (independent of wna)."""
    x = torch.zeros((1, *shape), requires_grad=True)
    linear(x)[0, 0, position[0], position[1]].backward()
    return x.grad[0].double()


def _support(t):
    nz = t.abs().sum(0).nonzero()
    return (int(nz[:, 0].min()), int(nz[:, 0].max()) + 1, int(nz[:, 1].min()), int(nz[:, 1].max()) + 1)


def test_receptive_field_of_the_mnist_cnn_and_of_a_stride_padding_pool_stack():
    cnn = models.MnistCNN()  # its pooling is functional (F.max_pool2d): read through torch.fx
    assert sta.receptive_field(cnn, "conv1") == sta.RF((5, 5), (1, 1), (0, 0))
    assert sta.receptive_field(cnn, "conv2") == sta.RF((14, 14), (2, 2), (0, 0))  # the paper's Fig. 8: 14x14
    # by hand: conv k3 s2 p1 -> (3, 2, -1); maxpool k3 s2 p1 -> (3 + 2*2, 4, -1 - 2) = (7, 4, -3);
    # conv k3 dilation 2 p2 -> (7 + 2*2*4, 4, -3 - 2*4) = (23, 4, -11)
    stack = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
                          nn.Conv2d(2, 1, 3, dilation=2, padding=2))
    assert sta.receptive_field(stack, "1") == sta.RF((3, 3), (2, 2), (-1, -1))
    assert sta.receptive_field(stack, "2") == sta.RF((7, 7), (4, 4), (-3, -3))
    assert sta.receptive_field(stack, "3") == sta.RF((23, 23), (4, 4), (-11, -11))
    # the window of every unit equals the support of its gradient (average pooling: every input counts)
    avg = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.AvgPool2d(3, 2, padding=1),
                        nn.Conv2d(1, 1, (3, 5), dilation=(2, 1), padding=(2, 1)))
    with torch.no_grad():
        for m in avg:
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
    rf = sta.receptive_field(avg, "2")
    assert rf == sta.RF((23, 23), (4, 4), (-11, -7))  # columns: kernel 5, no dilation
    for pos in [(0, 0), (2, 1), (4, 2)]:  # a 5x3 map: corners clip the window
        rows, cols = rf.window(pos, (20, 20))
        assert _support(_filter_at(avg, (1, 20, 20), pos)) == (rows.start, rows.stop, cols.start, cols.stop)
    with pytest.raises(ValueError, match="whole input"):
        sta.receptive_field(cnn, "fc1")
    # branches that meet (a residual-style sum): the union of their windows
    assert sta.receptive_field(Branches(), "out") == sta.RF((7, 5), (2, 2), (-2, -2))
    with pytest.warns(RuntimeWarning, match="registration order"):  # torch.fx cannot trace it
        assert sta.receptive_field(Untraceable(), "pool") == sta.RF((4, 4), (2, 2), (-1, -1))


class Untraceable(nn.Sequential):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.conv(x)) if float(x.sum()) > 0 else x  # data-dependent control flow


class Branches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, stride=2, padding=1)  # rows and columns: size 3, start -1
        self.b = nn.Conv2d(1, 1, (7, 5), stride=2, padding=2)  # size (7, 5), start -2
        self.out = nn.ReLU()

    def forward(self, x):
        return self.out(self.a(x) + self.b(x)).flatten(1)


def test_sta_of_a_linear_relu_unit_recovers_its_filter_in_its_window():
    # D = 256 pixels, N = 5e4: expected cosine [1 + 2 D / N]^-1/2 = 0.995 (module docstring)
    net, noise = _strided_unit(), stimuli.WhiteNoise(GAUSS, "gaussian")
    res = sta.spike_triggered_average(net, "2", noise, 50_000, seed=0, progress=False)
    assert res.position == (3, 3)  # the centre of the 7x7 map
    w = _filter_at(net[:2], GAUSS, res.position)
    assert res.sta.shape == (1, *GAUSS) and res.receptive_field == sta.RF((7, 7), (2, 2), (-1, -1))
    assert res.window == _support(w) == (5, 12, 5, 12)  # placed at the computed window
    assert cosine(res.sta, w) >= 0.98
    assert cosine(res.crop(), res.crop(w)) >= 0.98 and res.crop().shape == (1, 1, 7, 7)
    # outside the window only noise: per-pixel sd sqrt(E[r^2] / N) / E[r]
    sd = math.sqrt(float(res.r2[0]) / res.n / res.n) / (float(res.r[0]) / res.n)
    outside = res.sta[0].clone()
    outside[:, 5:12, 5:12] = 0
    assert float(outside.abs().max()) < 5 * sd and float(res.crop().abs().max()) > 50 * sd
    # magnitude (Stein): E[r x] = w E[f'] = w / 2 with normalize="count"
    count = res.average("count")
    assert float((count - w / 2).abs().max()) < 5 * math.sqrt(float(res.r2[0]) / res.n / res.n)


def test_sta_under_uniform_noise_is_nearly_proportional_to_the_filter():
    # MNIST CNN conv1 (random weights): pre-ReLU units are linear, so Cov(x, r) = Var(U) w = w / 12 exactly
    torch.manual_seed(1)
    cnn = models.MnistCNN()
    noise = stimuli.WhiteNoise((1, 28, 28))
    res = sta.spike_triggered_average(cnn, "conv1", noise, 20_000, seed=0, normalize="count", progress=False)
    w = cnn.conv1.weight.detach().double()  # (20, 1, 5, 5)
    assert res.crop().shape == (20, 1, 5, 5)
    cos = [cosine(c, k) for c, k in zip(res.crop(res.centred()), w)]
    assert min(cos) >= 0.98  # noise/signal energy 25 / N per channel: rho = 0.9994
    assert torch.allclose(res.crop(res.centred()), w / 12, atol=5 * 0.5 / 12 / math.sqrt(res.n) * 4)
    # post-ReLU (the paper's responses): approximately proportional, a looser bound
    relu = sta.spike_triggered_average(cnn, "conv1", noise, 20_000, seed=0, nonlinearity=torch.relu,
                                       progress=False)
    assert bool((relu.r > 0).all())  # every channel fires (0.02% to 43% of the stimuli)
    assert min(cosine(c, k) for c, k in zip(relu.crop(relu.centred()), w)) >= 0.95  # measured >= 0.985
    assert max(cosine(c, k) for c, k in zip(relu.crop(), w)) < 0.5  # uncentred, the noise mean dominates


class Correlated:
    """Gaussian noise N(0, A A^T): white noise times a fixed matrix."""

    def __init__(self, shape, a):
        self.shape, self.a = shape, a

    def sample(self, n, generator):
        z = torch.randn((n, self.a.shape[1]), generator=generator, device=generator.device)
        return (z @ self.a.T).reshape(n, *self.shape)

    def __repr__(self):
        return f"Correlated({self.shape})"


def _mixing(h, strength):
    """A symmetric matrix that adds ``strength`` x a Gaussian blur (sd 1 pixel) to each pixel: local correlations."""
    d = (torch.arange(h)[:, None] - torch.arange(h)[None, :]).float()
    blur = torch.exp(-d ** 2 / 2)
    return torch.eye(h * h) + strength * torch.kron(blur, blur) / blur.sum(1).mean() ** 2


def _span_cosines(a, b):
    """Cosines of the principal angles between the spans of the rows of ``a`` and of ``b``."""
    qa, qb = torch.linalg.qr(a.flatten(1).double().T).Q, torch.linalg.qr(b.flatten(1).double().T).Q
    return torch.linalg.svdvals(qa.T @ qb)


def test_whitening_recovers_the_filter_under_correlated_noise():
    h = 12
    a = _mixing(h, 10.0)
    w = _gabor(5, freq=2.0, sigma=2.0)
    net = nn.Sequential(_conv(w[None]), nn.ReLU())
    res = sta.spike_triggered_average(net, "1", Correlated((1, h, h), a), 20_000, seed=0, whiten=True,
                                      progress=False)
    inside = torch.zeros(h, h, dtype=torch.bool)
    inside[4:9, 4:9] = True
    assert res.window == (4, 9, 4, 9)
    c = (a @ a.T).double()[inside.flatten()][:, inside.flatten()]
    cw = c @ w.flatten().double()
    # Stein: the plain STA is C w, not w; C^-1 STA is w (expected cosine 0.9989 at N = 2e4)
    assert cosine(res.crop(), cw) >= 0.99
    plain, white = cosine(res.crop(), w), cosine(res.whitened(), w)
    assert plain < 0.8 and white >= 0.98
    assert cosine(res.whitened(centre=False), w) >= 0.98  # Eq. 5 as printed: the same for zero-mean noise
    assert torch.allclose(res.prior_covariance(), c, atol=0.05 * float(c.diagonal().mean()))


class SumSquares(nn.Module):
    def forward(self, y):
        return (y ** 2).sum(1, keepdim=True)


class Energy(nn.Module):
    """A complex-cell (energy) unit: r = (w1.x)^2 + (w2.x)^2 with a quadrature pair of filters."""

    def __init__(self, w1, w2):
        super().__init__()
        self.conv = _conv(torch.stack([w1, w2]))
        self.energy = SumSquares()

    def forward(self, x):
        return self.energy(self.conv(x)).flatten(1)


def test_stc_finds_both_filters_of_an_energy_unit_that_the_sta_misses():
    w1, w2 = _gabor(7), _gabor(7, phase=math.pi / 2)
    w1 = w1 / w1.norm()
    w2 = w2 - (w2 * w1).sum() * w1
    w2 = w2 / w2.norm()
    res = sta.spike_triggered_average(Energy(w1, w2), "energy", stimuli.WhiteNoise((1, 11, 11), "gaussian"),
                                      20_000, seed=0, stc=True, progress=False)
    assert res.window == (2, 9, 2, 9) and res.null_rxx.shape == (19, 1, 49, 49)
    # the STA is zero (an even response): its norm is that of the shuffled nulls
    null = res.null_sta().flatten(2).norm(dim=2)
    assert float(res.crop(res.centred()).norm()) < 2 * float(null.median())
    # STC: dC = w1 w1' + w2 w2' exactly, eigenvalues 1, 1, 0, ...
    s = res.stc()
    assert s.values[0, :2].sub(1).abs().max() < 0.1 and s.values[0, 2].abs() < 0.2
    top = s.vectors[0, :2]
    assert float(_span_cosines(top, torch.stack([w1, w2])).min()) >= 0.95  # principal angles of the planes
    assert s.significant[0, :2].all() and torch.equal(s.p_values[0, :2], torch.full((2,), 1 / 20, dtype=torch.float64))
    assert float(s.null_high.max()) < 0.2
    assert int(s.significant[0, 2:].sum()) <= 1 and float(s.p_values[0, 2:].median()) > 0.3  # the rest is noise
    white = res.stc(whiten=True)  # white noise: the same directions
    assert float(_span_cosines(white.vectors[0, :2], top).min()) >= 0.99


def test_whitened_stc_finds_the_energy_filters_under_correlated_noise():
    # N(0, C): dC = C W M W' C, so the plain STC spans C w1, C w2 and dC v = l C v spans w1, w2
    w1, w2 = _gabor(7), _gabor(7, phase=math.pi / 2)
    res = sta.spike_triggered_average(Energy(w1, w2), "energy", Correlated((1, 11, 11), _mixing(11, 3.0)),
                                      20_000, seed=0, stc=True, shuffles=0, progress=False)
    plain, white = res.stc(), res.stc(whiten=True)
    assert plain.significant is None
    filters = torch.stack([w1, w2])
    assert float(_span_cosines(plain.vectors[0, :2], filters).min()) < 0.92  # measured 0.88
    assert float(_span_cosines(white.vectors[0, :2], filters).min()) >= 0.95  # measured 0.988


def test_shards_merge_seeds_repeat_and_results_round_trip(tmp_path):
    net, noise = _strided_unit(), stimuli.WhiteNoise(GAUSS, "gaussian")
    kw = dict(seed=3, batch_size=1000, stc=True, shuffles=2, progress=False)
    full = sta.spike_triggered_average(net, "2", noise, 3500, **kw)
    again = sta.spike_triggered_average(net, "2", noise, 3500, **kw)
    with Probe(net, batch_size=1000, progress=False) as p:
        probed = sta.spike_triggered_average(p, "2", noise, 3500, seed=3, stc=True, shuffles=2)
    parts = [sta.spike_triggered_average(net, "2", noise, 3500, shard=(k, 3), **kw) for k in range(3)]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert merged.n == full.n == 3500
    for f in sta.SpikeTriggered.summed:
        assert torch.equal(getattr(full, f), getattr(again, f)) and torch.equal(getattr(full, f), getattr(probed, f))
        assert torch.allclose(getattr(merged, f), getattr(full, f), rtol=1e-12, atol=1e-12)
    full.save(tmp_path / "sta.pt")
    back = sta.SpikeTriggered.load(tmp_path / "sta.pt")
    assert torch.equal(back.sta, full.sta) and back.receptive_field == full.receptive_field
    assert back.position == full.position and torch.equal(back.stc().values, full.stc().values)
    other = sta.spike_triggered_average(net, "2", noise, 1000, seed=4, position=(1, 1), progress=False)
    with pytest.raises(ValueError, match="position"):
        full.merge(other)


def test_hooks_are_removed_and_captured_activations_are_cloned():
    w = _gabor(5)
    net = nn.Sequential(_conv(w[None]), nn.ReLU(inplace=True), nn.Conv2d(1, 2, 3))
    # linear unit, normalize="count": E[x (w.x)] = w exactly; an in-place ReLU would have halved it
    res = sta.spike_triggered_average(net, "0", stimuli.WhiteNoise((1, 9, 9), "gaussian"), 20_000,
                                      normalize="count", progress=False)
    assert float((res.crop()[0, 0] - w.double()).abs().max()) < 5 * float(w.norm()) / math.sqrt(res.n)

    class Failing:
        shape = (1, 9, 9)

        def sample(self, n, generator):
            if n < 256:
                raise RuntimeError("stimulus failed")
            return torch.randn((n, *self.shape), generator=generator)

    net.train()
    with pytest.raises(RuntimeError, match="stimulus failed"):
        sta.spike_triggered_average(net, "0", Failing(), 1000, batch_size=100, progress=False)
    assert all(not (m._forward_hooks or m._forward_pre_hooks) for m in net.modules())
    assert net.training


def test_clear_errors():
    cnn = models.MnistCNN()
    noise = stimuli.WhiteNoise((1, 28, 28))
    with pytest.raises(ValueError, match=r"no layer named.*conv1.*conv2"):
        sta.spike_triggered_average(cnn, "conv9", noise, 10, progress=False)
    with pytest.raises(ValueError, match="outside the 24x24 feature map"):
        sta.spike_triggered_average(cnn, "conv1", noise, 10, position=(24, 3), progress=False)
    with pytest.raises(ValueError, match="normalize must be one of"):
        sta.spike_triggered_average(cnn, "conv1", noise, 10, normalize="spikes", progress=False)
    with pytest.raises(ValueError, match="no spatial map"):
        sta.spike_triggered_average(cnn, "fc1", noise, 10, position=(0, 0), progress=False)
    with pytest.raises(ValueError, match="channels"):
        sta.spike_triggered_average(cnn, "conv1", noise, 10, channels=[20], progress=False)
    fc = sta.spike_triggered_average(cnn, "fc1", noise, 10, channels=[0, 3], progress=False)
    assert fc.sta.shape == (2, 1, 28, 28) and fc.window is None and fc.receptive_field is None
    with pytest.raises(ValueError, match="no stimulus second moments"):
        fc.whitened()
    dead = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with torch.no_grad():
        dead[0].bias.copy_(torch.tensor([-100.0, 0.0]))  # channel 0 never fires
    res = sta.spike_triggered_average(dead, "1", stimuli.WhiteNoise((1, 7, 7)), 500, stc=True, shuffles=2,
                                      progress=False)
    assert res.sta[0].isnan().all() and not res.sta[1].isnan().any() and not res.average("count")[0].any()
    assert not res.stc().significant[0].any() and res.stc().p_values[0].isnan().all()
