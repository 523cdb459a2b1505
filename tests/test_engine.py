"""The engine's contract: wna.Probe, estimators, results (the API the README documents)."""

import math

import pytest
import torch

from conftest import Linear, cosine
from wna import Estimator, Probe, _backends, binary, engine, models, probe, stimuli


class SmallBNNet(torch.nn.Module):
    """Conv, BatchNorm, dropout: what torchvision's models have and the paper's CNN lacks."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.bn = torch.nn.BatchNorm2d(8)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(8 * 6 * 6, classes)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x))).flatten(1)))


def _bn_net(classes=10):
    torch.manual_seed(0)
    net = SmallBNNet(classes)
    with torch.no_grad():  # running statistics unlike a batch's: train and eval mode differ
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


def test_probe_builds_the_fast_copy_once_per_shape_and_never_changes_the_model(engine_builds):
    net = _bn_net()
    net.train()  # a freshly built torchvision model is in train mode
    before = {k: v.clone() for k, v in net.state_dict().items()}
    built = engine_builds
    noise = stimuli.WhiteNoise((3, 8, 8))
    with Probe(net, batch_size=500, progress=False) as p:
        a = p.classification_images(noise, 1500, seed=0)
        b = p.classification_images(noise, 1500, seed=1, weighting="confidence")
        p.classification_images(noise, 700, seed=2)
        assert built == [(3, 8, 8)]  # one engine for three calls
        assert a.meta["fast_path"] == "eager" and b.meta["fast_path"] == "eager"  # no disagreement
    assert net.training  # restored
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    plain = probe.classification_images(net, noise, 1500, seed=0, batch_size=500, fast="off", progress=False)
    assert torch.equal(a.count, plain.count) and torch.equal(a.sums, plain.sums)


def test_a_changed_parameter_rebuilds_the_fast_copy():
    """Micro-stimulation shifts biases between calls: the probe must see the shifted model."""
    torch.manual_seed(0)
    net = models.MnistCNN().eval()
    noise = stimuli.WhiteNoise((1, 28, 28))
    with Probe(net, batch_size=500, progress=False) as p:
        before = p.classification_images(noise, 1000, seed=0)
        with torch.no_grad():
            net.fc2.bias[3] += 5.0  # class 3 now wins almost always
        after = p.classification_images(noise, 1000, seed=0)
        with torch.no_grad():
            net.fc2.bias[3] -= 5.0
        again = p.classification_images(noise, 1000, seed=0)
    assert int(after.count[3]) > 900 > int(before.count[3])
    fresh = probe.classification_images(net, noise, 1000, seed=0, batch_size=500, fast="off", progress=False)
    assert torch.equal(again.count, fresh.count) and torch.equal(again.count, before.count)


def test_a_hook_registered_or_removed_between_calls_rebuilds_the_fast_copy():
    """The fast copy is a deep copy of the model, hooks included: a hook added after the first call
    must act on the next one, and a removed hook must stop acting (activation injection, Fig. 21)."""
    torch.manual_seed(0)
    net = models.MnistCNN().eval()
    noise = stimuli.WhiteNoise((1, 28, 28))

    def push_3(module, args, out):
        out = out.clone()
        out[:, 3] += 5.0
        return out

    with Probe(net, batch_size=500, progress=False) as p:
        before = p.classification_images(noise, 1000, seed=0)
        handle = net.fc2.register_forward_hook(push_3)
        hooked = p.classification_images(noise, 1000, seed=0)
        handle.remove()
        after = p.classification_images(noise, 1000, seed=0)
    assert hooked.meta["fast_path"] == "eager"
    assert int(hooked.count[3]) > 900 > int(before.count[3])
    assert torch.equal(after.count, before.count) and torch.equal(after.sums, before.sums)


@pytest.mark.parametrize("fast", ["eager", pytest.param("onnx", marks=pytest.mark.slow),
                                  pytest.param("compile", marks=pytest.mark.slow)])
@pytest.mark.parametrize("outputs", [10, 1])
def test_every_fast_path_equals_the_plain_model(fast, outputs):
    """Untrained CNNs (near-tied logits), ten classes and one logit: the same counts and sums as plain."""
    if fast == "onnx":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = models.MnistCNN(num_classes=outputs).eval()
    noise = stimuli.WhiteNoise((1, 28, 28))
    args = dict(n_samples=3000, batch_size=500, seed=2, progress=False)  # 6 batches: the threaded path
    got = probe.classification_images(net, noise, fast=fast, **args)
    plain = probe.classification_images(net, noise, fast="off", **args)
    assert got.meta["fast_path"] == fast and plain.meta["fast_path"] is None
    assert torch.equal(got.count, plain.count) and torch.equal(got.sums, plain.sums)
    assert int((got.count > 0).sum()) >= 2  # a real split, not one class
    one = probe.classification_images(net, noise, n_samples=700, batch_size=700, seed=3, fast=fast,
                                      progress=False)  # one batch: chunks spread over the threads
    assert torch.equal(one.count, probe.classification_images(net, noise, n_samples=700, batch_size=700,
                                                              seed=3, fast="off", progress=False).count)


def test_a_small_first_call_still_checks_the_fast_copy_on_a_full_chunk(monkeypatch):
    seen = []
    real = _backends.Engine._check_fast

    def spy(self, shape, kind, example):
        seen.append(len(example))
        return real(self, shape, kind, example)

    monkeypatch.setattr(_backends.Engine, "_check_fast", spy)
    Probe(_bn_net().eval(), progress=False).classification_images(stimuli.WhiteNoise((3, 8, 8)), 2)
    assert seen == [_backends.FAST_CHUNK]


def test_the_fast_copy_tie_tolerance_covers_its_measured_error():
    net = _bn_net().eval()
    eng = _backends.Engine(net, torch.device("cpu"), "eager", (3, 8, 8))
    assert eng.kind == "eager" and eng.fast_error is not None
    assert eng.tie_tolerance >= max(_backends.TIE_TOLERANCE, 4 * eng.fast_error)
    x = torch.rand(2000, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        got, _ = eng.forward(x, (3, 8, 8))
        assert torch.equal(got.argmax(1), net(x).argmax(1))


def test_tiny_logits_are_judged_in_the_models_own_scale():
    """An untrained net can have logits of 1e-9 (mobilenet_v3_small): not every row is a near-tie."""
    torch.manual_seed(0)
    net = models.MnistCNN().eval()
    with torch.no_grad():
        net.fc2.weight.mul_(1e-9)
        net.fc2.bias.mul_(1e-9)
    noise = stimuli.WhiteNoise((1, 28, 28))
    fast = probe.classification_images(net, noise, 2000, batch_size=500, seed=0, progress=False)
    plain = probe.classification_images(net, noise, 2000, batch_size=500, seed=0, fast="off", progress=False)
    assert fast.meta["fast_path"] == "eager"
    assert fast.meta["rechecked"] < 200  # with a unit of 1 all 2,000 were rechecked
    assert torch.equal(fast.count, plain.count) and torch.equal(fast.sums, plain.sums)


class MeanLogit(Estimator):
    """A new experiment in a few lines: the mean logit vector and the mean stimulus."""

    name = "mean_logit"

    def update(self, stimuli, outputs):
        return {"logits": outputs.double().sum(0), "x": stimuli.double().sum(0)}

    def finalize(self, sums, n, meta):
        return {"logits": sums["logits"] / n, "x": sums["x"] / n, "n": n, "meta": meta}


def test_a_new_estimator_gets_seeds_shards_and_checkpoints_for_free(tmp_path):
    W = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    model = Linear(W, b=[1.0, -1.0, 0.5])
    noise = stimuli.WhiteNoise((5,))
    p = Probe(model, batch_size=1000, progress=False)
    full = p.run(MeanLogit(noise), 10_000, seed=3)
    # the known answer: E[W x + b] = W 0.5 + b for U[0,1] noise
    assert torch.allclose(full["logits"], (W.double() @ torch.full((5,), 0.5, dtype=torch.float64)
                                           + torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)), atol=0.02)
    assert abs(float(full["x"].mean()) - 0.5) < 0.01
    parts = [p.run(MeanLogit(noise), 10_000, seed=3, shard=(k, 2)) for k in range(2)]
    assert parts[0]["n"] + parts[1]["n"] == 10_000
    merged = (parts[0]["logits"] * parts[0]["n"] + parts[1]["logits"] * parts[1]["n"]) / 10_000
    assert torch.allclose(merged, full["logits"], rtol=0, atol=1e-12)
    again = p.run(MeanLogit(noise), 10_000, seed=3, checkpoint=tmp_path / "c.pt")
    resumed = p.run(MeanLogit(noise), 10_000, seed=3, checkpoint=tmp_path / "c.pt")
    assert resumed["meta"]["resumed_batches"] == 10
    assert torch.equal(again["logits"], full["logits"]) and torch.equal(resumed["logits"], full["logits"])
    with pytest.raises(ValueError, match="Estimator"):
        p.run(lambda x: x, 10)


def test_standard_error_known_answer():
    """U[0,1] noise, one class: sem = sqrt(1/12) / sqrt(n) per pixel."""
    always0 = Linear(torch.zeros(2, 16), b=[1.0, 0.0])
    n = 20_000
    ci = probe.classification_images(always0, stimuli.WhiteNoise((16,)), n, seed=0, progress=False)
    want = math.sqrt(1 / 12) / math.sqrt(n)
    assert int(ci.count[0]) == n and torch.isnan(ci.sem[1]).all()  # fewer than 2 stimuli: NaN
    assert float((ci.sem[0] / want - 1).abs().max()) < 0.03  # the sample sd of 2e4 draws: within 1.5%
    # the per-pixel errors of the mean are of that size: z-scores spread like N(0, 1)
    z = (ci.mean[0] - 0.5) / ci.sem[0]
    assert float(z.abs().max()) < 5 and 0.5 < float(z.std()) < 1.6


def test_map_cosine_to_the_true_template_grows_with_n_as_the_closed_form():
    """Known answer 4 (book/methods.md): E cos(map, w) ~ [1 + (pi/2)(D/N) k]^(-1/2), k = 1 without internal noise."""
    D = 64
    w = torch.randn(D, generator=torch.Generator().manual_seed(0))
    model = Linear(w[None], squeeze=True)
    noise = stimuli.WhiteNoise((D,), "gaussian")
    for N in (250, 1000, 4000):
        cos = []
        for seed in range(12):
            ci = probe.classification_images(model, noise, N, seed=seed, batch_size=N, progress=False)
            cos.append(cosine(ci.mean[1] - ci.mean[0], w))
        rho = (1 + math.pi / 2 * D / N) ** -0.5
        assert probe.expected_cosine(N, D) == pytest.approx(rho)
        got = sum(cos) / len(cos)
        assert abs(got - rho) < 0.03, (N, got, rho)


def test_maps_from_one_stream_converge_to_the_largest_one_as_the_closed_form():
    """Fig. 4's measure: cos(map at N, map at N_max) = rho(N) / rho(N_max) for a linear observer,
    and the fitted k is 1 (no internal noise) or S^2 / (sigma^2 |w|^2) with internal noise."""
    D, ns = 64, [250, 500, 1000, 2000, 4000, 16000]
    w = torch.randn(D, generator=torch.Generator().manual_seed(0))
    for noisy, k_true in ((False, 1.0), (True, 2.0)):
        # internal noise as a 65th "pixel" the observer sees but the map ignores: S^2 = 2 sigma^2 |w|^2
        weights = torch.cat([w, w.norm()[None]]) if noisy else w
        model = Linear(weights[None], squeeze=True)
        p = Probe(model, batch_size=250, progress=False)
        cos = []
        for seed in range(8):
            snaps = p.classification_images(stimuli.WhiteNoise((len(weights),), "gaussian"), ns[-1],
                                            seed=seed, snapshots=ns)
            got_ns, c = probe.map_cosines({n: _first_pixels(r, D) for n, r in snaps.items()})
            assert got_ns == ns
            cos.append(c[:, 1])  # both classes carry the same map up to sign
        got = torch.stack(cos).mean(0).numpy()
        want = probe.expected_cosine(ns, D, k_true, reference=ns[-1])
        assert abs(got - want).max() < 0.03, (noisy, got, want)
        assert probe.fit_k(ns[:-1], got[:-1], D, reference=ns[-1]) == pytest.approx(k_true, rel=0.2)


def _first_pixels(ci, D):
    """The result restricted to its first D pixels (the stimulus the experimenter records)."""
    return probe.ClassificationImages(ci.sums[:, :D], ci.count, ci.n, ci.weighting, ci.meta, ci.sq[:, :D])


def test_confidence_weighting_with_unequal_logits_known_answer():
    """Logits (2 x0, 0, 0): class 0 wins when x0 > 0, with weight e^(2x0) / (e^(2x0) + 2)."""
    W = torch.zeros(3, 4)
    W[0, 0] = 2.0
    model = Linear(W, b=[0.0, 0.0, 0.0])
    noise = stimuli.WhiteNoise((4,), "gaussian")
    ci = probe.classification_images(model, noise, 4000, batch_size=1000, seed=5, weighting="confidence",
                                     progress=False)
    xs = torch.cat([noise.sample(1000, probe.batch_generator(5, i)) for i in range(4)]).double()
    win = xs[:, 0] > 0
    weight = torch.exp(2 * xs[:, 0]) / (torch.exp(2 * xs[:, 0]) + 2)
    assert int(ci.count[0]) == int(win.sum())
    want = (xs[win] * weight[win, None]).sum(0) / win.sum()
    assert torch.allclose(ci.mean[0], want, rtol=1e-12, atol=1e-12)


def test_from_responses_equals_the_probe_on_the_same_stimuli():
    W = torch.randn(4, 9, generator=torch.Generator().manual_seed(2))
    model = Linear(W)
    noise = stimuli.WhiteNoise((1, 3, 3))
    ci = probe.classification_images(model, noise, 3000, batch_size=1000, seed=1, progress=False)
    xs = torch.cat([noise.sample(1000, probe.batch_generator(1, i)) for i in range(3)])
    labels = model(xs).argmax(1)
    rec = probe.from_responses(xs, labels, num_classes=4)
    assert torch.equal(rec.count, ci.count)
    assert torch.allclose(rec.sums, ci.sums, rtol=0, atol=1e-9) and torch.allclose(rec.sem, ci.sem, atol=1e-12)
    logit_rec = probe.from_responses(xs, model(xs).detach(), weighting="confidence")
    conf = probe.classification_images(model, noise, 3000, batch_size=1000, seed=1, weighting="confidence",
                                       progress=False)
    assert torch.allclose(logit_rec.mean, conf.mean, rtol=0, atol=1e-9, equal_nan=True)
    with pytest.raises(ValueError, match="one response per stimulus"):
        probe.from_responses(xs, labels[:10])
    with pytest.raises(ValueError, match="needs logits"):
        probe.from_responses(xs, labels, weighting="confidence")


def test_cells_from_recorded_trials_give_eq1_of_a_linear_observer():
    """Known answer 1 (book/methods.md) on 'recorded' trials: a linear observer's answers, no model in the loop."""
    g = torch.Generator().manual_seed(0)
    N, D = 200_000, 8
    w = torch.zeros(D)
    w[:2] = torch.tensor([0.6, 0.8])
    n = torch.randn(N, D, generator=g)
    s = torch.randint(2, (N,), generator=g)
    r = ((n @ w) > 0).long()
    cells = binary.cells_from_responses(n, s, r)
    # signal ignored by this observer: each signal half gives 2 sqrt(2/pi) w; Eq. 1 sums two
    expected = 2 * 2 * math.sqrt(2 / math.pi) * w
    assert abs(float(cells.classification_image.norm()) / float(expected.norm()) - 1) < 0.03
    assert cosine(cells.classification_image, w) > 0.999
    assert cells.n == N and int(cells.count.sum()) == N


def test_merge_refuses_other_kinds_shapes_weightings_stimuli_and_repeated_batches():
    model = Linear(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    u, gauss = stimuli.WhiteNoise((4,)), stimuli.WhiteNoise((4,), "gaussian")
    a = probe.classification_images(model, u, 2000, batch_size=500, seed=0, progress=False, shard=(0, 2))
    b = probe.classification_images(model, u, 2000, batch_size=500, seed=0, progress=False, shard=(1, 2))
    ab = a.merge(b)
    assert ab.meta["batches"] == [0, 1, 2, 3] and ab.n == 2000
    assert ab.meta["rechecked"] == a.meta["rechecked"] + b.meta["rechecked"]
    with pytest.raises(ValueError, match="same stimuli twice"):
        a.merge(a)
    with pytest.raises(ValueError, match="weighting"):
        a.merge(probe.classification_images(model, u, 500, seed=1, progress=False, weighting="confidence"))
    with pytest.raises(ValueError, match="stimulus"):
        a.merge(probe.classification_images(model, gauss, 500, seed=1, progress=False))
    with pytest.raises(ValueError, match="shape"):
        a.merge(probe.classification_images(Linear(torch.randn(5, 4)), u, 500, seed=1, progress=False))
    cells = binary.cells_from_responses(torch.rand(10, 4), torch.zeros(10), torch.ones(10))
    with pytest.raises(ValueError, match="cannot merge"):
        a.merge(cells)
    other_seed = probe.classification_images(model, u, 500, batch_size=500, seed=7, progress=False)
    mixed = a.merge(other_seed)  # independent runs combine; the meta keeps both
    assert mixed.n == 1500 and [r["seed"] for r in mixed.meta["runs"]] == [0, 7]


def test_results_save_and_load_with_a_format_version(tmp_path):
    model = Linear(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    ci = probe.classification_images(model, stimuli.WhiteNoise((4,)), 900, seed=0, progress=False)
    ci.save(tmp_path / "ci.pt")
    back = probe.ClassificationImages.load(tmp_path / "ci.pt")
    for f in ("sums", "count", "sq"):
        assert torch.equal(getattr(back, f), getattr(ci, f))
    assert (back.n, back.weighting, back.stimulus, back.meta) == (ci.n, ci.weighting, ci.stimulus, ci.meta)
    cells = binary.cells_from_responses(torch.rand(10, 4), torch.zeros(10), torch.ones(10))
    cells.save(tmp_path / "cells.pt")
    assert torch.equal(binary.StimulusResponseCells.load(tmp_path / "cells.pt").count, cells.count)
    with pytest.raises(ValueError, match="not 'classification_images'"):
        probe.ClassificationImages.load(tmp_path / "cells.pt")
    torch.save({"sums": torch.zeros(1)}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format"):
        probe.ClassificationImages.load(tmp_path / "old.pt")


def test_a_shard_without_batches_returns_zero_sums_of_the_right_shape():
    model = Linear(torch.randn(3, 4))
    ci = probe.classification_images(model, stimuli.WhiteNoise((4,)), 100, batch_size=100, seed=0,
                                     progress=False, shard=(1, 2))
    assert ci.n == 0 and ci.sums.shape == (3, 4) and int(ci.count.sum()) == 0


def test_probe_rejects_bad_settings():
    with pytest.raises(ValueError, match="fast must be"):
        Probe(Linear(torch.eye(3)), fast="yes")
    with pytest.raises(ValueError, match="batch_size"):
        Probe(Linear(torch.eye(3)), batch_size=0)
    assert engine.RESULT_FORMAT == 3


def test_snapshots_are_the_first_n_stimuli_of_one_stream():
    """Fig. 4's one pass: the maps at N equal, bitwise, runs of N stimuli; shards merge per snapshot."""
    W = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    p = Probe(Linear(W), batch_size=500, progress=False)
    noise = stimuli.WhiteNoise((12,))
    snaps = p.classification_images(noise, 7_250, seed=5, snapshots=[500, 3000, 7000])
    assert sorted(snaps) == [500, 3000, 7000, 7250]  # n_samples (not a multiple) is the last one
    for n, ci in snaps.items():
        alone = p.classification_images(noise, n, seed=5)
        assert ci.n == n == int(ci.count.sum()) and ci.meta["n_samples"] == n
        assert torch.equal(ci.sums, alone.sums) and torch.equal(ci.sq, alone.sq)
    parts = [p.classification_images(noise, 7_250, seed=5, snapshots=[500, 3000], shard=(k, 3))
             for k in range(3)]
    for n in (500, 3000, 7250):
        merged = parts[0][n].merge(parts[1][n]).merge(parts[2][n])
        assert merged.n == n and torch.equal(merged.count, snaps[n].count)
        assert torch.allclose(merged.sums, snaps[n].sums, rtol=0, atol=1e-12)
    for bad in ([750], [0], [8000], ["1000"]):
        with pytest.raises(ValueError, match="snapshot"):
            p.classification_images(noise, 7_250, seed=5, snapshots=bad)


def test_share_weighted_cosine():
    cos = torch.tensor([[0.5, float("nan"), 1.0], [0.2, 0.4, 0.6]], dtype=torch.float64)
    got = probe.share_weighted(cos, torch.tensor([3, 1, 1]))
    assert got[0] == pytest.approx((0.5 * 3 + 1.0) / 4)  # the NaN class drops out of its row
    assert got[1] == pytest.approx((0.6 + 0.4 + 0.6) / 5)
    assert math.isnan(probe.share_weighted(torch.full((1, 2), float("nan")), torch.ones(2))[0])


# ---------------------------------------------------------------- issue 21: nothing silently wrong


def test_merge_refuses_overlapping_streams_and_other_models_but_joins_disjoint_shards():
    """A result records its stream (seed, batch size, stimulus, batches) and its model's fingerprint:
    merges refuse to count a batch twice, whatever n_samples, and to mix models."""
    model = Linear(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    u = stimuli.WhiteNoise((4,))
    p = Probe(model, batch_size=500, progress=False)
    full = p.classification_images(u, 5000, seed=0)
    parts = [p.classification_images(u, 5000, seed=0, shard=(k, 3)) for k in range(3)]
    for order in ((0, 1, 2), (2, 0, 1), (1, 2, 0)):
        m = parts[order[0]].merge(parts[order[1]]).merge(parts[order[2]])
        assert m.meta["batches"] == list(range(10)) and m.meta["model"] == full.meta["model"]
        assert torch.equal(m.count, full.count) and torch.equal(m.sums, full.sums)  # U[0,1] sums: exact
    shorter = p.classification_images(u, 3000, seed=0)  # batches 0-5 are full's batches 0-5
    with pytest.raises(ValueError, match="same stimuli twice"):
        full.merge(shorter)
    with pytest.raises(ValueError, match="same stimuli twice"):  # also inside a merge of runs
        p.classification_images(u, 500, seed=7).merge(parts[0]).merge(shorter)
    tail = p.classification_images(u, 3000, seed=0, shard=(1, 2))  # batches 1, 3, 5: disjoint from 0, 2, 4
    even = p.classification_images(u, 5000, seed=0, shard=(0, 2))
    both = even.merge(tail)
    assert both.n == even.n + tail.n and [r["batches"] for r in both.meta["runs"]] == [[0, 2, 4, 6, 8], [1, 3, 5]]
    other = Linear(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match=r"different models \(fingerprint [0-9a-f]{12}… vs [0-9a-f]{12}…\)"):
        full.merge(probe.classification_images(other, u, 500, seed=1, progress=False))
    assert full.merge(p.classification_images(u, 500, seed=1)).n == 5500  # another seed: another stream


def test_a_saved_result_keeps_its_fingerprint_and_stream(tmp_path):
    model = Linear(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    u = stimuli.WhiteNoise((4,))
    a, b = (probe.classification_images(model, u, 2000, batch_size=500, seed=0, shard=(k, 2), progress=False)
            for k in range(2))
    a.save(tmp_path / "a.pt")
    back = probe.ClassificationImages.load(tmp_path / "a.pt")
    assert back.meta["model"] == a.meta["model"] and len(a.meta["model"]) == 64
    assert torch.equal(back.merge(b).count, a.merge(b).count)
    with pytest.raises(ValueError, match="same stimuli twice"):
        back.merge(a)


class _Doubled(torch.nn.Module):
    """Linear's parameters under another forward: same weights, other code."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float32), requires_grad=False)
        self.b = torch.nn.Parameter(torch.zeros(self.w.shape[0]), requires_grad=False)

    def forward(self, x):
        return 2 * (x.flatten(1) @ self.w.T + self.b)


def test_the_model_fingerprint_covers_code_weights_and_every_buffer():
    from wna import _stream
    w = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    fp = _stream.model_fingerprint
    assert fp(Linear(w)) == fp(Linear(w.clone())) != fp(Linear(w + 1e-6))
    assert fp(Linear(w)) != fp(_Doubled(w))  # same parameters, other code
    a, b = Linear(w), Linear(w)
    for m in (a, b):
        m.register_buffer("scale", torch.ones(1), persistent=False)  # not in the state dict
    b.scale.fill_(2.0)
    assert fp(a) != fp(b)
    u = stimuli.WhiteNoise((4,))
    ra = probe.classification_images(Linear(w), u, 1000, seed=0, progress=False)
    rb = probe.classification_images(_Doubled(w), u, 1000, seed=1, progress=False)
    assert torch.equal(ra.count, probe.classification_images(Linear(w), u, 1000, seed=0, progress=False).count)
    with pytest.raises(ValueError, match="different models"):  # same decisions, other model
        ra.merge(rb)


def test_shard_merges_hold_the_documented_rounding_bound():
    """Counts merge bitwise, U[0,1] sums too (no addition rounds); sums of squares differ from the
    single-process result in the last bits, within n_batches * 2^-52 of the entry (Result.merge)."""
    torch.manual_seed(0)
    net = models.MnistCNN().eval()
    for noise in (stimuli.WhiteNoise((1, 28, 28)), stimuli.WhiteNoise((1, 28, 28), "gaussian")):
        p = Probe(net, batch_size=1000, progress=False)
        full = p.classification_images(noise, 8000, seed=0)
        parts = [p.classification_images(noise, 8000, seed=0, shard=(k, 3)) for k in range(3)]
        m = parts[0].merge(parts[1]).merge(parts[2])
        bound = 8 * 2.0 ** -52
        assert torch.equal(m.count, full.count)
        assert float(((m.sq - full.sq).abs() - bound * full.sq).max()) <= 0
        # signed sums: within the bound times the sum of |x| <= sqrt(count * sum of squares)
        l1 = (full.sq * full._per_class(full.count)).sqrt()
        assert float(((m.sums - full.sums).abs() - bound * l1).max()) <= 0
        if noise.distribution == "uniform":
            assert torch.equal(m.sums, full.sums)


def test_probabilities_option_equals_the_logits_model():
    """A softmax or sigmoid head read with outputs='probabilities' decides as the logits do."""
    W = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    logits = Linear(W, b=[0.2, -0.1, 0.0])
    noise = stimuli.WhiteNoise((6,), "gaussian")
    args = dict(n_samples=4000, batch_size=1000, seed=2, progress=False)
    want = probe.classification_images(logits, noise, **args)
    softmax = torch.nn.Sequential(logits, torch.nn.Softmax(1))
    with pytest.raises(ValueError, match="look like probabilities"):
        probe.classification_images(softmax, noise, **args)
    got = probe.classification_images(softmax, noise, outputs="probabilities", **args)
    assert torch.equal(got.count, want.count) and torch.equal(got.sums, want.sums)
    assert got.meta["model"] != want.meta["model"]  # read otherwise: another model
    conf = probe.classification_images(softmax, noise, outputs="probabilities", weighting="confidence", **args)
    conf_want = probe.classification_images(logits, noise, weighting="confidence", **args)
    assert torch.allclose(conf.sums, conf_want.sums, rtol=1e-6)
    binary_logit = Linear(W[:1], squeeze=True)
    sigmoid = torch.nn.Sequential(binary_logit, torch.nn.Sigmoid())
    want = probe.classification_images(binary_logit, noise, **args)
    with pytest.raises(ValueError, match="looks like a probability"):
        probe.classification_images(sigmoid, noise, **args)
    got = probe.classification_images(sigmoid, noise, outputs="probabilities", **args)
    assert torch.equal(got.count, want.count) and torch.equal(got.sums, want.sums)
    assert 1000 < int(want.count[0]) < 3000  # a real split, which the sigmoid read as logits loses:
    assert int(probe.classification_images(sigmoid, noise, outputs="logits", **args).count[1]) == 4000


def test_logits_that_happen_to_lie_in_0_1_pass_when_a_linear_layer_made_them():
    """The one-column rule's false alarm: a linear observer whose logits all lie in [0, 1] (and an
    untrained one-logit CNN whose first batch does) is cleared by its last operation; without an
    autograd graph to show it, outputs='logits' declares it."""
    w = torch.full((1, 4), 0.2)
    observer = Linear(w, squeeze=True)  # logits 0.2 * sum(x) in [0, 0.8] for U[0, 1] noise
    u = stimuli.WhiteNoise((4,))
    ci = probe.classification_images(observer, u, 1000, seed=0, progress=False)
    assert int(ci.count[1]) == 1000  # every logit > 0: class 1

    def opaque(x):
        with torch.no_grad():
            return observer(x)

    with pytest.raises(ValueError, match="no autograd graph.*pass outputs='logits'"):
        probe.classification_images(opaque, u, 1000, seed=0, progress=False)
    declared = probe.classification_images(opaque, u, 1000, seed=0, progress=False, outputs="logits")
    assert torch.equal(declared.sums, ci.sums)
    torch.manual_seed(0)
    net = models.MnistCNN(num_classes=1).eval()
    with torch.no_grad():
        net.fc2.bias.fill_(0.3)  # every logit of a batch in (0, 0.5]: suspect, cleared by fc2
        net.fc2.weight.mul_(1e-3)
    noise = stimuli.WhiteNoise((1, 28, 28))
    x = noise.sample(500, probe.batch_generator(0, 0))
    assert bool(((net(x) > 0) & (net(x) <= 0.5)).all())
    assert int(probe.classification_images(net, noise, 500, progress=False).count[1]) == 500


def test_seeds_of_numpy_integer_types_are_the_same_seed():
    import numpy as np
    model = Linear(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    u = stimuli.WhiteNoise((4,))
    a = probe.classification_images(model, u, 1000, seed=3, progress=False)
    b = probe.classification_images(model, u, 1000, seed=np.int64(3), progress=False)
    assert torch.equal(a.sums, b.sums) and b.meta["seed"] == 3 and type(b.meta["seed"]) is int
