"""Binary observers: Eq. 1, Eq. 2 and the four stimulus-response cells (known answers 1 and 6, book/methods.md).

Sample size: D = 16 pixels and N = 400,000 trials. Each cell mean has a
per-pixel standard error of about sigma / sqrt(N / 4), so the error of the
Eq. 1 map (four cell means) has norm about 2 * sqrt(D) * sigma / sqrt(N / 4)
= 0.025, which is 1.1% of the map's expected norm 2 * 1.596 sigma (the sum of
two signal conditions): well inside the 3% the tests allow.
"""

import math

import pytest
import torch

from wna import probe, stimuli

D = 16
N = 400_000


class LinearObserver(torch.nn.Module):
    def __init__(self, w, c=0.0):
        super().__init__()
        self.w, self.c = w.float(), float(c)

    def forward(self, x):
        return x.flatten(1) @ self.w - self.c


def _setup(sign=1.0):
    w = torch.zeros(D)
    w[:4] = torch.tensor([0.5, -0.5, 0.5, 0.5])  # |w| = 1
    # two signals on opposite sides of the criterion: w.s = -a and +a
    s0 = -0.6 * w
    s1 = 0.6 * w
    signals = torch.stack([s0, s1])
    classes = torch.tensor([0, 1])
    return LinearObserver(sign * w), w, signals, classes


def _phi(x):
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _Phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def cosine(a, b):
    a, b = a.flatten().double(), b.flatten().double()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("gamma", [0.0, 0.3])
def test_eq1_magnitude_and_direction_known_answer(gamma):
    model, w, signals, classes = _setup()
    noise = stimuli.WhiteNoise((D,), "gaussian")
    cells = probe.stimulus_response_cells(model, signals, classes, noise, gamma, N, batch_size=10_000,
                                          seed=1, progress=False)
    assert cells.n == N and int(cells.count.sum()) == N
    # Per signal s, the response is 1 when (1-g) w.n > -g w.s: criterion c_s = -g w.s / (1-g)
    # on w.n ~ N(0, 1), so E[n|s,1] - E[n|s,0] = w phi(c_s) / (Phi(c_s)(1 - Phi(c_s))).
    expected = torch.zeros(D, dtype=torch.float64)
    for s in signals:
        c_s = -gamma * float(w @ s) / (1 - gamma)
        expected += w.double() * _phi(c_s) / (_Phi(c_s) * (1 - _Phi(c_s)))
    ci = cells.classification_image
    assert cosine(ci, w) > 0.999
    assert abs(float(ci.norm()) / float(expected.norm()) - 1) < 0.03
    # accuracy of the observer matches its closed form
    c = gamma * 0.6 / (1 - gamma)
    assert abs(cells.accuracy - _Phi(c)) < 0.005


def test_eq2_correlation_known_answer():
    """Unbiased linear observer, zero-mean Gaussian noise: corr = sqrt(2/pi) w/|w| per pixel."""
    model, w, signals, classes = _setup()
    cells = probe.stimulus_response_cells(model, signals, classes, stimuli.WhiteNoise((D,), "gaussian"),
                                          0.0, N, batch_size=10_000, seed=2, progress=False)
    expected = math.sqrt(2 / math.pi) * w.double()
    assert torch.allclose(cells.correlation, expected, atol=0.01)
    # and Eq. 2 reduces to the simplified map, up to its scale (n̄·1 - n̄·0 = 2 sqrt(2/pi) w)
    assert cosine(cells.correlation, cells.response_difference) > 0.999
    assert abs(float(cells.response_difference.norm()) - 2 * math.sqrt(2 / math.pi)) < 0.03


def test_swapping_responses_negates_the_maps():
    model, w, signals, classes = _setup()
    flipped, *_ = _setup(sign=-1.0)
    noise = stimuli.WhiteNoise((D,), "gaussian")
    a = probe.stimulus_response_cells(model, signals, classes, noise, 0.0, 50_000, seed=3, progress=False)
    b = probe.stimulus_response_cells(flipped, signals, classes, noise, 0.0, 50_000, seed=3, progress=False)
    assert torch.allclose(b.classification_image, -a.classification_image, atol=1e-12)
    assert torch.allclose(b.correlation, -a.correlation, atol=1e-12)
    assert torch.equal(b.count, a.count.flip(1))


def test_maps_use_only_the_noise_part():
    """With a strong signal the stimulus difference contains the signals, the noise maps do not."""
    model, w, signals, classes = _setup()
    big = torch.zeros(2, D)
    big[1, 10] = 50.0  # signal 1 has a bright pixel the observer ignores
    cells = probe.stimulus_response_cells(model, big, classes, stimuli.WhiteNoise((D,), "gaussian"),
                                          0.5, 100_000, seed=4, progress=False)
    assert abs(float(cells.classification_image[10])) < 0.05
    assert abs(float(cells.stimulus_means[1, 0, 10]) - 25.0) < 0.05  # t = 0.5 s + 0.5 n


def test_cells_merge_and_save(tmp_path):
    model, w, signals, classes = _setup()
    noise = stimuli.WhiteNoise((D,))
    full = probe.stimulus_response_cells(model, signals, classes, noise, 0.2, 20_500, batch_size=1000,
                                         seed=5, progress=False)
    a = probe.stimulus_response_cells(model, signals, classes, noise, 0.2, 20_500, batch_size=1000,
                                      seed=5, progress=False, shard=(0, 2))
    b = probe.stimulus_response_cells(model, signals, classes, noise, 0.2, 20_500, batch_size=1000,
                                      seed=5, progress=False, shard=(1, 2))
    m = a.merge(b)
    assert torch.equal(m.count, full.count) and m.n == full.n
    assert torch.allclose(m.classification_image, full.classification_image, atol=1e-12)
    m.save(tmp_path / "cells.pt")
    back = probe.StimulusResponseCells.load(tmp_path / "cells.pt")
    assert torch.equal(back.noise_sums, m.noise_sums) and back.gamma == 0.2


def test_bad_binary_input():
    model, w, signals, classes = _setup()
    noise = stimuli.WhiteNoise((D,))
    with pytest.raises(ValueError, match="gamma"):
        probe.stimulus_response_cells(model, signals, classes, noise, 1.5, 10, progress=False)
    with pytest.raises(ValueError, match="0 or 1"):
        probe.stimulus_response_cells(model, signals, torch.tensor([0, 2]), noise, 0.1, 10, progress=False)
    with pytest.raises(ValueError, match="binary observer"):
        probe.stimulus_response_cells(lambda x: torch.zeros(len(x), 3), signals, classes, noise, 0.1, 10,
                                      progress=False)
    with pytest.raises(ValueError, match="shape"):
        probe.stimulus_response_cells(model, torch.zeros(2, 5), classes, noise, 0.1, 10, progress=False)


def test_binary_fast_path_matches_plain():
    from wna import models
    torch.manual_seed(0)
    cnn = models.build("binary_cnn").eval()  # one logit, untrained: many near-ties at 0
    signals = torch.rand(6, 1, 28, 28)
    classes = torch.tensor([0, 1, 0, 1, 0, 1])
    noise = stimuli.WhiteNoise((1, 28, 28))
    fast = probe.stimulus_response_cells(cnn, signals, classes, noise, 0.2, 6000, batch_size=1500,
                                         seed=0, progress=False)
    plain = probe.stimulus_response_cells(cnn, signals, classes, noise, 0.2, 6000, batch_size=1500,
                                          seed=0, progress=False, fast=False)
    assert fast.meta["fast"] and not plain.meta["fast"]
    assert torch.equal(fast.count, plain.count)
    assert torch.equal(fast.noise_sums, plain.noise_sums)
