"""The one sweep driver (wna.sweep) and the three sweeps that run through it: psychometric curves,
the bias-map attack and activation injection."""

import numpy as np
import pytest
import torch

import wna.sweep
from wna import Probe, _stream, models, stimuli
from wna.activations import injection_sweep
from wna.attack import MixEstimator, bias_map_attack
from wna.stimulation import DecisionEstimator, psychometric_curves, stimulate
from wna.sweep import sweep

SHAPE = (1, 28, 28)


def _cnn(seed=0, classes=10):
    torch.manual_seed(seed)
    return models.MnistCNN(num_classes=classes).eval()


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


SIGNALS = torch.rand(12, *SHAPE, generator=torch.Generator().manual_seed(3))
DELTAS = [torch.linspace(-1, 1, 500) / 3, torch.full((500,), 0.7), torch.linspace(0, 2, 500)]


def test_the_model_is_restored_bitwise_after_each_cell_and_after_an_exception():
    net = _cnn()
    before = _state(net)
    est = DecisionEstimator(SIGNALS, stimuli.WhiteNoise(SHAPE), 0.3)
    seen = []

    def run_cell(p, i):  # inside cell i: exactly the original plus delta i, in the model and its fast copy
        want = before["fc1.bias"] + DELTAS[i]
        assert torch.equal(net.fc1.bias, want)
        for e in p._engines.values():
            assert torch.equal(e.fast_model.fc1.bias, want)
        seen.append(i)
        return p.run(est, 200, seed=i)

    with Probe(net, batch_size=100) as p:
        out = sweep(p, range(3), run_cell, size=lambda i: 200, edit=lambda i: stimulate(p, "fc1", DELTAS[i]),
                    progress=False)
        assert seen == [0, 1, 2] and len(out.results) == 3 and _same(before, _state(net))
        (eng,) = p._engines.values()
        assert eng.kind == "eager" and torch.equal(eng.fast_model.fc1.bias, before["fc1.bias"])

        def failing(p, i):
            if i == 1:
                raise RuntimeError("inside cell 1")
            return run_cell(p, i)

        with pytest.raises(RuntimeError, match="inside cell 1"):
            sweep(p, range(3), failing, size=lambda i: 200, edit=lambda i: stimulate(p, "fc1", DELTAS[i]),
                  progress=False)
        assert _same(before, _state(net)) and torch.equal(eng.fast_model.fc1.bias, before["fc1.bias"])
        assert p.progress is True  # the probe's own progress is back after the failed sweep


def test_a_sweeps_cells_equal_each_cell_run_alone_bitwise():
    net = _cnn()
    noise = stimuli.WhiteNoise(SHAPE)
    cells = [(i, g) for i in range(3) for g in (0.0, 0.4)]

    def run_cell(p, cell):
        return p.run(DecisionEstimator(SIGNALS, noise, cell[1]), 300, seed=7)

    with Probe(net, batch_size=128) as p:
        out = sweep(p, cells, run_cell, size=lambda c: 300, edit=lambda c: stimulate(p, "fc1", DELTAS[c[0]]),
                    progress=False)
    for (i, g), r in zip(cells, out.results):
        with stimulate(net, "fc1", DELTAS[i]), Probe(net, batch_size=128, progress=False) as alone:
            a = alone.run(DecisionEstimator(SIGNALS, noise, g), 300, seed=7)
        assert torch.equal(a.count, r.count) and a.n == r.n == 300
    # the bias-map attack's cells (γ) alike
    pats = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(4))
    res = bias_map_attack(net, noise, pats, (0.0, 0.5), n_samples=250, batch_size=100, progress=False)
    for i, g in enumerate(res.gammas):
        with Probe(net, batch_size=100, progress=False) as alone:
            assert torch.equal(alone.run(MixEstimator(noise, pats, float(g)), 250, seed=0).count, res.counts[i])


def test_the_timing_record_adds_up():
    net = _cnn()
    est = DecisionEstimator(SIGNALS, stimuli.WhiteNoise(SHAPE), 0.5)
    sizes = [100, 250, 0, 50]
    with Probe(net, batch_size=100, progress=False) as p:
        out = sweep(p, range(4), lambda p, i: p.run(est, max(sizes[i], 1)), size=lambda i: sizes[i],
                    progress=False)
    t = out.timing
    assert t.stimuli == sum(sizes) and len(t.cell_seconds) == 4
    assert 0 < sum(t.cell_seconds) <= t.seconds
    assert t.stimuli_per_second == t.stimuli / t.seconds
    assert t.meta() == {"seconds": t.seconds, "stimuli_per_second": t.stimuli_per_second}
    # the callers record it under the keys they always used
    c = psychometric_curves(net, SIGNALS, 3, levels=[0.0, 1.0], n_per_level=120, progress=False)
    assert c.meta["stimuli_per_second"] == pytest.approx(c.trials.sum() / c.meta["seconds"], rel=1e-12)
    with pytest.raises(ValueError, match=">= 0"):
        sweep(p, [1], lambda p, i: i, size=lambda i: -1, progress=False)


class _Counting:
    """Stands in for tqdm: counts the bars made, and those shown."""

    def __init__(self, real):
        self.real, self.made, self.shown, self.totals = real, 0, 0, []

    def __call__(self, *a, **k):
        self.made += 1
        self.shown += not k.get("disable", False)
        self.totals.append(k.get("total"))
        return self.real(*a, **{**k, "disable": True})


def test_a_sweep_shows_exactly_one_progress_bar(monkeypatch):
    bars, per_run = _Counting(wna.sweep.tqdm), _Counting(_stream.tqdm)
    monkeypatch.setattr(wna.sweep, "tqdm", bars)
    monkeypatch.setattr(_stream, "tqdm", per_run)
    net = _cnn()
    noise = stimuli.WhiteNoise(SHAPE)
    with Probe(net, batch_size=100, progress=True) as p:  # a probe with progress on: its runs show none
        c = psychometric_curves(p, SIGNALS, 3, layer="fc1", deltas={0: None, 1: DELTAS[1]}, levels=[0.0, 0.5],
                                n_per_level=150)
        assert (bars.made, bars.shown, bars.totals) == (1, 1, [600]) and c.trials.sum() == 600
        r = bias_map_attack(p, noise, torch.rand(2, *SHAPE), (0.0, 1.0), n_samples=100)
        assert (bars.made, bars.shown, bars.totals[-1]) == (2, 2, 400) and int(r.counts.sum()) == 400
        assert p.progress is True
    x, y = torch.rand(40, *SHAPE), torch.arange(40) % 10
    acts = torch.rand(10, 500)
    acts[4] = float("nan")
    s = injection_sweep(net, "fc1", acts, x, y, gammas=[0.5, 1.0])
    # 9 classes at γ = 0.5 and γ = 1 once (the plain model), 40 images each
    assert (bars.made, bars.shown, bars.totals[-1]) == (3, 3, 400) and s.meta["stimuli"] == 400
    assert per_run.made > 0 and per_run.shown == 0  # the per-cell runs' bars are all off
