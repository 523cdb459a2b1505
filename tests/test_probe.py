"""Known answers (the book's Methods page, book/methods.md) and the contract of wna.probe."""

import math
import shutil

import pytest
import torch

from conftest import Linear, cosine
from wna import _backends, engine, plots, probe, stimuli, templates


def test_binary_linear_observer_magnitude_known_answer():
    """Known answer 1 at c = 0, no internal noise: E[n|r=1] - E[n|r=0] = 2*sqrt(2/pi) sigma^2 w / S.

    N = 400k Gaussian stimuli in D = 16 dimensions: the standard error of each
    class mean is sigma/sqrt(N/2), so the norm of the difference's error is
    about 2 * sqrt(D/N) = 1.3% of its expected norm 1.596 (sigma = |w| = 1).
    """
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(16, generator=gen)
    w /= w.norm()
    sigma = 1.0
    model = Linear(w[None], squeeze=True)
    noise = stimuli.WhiteNoise((16,), "gaussian", mean=0.0, std=sigma)
    ci = probe.classification_images(model, noise, 400_000, batch_size=8192, seed=1, progress=False)
    assert ci.count.sum() == 400_000 and ci.num_classes == 2
    diff = ci.mean[1] - ci.mean[0]
    S = sigma * float(w.norm())
    expected = 2 * math.sqrt(2 / math.pi) * sigma ** 2 * w / S
    assert cosine(diff, w) > 0.999
    assert abs(float(diff.norm()) / float(expected.norm()) - 1) < 0.03
    # swapping the responses negates the map
    flipped = probe.classification_images(Linear(-w[None], squeeze=True), noise, 400_000,
                                          batch_size=8192, seed=1, progress=False)
    assert torch.allclose(flipped.mean[1] - flipped.mean[0], -diff, atol=1e-12)


def test_binary_observer_with_bias_matches_closed_form():
    """Known answer 1 with criterion c != 0 (logit w.n - c)."""
    w = torch.zeros(8)
    w[0], w[3] = 0.6, 0.8
    c = 0.5
    model = Linear(w[None], b=[-c], squeeze=False)  # (B, 1) output: binary observer too
    noise = stimuli.WhiteNoise((8,), "gaussian")
    ci = probe.classification_images(model, noise, 400_000, batch_size=10_000, seed=2, progress=False)
    phi = math.exp(-c * c / 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + math.erf(c / math.sqrt(2)))
    expected = w * phi / (Phi * (1 - Phi))
    diff = ci.mean[1] - ci.mean[0]
    assert abs(float(diff.norm()) / float(expected.norm()) - 1) < 0.03
    assert cosine(diff, w) > 0.999
    assert abs(float(ci.frequency[1]) - (1 - Phi)) < 0.005


def test_argmax_map_points_along_w_minus_mean_row():
    """Known answer 2: class k's map points along w_k - mean row, not along w_k."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(20, 4, generator=gen))
    W = q.T + 2.0 * torch.ones(4, 20) / math.sqrt(20)  # shared component: w_k and w_k - w̄ differ
    noise = stimuli.WhiteNoise((20,), "gaussian")
    ci = probe.classification_images(Linear(W), noise, 200_000, batch_size=5000, seed=0, progress=False)
    centred = W - W.mean(0)
    for k in range(4):
        assert cosine(ci.mean[k], centred[k]) > 0.99
        expected = cosine(W[k], centred[k])  # about 0.45: far from w_k itself
        assert expected < 0.6
        assert abs(cosine(ci.mean[k], W[k]) - expected) < 0.03
    # the class means of zero-mean noise add up to zero, weighted by frequency
    total = (ci.sums.sum(0) / ci.n)
    assert float(total.abs().max()) < 0.01


def test_uniform_noise_linear_map_direction():
    """U[0,1] noise (the paper's): the map of a binary linear observer still points along w."""
    w = torch.linspace(-1, 1, 49)
    model = Linear(w[None], b=[-float(w.sum()) * 0.5], squeeze=True)  # threshold at the noise mean
    ci = probe.classification_images(model, stimuli.WhiteNoise((1, 7, 7)), 100_000, seed=3,
                                     progress=False)
    assert cosine(ci.mean[1] - ci.mean[0], w) > 0.99
    assert abs(float(ci.mean.mean()) - 0.5) < 0.01


def test_same_seed_bitwise_and_other_seed_differs():
    model = Linear(torch.randn(10, 49, generator=torch.Generator().manual_seed(0)))
    noise = stimuli.WhiteNoise((1, 7, 7))
    a = probe.classification_images(model, noise, 10_001, batch_size=1000, seed=4, progress=False)
    b = probe.classification_images(model, noise, 10_001, batch_size=1000, seed=4, progress=False)
    c = probe.classification_images(model, noise, 10_001, batch_size=1000, seed=5, progress=False)
    assert torch.equal(a.sums, b.sums) and torch.equal(a.count, b.count)
    assert not torch.equal(a.sums, c.sums)
    assert a.n == 10_001 and int(a.count.sum()) == 10_001
    assert a.mean.dtype == torch.float64 and a.count.dtype == torch.int64


def test_shards_merge_into_the_single_process_result(tmp_path):
    model = Linear(torch.randn(10, 49, generator=torch.Generator().manual_seed(1)))
    noise = stimuli.WhiteNoise((1, 7, 7))
    full = probe.classification_images(model, noise, 25_500, batch_size=1000, seed=9, progress=False)
    parts = [probe.classification_images(model, noise, 25_500, batch_size=1000, seed=9,
                                         progress=False, shard=(k, 3)) for k in range(3)]
    assert sum(p.n for p in parts) == 25_500
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert torch.equal(merged.count, full.count)
    assert merged.n == full.n
    ok = full.count > 0
    assert torch.allclose(merged.mean[ok], full.mean[ok], rtol=0, atol=1e-12)
    # save / load round trip
    merged.save(tmp_path / "ci.pt")
    back = probe.ClassificationImages.load(tmp_path / "ci.pt")
    assert torch.equal(back.sums, merged.sums) and torch.equal(back.count, merged.count)
    assert back.n == merged.n and back.weighting == merged.weighting
    with pytest.raises(ValueError):
        full.merge(probe.classification_images(model, noise, 10, seed=0, progress=False,
                                               weighting="confidence"))


def test_empty_class_is_nan_not_zero():
    W = torch.zeros(3, 4)
    W[0, 0] = 1.0
    W[1, 0] = -1.0
    b = torch.tensor([0.0, 0.0, -100.0])  # class 2 never wins
    ci = probe.classification_images(Linear(W, b), stimuli.WhiteNoise((4,), "gaussian"), 5000,
                                     seed=0, progress=False)
    assert ci.count[2] == 0
    assert torch.isnan(ci.mean[2]).all()
    assert torch.isfinite(ci.mean[:2]).all()


def test_confidence_weighting_known_answer():
    """Constant logits over 4 classes: max softmax is 1/4, so the weighted mean is 1/4 of the plain one."""
    W = torch.zeros(4, 9)
    b = torch.tensor([1.0, 1.0, 1.0, 1.0])  # ties: argmax picks class 0
    noise = stimuli.WhiteNoise((9,))
    plain = probe.classification_images(Linear(W, b), noise, 3000, seed=0, progress=False)
    conf = probe.classification_images(Linear(W, b), noise, 3000, seed=0, progress=False,
                                       weighting="confidence")
    assert torch.equal(plain.count, conf.count)
    assert torch.allclose(conf.mean[0], plain.mean[0] / 4, atol=1e-12)


def test_num_classes_given_and_checked():
    model = Linear(torch.randn(3, 4))
    noise = stimuli.WhiteNoise((4,))
    ci = probe.classification_images(model, noise, 100, seed=0, progress=False, num_classes=3)
    assert ci.num_classes == 3
    with pytest.raises(ValueError, match="num_classes"):
        probe.classification_images(model, noise, 100, seed=0, progress=False, num_classes=5)


@pytest.mark.parametrize("bad, match", [
    (dict(stimulus=stimuli.WhiteNoise((5,))), "rejected stimuli of shape"),
    (dict(model=lambda x: x.reshape(len(x), 2, 2)), "output must be"),
    (dict(model=lambda x: torch.full((len(x), 3), float("nan"))), "non-finite"),
    (dict(model=lambda x: (x, x)), "tensor of logits"),
    (dict(n_samples=0), "n_samples"),
    (dict(n_samples=2.5), "n_samples"),
    (dict(batch_size=0), "batch_size"),
    (dict(weighting="softmax"), "weighting"),
    (dict(shard=(2, 2)), "shard"),
])
def test_bad_input_gives_clear_value_error(bad, match):
    args = dict(model=Linear(torch.randn(3, 4)), stimulus=stimuli.WhiteNoise((4,)), n_samples=100,
                seed=0, progress=False)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        probe.classification_images(**args)


def test_model_training_flag_is_restored():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(4, 3))
    model.train()
    a = probe.classification_images(model, stimuli.WhiteNoise((4,)), 2000, seed=0, progress=False)
    b = probe.classification_images(model, stimuli.WhiteNoise((4,)), 2000, seed=0, progress=False)
    assert torch.equal(a.sums, b.sums)  # dropout was off during probing
    assert model.training


def test_template_accuracy_known_answers():
    gen = torch.Generator().manual_seed(0)
    templates = torch.rand(5, 1, 6, 6, generator=gen)
    labels = torch.arange(5).repeat(4)
    images = templates[labels] * torch.linspace(0.5, 3.0, 20)[:, None, None, None]  # scale-free
    acc, conf = probe.template_accuracy(templates, images, labels, rule="cosine")
    assert acc == 1.0 and torch.equal(conf, torch.diag(torch.full((5,), 4)))
    # an empty (NaN) template is never chosen; its class is always wrong
    t2 = templates.clone()
    t2[3] = float("nan")
    for rule in ("dot", "cosine"):
        acc2, conf2 = probe.template_accuracy(t2, images, labels, rule=rule)
        assert conf2[:, 3].sum() == 0 and int(conf2.sum()) == 20
    assert probe.template_accuracy(t2, images, labels, rule="cosine")[0] == pytest.approx(16 / 20)
    # cosine ignores a template's scale; the raw dot product does not
    t3 = templates.clone()
    t3[0] *= 100
    assert probe.template_accuracy(t3, images, labels, rule="cosine")[0] == 1.0
    acc_dot, conf_dot = probe.template_accuracy(t3, images, labels, rule="dot")
    assert acc_dot == pytest.approx(4 / 20) and conf_dot[:, 0].sum() == 20  # the scaled one wins all
    with pytest.raises(ValueError):
        probe.template_accuracy(templates, images[:, :, :5], labels)
    with pytest.raises(ValueError, match="rule"):
        probe.template_accuracy(templates, images, labels, rule="euclid")


def test_dot_rule_hand_computed():
    """Two templates, two images: argmax of the raw dot product, worked out by hand."""
    t = torch.tensor([[1.0, 0.0], [0.6, 0.6]])
    x = torch.tensor([[1.0, 0.1], [0.5, 0.6]])
    # image 0: 1.0 vs 0.66 -> 0; image 1: 0.5 vs 0.66 -> 1. Cosine agrees here; scale t[1] by 0.5:
    assert templates.match(t, x, "dot").tolist() == [0, 1]
    t[1] *= 0.5  # 0.5 vs 0.33 -> image 1 now goes to 0 under dot, still 1 under cosine
    assert templates.match(t, x, "dot").tolist() == [0, 0]
    assert templates.match(t, x, "cosine").tolist() == [0, 1]


def test_minmax_and_assigned_classes():
    maps = torch.tensor([[[2.0, 4.0], [6.0, 10.0]], [[float("nan")] * 2] * 2])
    mm = probe.minmax(maps)
    assert torch.allclose(mm[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]], dtype=torch.float64))
    assert torch.isnan(mm[1]).all()
    W = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    own = probe.assigned_classes(Linear(W), torch.stack([torch.tensor([[0.0, 1.0], [0, 0]]),
                                                         maps[1].float()]))
    assert own.tolist() == [1, -1]


def test_class_means():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]])
    y = torch.tensor([0, 0, 1])
    assert probe.class_means(x, y).tolist() == [[2.0, 3.0], [10.0, 20.0]]


def test_fast_path_rechecks_exact_ties_with_the_plain_model():
    from wna import models
    model = models.MnistCNN().eval()
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc2.bias.zero_()  # every logit 0: every row is a tie
    eng = _backends.Engine(model, torch.device("cpu"), fast=True)
    x = torch.rand(300, 1, 28, 28)
    with torch.inference_mode():
        out, rechecked = eng.forward(x, (1, 28, 28))
    assert rechecked == 300
    assert torch.equal(out.argmax(1), torch.zeros(300, dtype=torch.long))


@pytest.mark.parametrize("n", [3 * 512, 12 * 512])  # fewer batches than 2 per thread, and more
def test_result_does_not_depend_on_the_number_of_threads(n):
    """Batches run in parallel, one per thread, but are added in batch order: bitwise the same."""
    from wna import models
    torch.manual_seed(0)
    model = models.MnistCNN().eval()
    noise = stimuli.WhiteNoise((1, 28, 28))
    threads = torch.get_num_threads()
    results = {}
    try:
        for k in (1, 2, 3):
            torch.set_num_threads(k)
            for w in ("none", "confidence"):
                results[k, w] = probe.classification_images(model, noise, n, batch_size=512, seed=4,
                                                            weighting=w, progress=False)
    finally:
        torch.set_num_threads(threads)
    for w in ("none", "confidence"):
        one = results[1, w]
        assert one.n == n and int(one.count.sum()) == n
        for k in (2, 3):
            assert torch.equal(results[k, w].count, one.count)
            assert torch.equal(results[k, w].sums, one.sums)
    assert torch.get_num_threads() == threads


def test_in_order_yields_every_result_in_submission_order():
    import random
    import time
    from concurrent.futures import ThreadPoolExecutor

    def slow_square(i):
        time.sleep(random.Random(i).random() * 0.01)  # finish out of order
        return i * i

    with ThreadPoolExecutor(3) as pool:
        for n, ahead in ((0, 2), (1, 4), (10, 1), (25, 4)):
            assert list(_backends.in_order(pool, slow_square, range(n), ahead)) == [i * i for i in range(n)]


def test_fast_must_be_true_false_compile_or_onnx():
    with pytest.raises(ValueError, match="fast must be"):
        probe.classification_images(Linear(torch.eye(3)), stimuli.WhiteNoise((3,)), 10, fast="yes")


def test_a_failed_compile_falls_back_to_the_eager_fast_path(monkeypatch):
    from wna import models

    def broken(*a, **k):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    model = models.MnistCNN().eval()
    noise = stimuli.WhiteNoise((1, 28, 28))
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        ci = probe.classification_images(model, noise, 600, batch_size=300, progress=False, fast="compile")
    plain = probe.classification_images(model, noise, 600, batch_size=300, progress=False, fast=False)
    assert ci.meta["fast"] and not ci.meta["compiled"]
    assert torch.equal(ci.count, plain.count)


@pytest.mark.slow
def test_the_onnx_model_matches_the_plain_model_and_takes_only_float32():
    pytest.importorskip("onnxruntime")
    from wna import models
    torch.manual_seed(0)
    model = models.MnistCNN().eval()
    x = torch.rand(300, 1, 28, 28)
    onnx = _backends.OnnxModel(model, x[:256])
    with torch.inference_mode():
        want = model(x)
    got = onnx(x)  # another batch size than exported with
    assert got.shape == want.shape and (got - want).abs().max() < 1e-5
    assert not torch.equal(got, torch.zeros_like(got))
    with pytest.raises(TypeError, match="float32"):
        onnx(x.double())


def test_a_failed_onnx_export_falls_back_to_the_eager_fast_path(monkeypatch):
    from wna import models

    def broken(*a, **k):
        raise RuntimeError("cannot export this")

    monkeypatch.setattr(torch.onnx, "export", broken)
    model = models.MnistCNN().eval()
    noise = stimuli.WhiteNoise((1, 28, 28))
    with pytest.warns(RuntimeWarning, match="ONNX export or onnxruntime failed"):
        ci = probe.classification_images(model, noise, 600, batch_size=300, progress=False, fast="onnx")
    plain = probe.classification_images(model, noise, 600, batch_size=300, progress=False, fast=False)
    assert ci.meta["fast_path"] == "eager"
    assert torch.equal(ci.count, plain.count) and torch.equal(ci.sums, plain.sums)


class LayoutSensitive(torch.nn.Module):
    """A (contrived) model whose output depends on the memory layout of its input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        out = self.conv(x).flatten(1)[:, :5]
        return out if x.is_contiguous() else -out


def test_a_fast_path_that_disagrees_with_the_plain_model_is_dropped():
    torch.manual_seed(0)
    model = LayoutSensitive().eval()
    noise = stimuli.WhiteNoise((3, 8, 8))
    with pytest.warns(RuntimeWarning, match="disagrees"):
        ci = probe.classification_images(model, noise, 2000, batch_size=500, progress=False)
    plain = probe.classification_images(model, noise, 2000, batch_size=500, progress=False, fast=False)
    assert not ci.meta["fast"]
    assert torch.equal(ci.count, plain.count)


def test_on_a_gpu_non_finite_outputs_are_caught_after_the_loop():
    """The GPU path checks for NaN/inf without waiting inside the loop; simulated here on the CPU."""
    bad = Linear(torch.tensor([[float("nan"), 1.0], [1.0, 1.0]]))
    eng = _backends.Engine(bad, torch.device("cpu"), fast=False)
    eng._lazy, eng._nonfinite = True, torch.zeros((), dtype=torch.bool)  # what a CUDA device sets
    seen = []

    def work(i, split):
        out, _ = eng.forward(torch.rand(4, 2), (2,))  # no error here ...
        seen.append(i)
        return out

    with pytest.raises(ValueError, match="non-finite"):
        list(eng.map(work, range(3)))  # ... but at the end of the loop
    assert seen == [0, 1, 2]


def test_class_sums_in_row_blocks_equal_the_direct_float64_sums():
    g = torch.Generator().manual_seed(0)
    n = 2 * engine.SUM_ROWS + 37  # three blocks, the last short
    x = torch.rand(n, 5, generator=g)
    labels = torch.randint(3, (n,), generator=g)
    w = torch.rand(n, generator=g, dtype=torch.float64)
    xd = x.double()
    want = torch.stack([(xd[labels == k] * w[labels == k, None]).sum(0) for k in range(3)])
    sums, sq = engine.class_sums(x, labels, 3, w, squares="total")
    assert torch.allclose(sums, want, rtol=1e-13, atol=0)
    assert torch.allclose(sq, (xd * xd).sum(0), rtol=1e-13, atol=0)
    assert torch.allclose(engine.class_sums(x, labels, 3),
                          torch.stack([xd[labels == k].sum(0) for k in range(3)]), rtol=1e-13, atol=0)


def test_rms_and_contrast_known_answers():
    """U[0,1] noise: the RMS maps, squared and weighted by the class counts, give E[x^2] = 1/3
    per pixel; the contrasts, weighted by the counts, add up to zero (each class's mean minus
    the mean of all stimuli)."""
    W = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    model = Linear(W, b=-0.5 * W.sum(1))  # logits W (x - 0.5): the classes share the noise evenly
    ci = probe.classification_images(model, stimuli.WhiteNoise((16,)), 30_000, seed=1, progress=False)
    assert (ci.count > 1000).all()
    second_moment = (ci.count[:, None] * ci.rms**2).sum(0) / ci.n
    assert float((second_moment - 1 / 3).abs().max()) < 0.01  # 6 standard errors
    assert float((ci.rms**2 - ci.mean**2).min()) >= 0  # RMS >= |mean| per class and pixel
    weighted = (ci.contrast * ci.count[:, None].double()).sum(0)
    assert float(weighted.abs().max()) < 1e-9
    # each class's contrast points along its weight row minus the mean row (known answer 2)
    for c in range(3):
        want = W[c] - W.mean(0)
        got = ci.contrast[c].float()
        assert torch.nn.functional.cosine_similarity(got, want, dim=0) > 0.9


def test_class_rms_known_answers():
    # constant images: the RMS of a constant is the constant
    x = torch.cat([torch.full((3, 2, 2), 0.25), torch.full((2, 2, 2), 0.8)])
    y = torch.tensor([0, 0, 0, 1, 1])
    assert torch.allclose(templates.class_rms(x, y), torch.tensor([0.25, 0.8]).double()[:, None, None]
                          .expand(2, 2, 2))
    # by hand: sqrt((1 + 9) / 2) and sqrt((4 + 16) / 2); the mean would be 2 and 3
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    rms = templates.class_rms(x, torch.tensor([0, 0]))
    assert torch.allclose(rms, torch.tensor([[5.0, 10.0]], dtype=torch.float64).sqrt())
    assert x.tolist() == [[1.0, -2.0], [3.0, 4.0]]  # the caller's images are not squared in place


def test_variants_lists_every_scaling_and_rule():
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(3, 4, generator=gen)
    labels = torch.arange(3).repeat(2)
    out = templates.variants({"t": t}, t[labels] * 2, labels)
    assert list(out) == [("t", "raw", "dot"), ("t", "raw", "cosine"), ("t", "min-max", "dot"),
                         ("t", "min-max", "cosine")]
    assert out["t", "raw", "cosine"][0] == 1.0  # scaled copies of the templates themselves
    acc, conf = templates.template_accuracy(templates.minmax(t), t[labels] * 2, labels, "dot")
    assert out["t", "min-max", "dot"][0] == acc and torch.equal(out["t", "min-max", "dot"][1], conf)
    with pytest.raises(ValueError, match="scalings"):
        templates.variants({"t": t}, t, torch.arange(3), scalings=("zscore",))


def test_cifar10_mean_image_templates_give_the_papers_number(cifar10_available):
    """§3.1's 28.69% (Fig. 3B): cosine with the per-class RMS training images, not min-max
    normalised (the released code's rule; book/methods.md). The JPEG mirror gives 2,858 of 10,000;
    raw dot collapses to chance."""
    from wna import data
    x, y = data.cifar10(train=True)
    xt, yt = data.cifar10(train=False)
    rms = templates.class_rms(x, y, 10)
    acc, conf = templates.template_accuracy(rms, xt, yt, rule="cosine")
    if data.cifar10_source() == "mirror-jpeg-q75":
        assert int(conf.trace()) == 2858
    else:  # the official images: the paper's number within what the JPEG error moved it
        assert acc == pytest.approx(0.2869, abs=0.005)
    assert templates.template_accuracy(rms, xt, yt, rule="dot")[0] < 0.11


def test_map_titles_with_class_names():
    names = ["cat", "dog", "frog"]
    assert plots.map_titles([5, 0, 15], [1, -1, 2], names=names) == [
        "cat → dog\n|5|", "dog → –\n|0|", "frog → frog\n|15|"]
    assert plots.map_titles([5, 0, 15], [1, -1, 2]) == ["0 → 1, |5|", "1 → –, |0|", "2 → 2, |15|"]
    assert plots.map_titles([1, 3], share=True) == ["0: 25.00%", "1: 75.00%"]
    assert plots.map_titles(None, [2, 0], names=names) == ["cat → frog", "dog → cat"]


def test_row_cosines_known_answers():
    """templates.cosines: orthogonal rows 0, parallel rows 1, opposite -1, a single map against every row,
    NaN for an empty class's NaN map, and maps of different sizes refused."""
    from wna.templates import cosines
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -3.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0], [0.0, 1.0]])
    assert torch.allclose(cosines(a, b), torch.tensor([0.0, 1.0, -1.0]).double(), rtol=0, atol=1e-15)
    assert cosines(a, b).dtype == torch.float64
    assert torch.allclose(cosines(a, torch.tensor([[1.0, 0.0]])), torch.tensor([1.0, 2 ** -0.5, 0.0]).double())
    assert cosines(torch.full((1, 2), float("nan")), b[:1]).isnan().all()
    with pytest.raises(ValueError, match="differ in size"):
        cosines(a, torch.ones(3, 3))
