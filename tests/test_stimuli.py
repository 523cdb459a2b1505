"""Stimulus generators: the moments the paper's methods rely on, and seeding."""

import math

import pytest
import torch

from wna import stimuli

N = 200_000  # standard error of a mean of U[0,1] draws: 0.29/sqrt(N) = 6.5e-4


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_uniform_noise_has_the_moments_of_u01():
    raw = stimuli.WhiteNoise((1, 4, 4)).sample(N, _gen())
    assert raw.shape == (N, 1, 4, 4) and raw.dtype == torch.float32
    x = raw.double()
    assert 0.0 <= float(x.min()) and float(x.max()) < 1.0
    assert abs(float(x.mean()) - 0.5) < 0.002
    assert abs(float(x.var()) - 1 / 12) < 0.001
    # independent pixels: the correlation of two pixels is about 0 (+-1/sqrt(N))
    flat = x.reshape(N, -1)
    c = torch.corrcoef(flat[:, :2].T)[0, 1]
    assert abs(float(c)) < 5 / math.sqrt(N)


def test_scaled_uniform_and_gaussian_moments():
    u = stimuli.WhiteNoise((8,), low=-1.0, high=3.0).sample(N, _gen(1)).double()
    assert -1.0 <= float(u.min()) and float(u.max()) < 3.0
    assert abs(float(u.mean()) - 1.0) < 0.01 and abs(float(u.var()) - 16 / 12) < 0.01
    g = stimuli.WhiteNoise((8,), "gaussian", mean=0.5, std=0.25).sample(N, _gen(2)).double()
    assert abs(float(g.mean()) - 0.5) < 0.002 and abs(float(g.std()) - 0.25) < 0.002
    # fourth moment of a Gaussian: 3 sigma^4 (a uniform would give 1.8)
    z = (g - 0.5) / 0.25
    assert abs(float((z ** 4).mean()) - 3.0) < 0.05


def test_same_generator_same_stimuli():
    noise = stimuli.WhiteNoise((3, 5, 5))
    assert torch.equal(noise.sample(10, _gen(7)), noise.sample(10, _gen(7)))
    assert not torch.equal(noise.sample(10, _gen(7)), noise.sample(10, _gen(8)))


def test_mix_is_eq3_with_its_moments():
    """t = gamma s + (1 - gamma) n: mean gamma s + (1 - gamma)/2, variance (1 - gamma)^2 / 12."""
    s = torch.linspace(0, 1, 16)
    n = stimuli.WhiteNoise((16,)).sample(N, _gen(3)).double()
    for gamma in (0.0, 0.3, 1.0):
        t = stimuli.mix(s.double(), n, gamma)
        assert torch.allclose(t.mean(0), gamma * s.double() + (1 - gamma) * 0.5, atol=0.003)
        assert torch.allclose(t.var(0), torch.full((16,), (1 - gamma) ** 2 / 12, dtype=torch.float64),
                              atol=0.002)
    assert torch.equal(stimuli.mix(s, n[:2].float(), 1.0), s.expand(2, 16))
    with pytest.raises(ValueError, match="gamma"):
        stimuli.mix(s, n, 1.5)


@pytest.mark.parametrize("bad", [dict(shape=()), dict(shape=(0, 3)), dict(distribution="pink"),
                                 dict(low=1.0, high=1.0), dict(distribution="gaussian", std=0.0)])
def test_bad_noise_settings_are_refused(bad):
    args = dict(shape=(4,))
    args.update(bad)
    with pytest.raises(ValueError):
        stimuli.WhiteNoise(args.pop("shape"), **args)
