"""Inner layers read through the engine (wna._layers): estimators that declare layers()."""

import pytest
import torch
from torch import nn

from wna import Probe, _stream, models, stimuli
from wna.engine import Estimator, probe_for

SHAPE = (1, 12, 12)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()


class Capture(Estimator):
    """Keeps the layers' outputs of a run of one batch as they came (their "sum" over one batch)."""

    name = "capture"

    def __init__(self, stimulus, names, fail_at=None):
        super().__init__(stimulus)
        self.names, self.fail_at, self.calls = tuple(names), fail_at, 0

    def layers(self):
        return self.names

    def update(self, stimuli, outputs, layers):
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise RuntimeError("update failed")
        return {"logits": outputs.clone(), **{n: layers[n].clone() for n in self.names}}

    def finalize(self, sums, n, meta):
        return sums, meta


class LayerSum(Capture):
    name = "layer_sum"

    def update(self, stimuli, outputs, layers):
        return {n: layers[n].double().sum(0) for n in self.names}


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_a_layer_read_through_the_engine_is_a_direct_hook_capture_bitwise():
    net, noise = _net(), stimuli.WhiteNoise(SHAPE)
    with Probe(net, fast="off", batch_size=600, progress=False) as p:
        got, meta = p.run(Capture(noise, ["0", "2"]), 600, seed=3)
    x = noise.sample(600, _stream.batch_generator(3, 0))
    with torch.inference_mode(), models.record(net, "0", "2") as acts:
        logits = net(x)
    assert torch.equal(got["logits"], logits)
    assert torch.equal(got["2"], acts["2"])
    assert torch.equal(got["0"], nn.functional.conv2d(x, net[0].weight, net[0].bias))  # before the in-place ReLU
    assert meta["layers"] == ["0", "2"] and meta["layers_from"] == "plain"
    assert _hooks(net) == 0


def test_hooks_are_gone_after_a_run_and_after_an_exception():
    net, noise = _net(), stimuli.WhiteNoise(SHAPE)
    with Probe(net, fast="eager", batch_size=300, progress=False) as p:
        p.run(LayerSum(noise, ["2"]), 1200)
        assert _hooks(net) == 0
        eager = next(iter(p._engines.values())).fast_model
        assert eager is not None and _hooks(eager) == 0
        with pytest.raises(RuntimeError, match="update failed"):
            p.run(Capture(noise, ["2"], fail_at=1), 1200)
        assert _hooks(net) == 0 and _hooks(eager) == 0
        with pytest.raises(ValueError, match="no layer named 'nope'"):
            p.run(LayerSum(noise, ["nope"]), 300)
        assert _hooks(net) == 0 and _hooks(eager) == 0
        # the engine was kept across the runs: hooking for a run does not rebuild the fast copy
        assert next(iter(p._engines.values())).fast_model is eager


def test_fast_path_and_plain_give_the_same_layer_sums_and_threads_do_not_matter():
    net, noise = _net(1), stimuli.WhiteNoise(SHAPE)
    out = {}
    for fast in ("off", "eager"):
        with Probe(net, fast=fast, batch_size=512, progress=False) as p:
            out[fast] = p.run(LayerSum(noise, ["0", "4"]), 3000, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with Probe(net, fast="eager", batch_size=512, progress=False) as p:
            one = p.run(LayerSum(noise, ["0", "4"]), 3000, seed=5)
    finally:
        torch.set_num_threads(threads)
    assert out["eager"][1]["layers_from"] == "eager"
    for k in ("0", "4"):
        # the fast copy rounds float32 differently: equal sums up to that rounding
        torch.testing.assert_close(out["eager"][0][k], out["off"][0][k], rtol=1e-6, atol=1e-4)
        assert torch.equal(one[0][k], out["eager"][0][k])  # bitwise whatever the threads


def test_shards_of_a_layer_reading_run_merge_into_the_single_process_sums():
    net, noise = _net(2), stimuli.WhiteNoise(SHAPE)
    with Probe(net, batch_size=250, progress=False) as p:
        full = p.run(LayerSum(noise, ["2"]), 1000, seed=1)[0]["2"]
        parts = [p.run(LayerSum(noise, ["2"]), 1000, seed=1, shard=(k, 3))[0]["2"] for k in range(3)]
    torch.testing.assert_close(sum(parts), full, rtol=1e-12, atol=1e-9)


def test_probe_for_closes_only_the_probe_it_opened():
    net = _net()
    with Probe(net, batch_size=100, progress=False) as mine:
        with probe_for(mine, batch_size=None, progress=False) as p:
            assert p is mine
        with probe_for(mine, batch_size=50) as p:
            assert p is not mine and p.batch_size == 50 and p.progress is False and p.model is net
        with probe_for(net, batch_size=7) as p:
            assert isinstance(p, Probe) and p.batch_size == 7
        with pytest.raises(TypeError, match="unknown settings"):
            with probe_for(net, colour="red"):
                pass


def test_activation_means_and_confusions_are_results_that_merge_and_save(tmp_path):
    from wna.activations import ActivationMeans, Confusion, data_activations, noise_activations
    from wna.activations import _Decisions
    from wna.stimuli import Rows  # the estimator behind injection_sweep

    net, noise = _net(3), stimuli.WhiteNoise(SHAPE)
    with Probe(net, batch_size=300, progress=False) as p:
        full = noise_activations(p, ["input", "2"], noise, 1200, seed=2)
        shards = [p.run(ActivationMeansEstimator(["input", "2"], noise, 5), 1200, seed=2, shard=(k, 2))
                  for k in range(2)]
        x, y = torch.rand(200, *SHAPE), torch.arange(200) % 5
        conf = p.run(_Decisions(Rows(x, y), 5), 200)
    merged = shards[0].merge(shards[1])
    assert isinstance(full, ActivationMeans) and torch.equal(merged.count, full.count)
    for k in ("input", "2"):
        torch.testing.assert_close(merged.sums[k], full.sums[k], rtol=1e-12, atol=1e-9)
    full.save(tmp_path / "a.pt")
    back = ActivationMeans.load(tmp_path / "a.pt")
    assert back.layers == full.layers and all(torch.equal(back.sums[k], full.sums[k]) for k in full.sums)
    with pytest.raises(ValueError, match="twice"):
        full.merge(full)
    assert isinstance(conf, Confusion) and int(conf.confusion.sum()) == 200
    conf.save(tmp_path / "c.pt")
    assert torch.equal(Confusion.load(tmp_path / "c.pt").confusion, conf.confusion)
    real = data_activations(net, ["2"], x, y, progress=False)
    with pytest.raises(ValueError, match="group"):
        real.merge(noise_activations(net, ["2"], noise, 100, progress=False))


from wna.activations import ActivationEstimator as ActivationMeansEstimator  # noqa: E402
