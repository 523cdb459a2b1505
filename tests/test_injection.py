"""Known answers for activation injection (Figs. 7C, 20, 21): wna.activations."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from wna import _stream, models, stimuli
from wna.activations import (class_distances, data_activations, inject, injection_sweep,
                        mean_class_distance, misclassification_ratio, noise_activations)

SHAPE = (1, 8, 8)


class Tiny(nn.Module):
    """A chain of children (a flatten before the fully connected block), 4 classes."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Sequential(nn.Linear(3 * 4 * 4, 8), nn.ReLU())
        self.out = nn.Linear(8, 4)

    def forward(self, x):
        return self.out(self.fc(self.pool(self.conv(x)).flatten(1)))


class NotAChain(Tiny):
    def forward(self, x):  # something happens between the children
        return self.out(self.fc(2 * self.pool(self.conv(x)).flatten(1)))


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture
def model():
    return Tiny().eval()


@pytest.fixture
def x():
    return torch.rand((64, *SHAPE), generator=torch.Generator().manual_seed(1))


def test_hooks_are_removed_after_normal_exit_and_after_an_exception(model, x):
    a = torch.rand(3, 8, 8)
    plain = model(x)
    with inject(model, "conv", a, 0.5):
        assert _hooks(model) == 1
        assert not torch.equal(model(x), plain)
    assert _hooks(model) == 0 and torch.equal(model(x), plain)
    with pytest.raises(RuntimeError, match="boom"):
        with inject(model, "input", torch.rand(SHAPE), 0.5):
            raise RuntimeError("boom")
    assert _hooks(model) == 0
    with pytest.raises(ValueError, match="shape"):  # raised inside the forward, by the hook
        with inject(model, "conv", torch.rand(2, 8, 8), 0.5):
            model(x)
    assert _hooks(model) == 0 and torch.equal(model(x), plain)


def test_gamma_one_leaves_the_logits_bitwise_and_zero_at_the_input_feeds_the_activation(model, x):
    a = torch.rand(SHAPE)
    with torch.inference_mode():
        plain = model(x)
        for layer, act in (("input", a), ("conv", torch.rand(3, 8, 8)), ("fc", torch.rand(8))):
            with inject(model, layer, act, 1.0):
                assert torch.equal(model(x), plain)
        with inject(model, "input", a, 0.0):
            assert torch.equal(model(x), model(a.expand(len(x), *SHAPE).contiguous()))


def test_the_mix_is_one_minus_gamma_activation_plus_gamma_output(model, x):
    a, g = torch.rand(3, 8, 8), 0.3
    with torch.inference_mode(), inject(model, "conv", a, g):
        got = model(x)
    with torch.inference_mode():
        want = model.out(model.fc(model.pool((1 - g) * a + g * model.conv(x)).flatten(1)))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_bad_layers_gammas_and_activations_raise_clear_errors(model):
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        with inject(model, "nope", torch.rand(3, 8, 8), 0.5):
            pass
    for g in (1.5, -0.1, math.nan, True, "0.5"):
        with pytest.raises(ValueError, match="gamma must be a number in"):
            with inject(model, "conv", torch.rand(3, 8, 8), g):
                pass
    with pytest.raises(ValueError, match="NaN or inf"):
        with inject(model, "conv", torch.full((3, 8, 8), math.nan), 0.5):
            pass
    assert _hooks(model) == 0
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        noise_activations(model, ["nope"], stimuli.WhiteNoise(SHAPE), 100, progress=False)
    assert _hooks(model) == 0
    with pytest.raises(ValueError, match="gamma"):
        injection_sweep(model, "conv", torch.rand(4, 3, 8, 8), torch.rand(4, *SHAPE),
                        torch.arange(4), gammas=[0.5, 2.0], progress=False)


def test_any_forward_and_any_submodule_is_read_as_a_hook_sees_it():
    """The layers are the probe's hook captures: a forward that is no chain of children and a
    layer inside a block are read as the model computes them (per class sums of one batch)."""
    model = NotAChain().eval()
    x = torch.rand((300, *SHAPE), generator=torch.Generator().manual_seed(2))
    y = torch.arange(300) % 4
    got = data_activations(model, ["fc", "conv.0"], x, y, batch_size=300, progress=False)
    with torch.inference_mode(), models.record(model, "fc", "conv.0") as acts:
        model(x)
    for layer in ("fc", "conv.0"):
        want = torch.stack([acts[layer][y == c].double().sum(0) for c in range(4)])
        torch.testing.assert_close(got.sums[layer], want, rtol=1e-5, atol=1e-5)
    assert _hooks(model) == 0


def test_noise_means_per_predicted_class_match_a_direct_computation(model):
    layers, n, bs, seed = ["input", "conv", "fc"], 2500, 1000, 3
    got = noise_activations(model, layers, stimuli.WhiteNoise(SHAPE), n, seed=seed, batch_size=bs,
                            progress=False)
    # the same stream, drawn again: batch i from batch_generator(seed, i)
    x = torch.cat([stimuli.WhiteNoise(SHAPE).sample(min(bs, n - i * bs),
                                                    _stream.batch_generator(seed, i, "cpu"))
                   for i in range(3)])
    with torch.inference_mode(), models.record(model, "conv", "fc") as acts:
        pred = model(x).argmax(1)
    acts["input"] = x
    assert got.group == "predicted" and got.n == n
    assert torch.equal(got.count, torch.bincount(pred, minlength=4))
    assert (got.count > 0).sum() >= 2
    for layer in layers:
        for c in range(4):
            rows = acts[layer][pred == c].double()
            if len(rows) == 0:
                assert got.mean[layer][c].isnan().all()
            else:
                torch.testing.assert_close(got.mean[layer][c], rows.mean(0), rtol=1e-6, atol=1e-7)


def test_data_means_per_true_class_see_every_row_once(model, x):
    y = torch.arange(len(x)) % 3  # class 3 has no image
    got = data_activations(model, ["conv", "fc"], x, y, batch_size=20, progress=False)
    assert got.group == "label" and got.n == len(x) and got.count.tolist() == [22, 21, 21, 0]
    with torch.inference_mode(), models.record(model, "fc") as acts:
        model(x)
    for c in range(3):
        want = acts["fc"][y == c].double().mean(0)
        torch.testing.assert_close(got.mean["fc"][c], want, rtol=1e-6, atol=1e-7)
    assert got.mean["conv"][3].isnan().all()
    d = class_distances(got.mean["fc"])
    assert d[0, 1] == pytest.approx(float((got.mean["fc"][0] - got.mean["fc"][1]).norm()))
    pairs = [d[i, j] for i in range(3) for j in range(3) if i != j]
    assert mean_class_distance(got)["fc"] == pytest.approx(np.mean(pairs))


def test_misclassification_ratio_by_hand():
    conf = np.array([[5, 2, 1], [3, 4, 0], [1, 1, 6]])  # rows true, columns predicted
    assert misclassification_ratio(conf, 1) == pytest.approx((2 + 1) / (8 + 8))
    assert misclassification_ratio(conf, 0) == pytest.approx((3 + 1) / (7 + 8))


@pytest.mark.parametrize("layer", ["input", "conv"])
def test_the_sweep_matches_a_hand_count_with_inject(model, layer):
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand((300, *SHAPE), generator=g), torch.randint(0, 4, (300,), generator=g)
    shape = SHAPE if layer == "input" else (3, 8, 8)
    acts = torch.rand((4, *shape), generator=g) * 3
    acts[2] = math.nan  # a class that received no noise
    gammas = [0.0, 0.4, 0.8, 1.0]
    sweeps = {fast: injection_sweep(model, layer, acts, x, y, gammas, batch_size=128, fast=fast,
                                    progress=False) for fast in ("off", "eager")}
    assert _hooks(model) == 0
    for s in sweeps.values():
        assert np.isnan(s.ratio[2]).all() and s.meta["stimuli_per_second"] > 0
        for c in (0, 1, 3):
            for j, gamma in enumerate(gammas):
                with torch.inference_mode(), inject(model, layer, acts[c], gamma):
                    pred = model(x).argmax(1)
                hand = int(((pred == c) & (y != c)).sum()) / int((y != c).sum())
                assert s.ratio[c, j] == hand
    np.testing.assert_array_equal(sweeps["off"].confusion, sweeps["eager"].confusion)
    thr = sweeps["off"].fooling_gamma(0.5)
    for c in (0, 1, 3):
        above = [gm for gm, r in zip(gammas, sweeps["off"].ratio[c]) if r >= 0.5]
        assert (np.isnan(thr[c]) and not above) or thr[c] == max(above)


def test_noise_means_are_bitwise_the_same_whatever_the_thread_count(model):
    threads = torch.get_num_threads()
    out = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            out.append(noise_activations(model, ["conv", "fc"], stimuli.WhiteNoise(SHAPE), 3000,
                                         seed=4, batch_size=500, progress=False))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out[0].count, out[1].count)
    for layer in ("conv", "fc"):
        assert torch.equal(out[0].sums[layer], out[1].sums[layer])
