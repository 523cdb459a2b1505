"""Which maps are real (:mod:`wna.significance`): known answers, and observers whose truth is known.

- a hand example and scipy's Welch t for the two forms of the z-map;
- a null observer (its class from the low-order bits of one pixel, so independent of what any pixel
  shows on average): map-level p-values uniform over 300 seeded maps, the false-positive rate at
  alpha = 0.05 within a binomial band, Welch's z standard normal on noise of unequal pixel variances;
- a linear observer with a sparse known template: Benjamini-Hochberg's false-discovery proportion,
  averaged over repeats, at or below q; the power predicted from a pilot run's effect against the
  power measured over repeats at three sample sizes; split-half reliability near 0 for the null,
  near 1 for a strong map, and the shards of one engine run as the halves.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from wna import Probe, significance, stimuli
from wna.probe import ClassificationImages, accumulate

D = 64  # pixels of the synthetic maps (8 x 8)


def _maps(x, labels, C=2, weighting="none"):
    s = accumulate(x, labels, C)
    return ClassificationImages(s["sums"].reshape(C, *x.shape[1:]), s["count"], len(x), weighting, {},
                                s["sq"].reshape(C, *x.shape[1:]))


def _null_labels(x):
    """The class from the 20th bit of pixel 0: independent of every pixel's mean."""
    return (torch.floor(x[:, 0, 0, 0].double() * 2 ** 20) % 2).long()


def _noise(n, seed, d=D):
    return torch.rand((n, 1, int(math.sqrt(d)), int(math.sqrt(d))), generator=torch.Generator().manual_seed(seed))


def test_both_forms_by_hand_and_against_scipys_welch_t():
    x = torch.tensor([0.7, 0.9, 0.1, 0.3, 0.2], dtype=torch.float32).reshape(5, 1, 1, 1)
    ci = _maps(x, torch.tensor([0, 0, 1, 1, 1]))
    z = significance.zmap(ci, (0.5, 0.25))
    assert z[0].item() == pytest.approx((0.8 - 0.5) * math.sqrt(2) / 0.25, rel=1e-6)
    assert z[1].item() == pytest.approx((0.2 - 0.5) * math.sqrt(3) / 0.25, rel=1e-6)
    welch = significance.zmap(ci)
    t = stats.ttest_ind(x[:2].double().ravel(), x[2:].double().ravel(), equal_var=False).statistic
    assert welch[0].item() == pytest.approx(t, rel=1e-9) and welch[1].item() == pytest.approx(-t, rel=1e-9)
    assert significance.noise_moments(stimuli.WhiteNoise((1, 2, 2))) == (0.5, pytest.approx(math.sqrt(1 / 12)))
    assert significance.noise_moments(stimuli.WhiteNoise((1, 2, 2), "gaussian", mean=0.2, std=3)) == (0.2, 3.0)


def test_null_observer_map_level_p_values_are_uniform():
    p = []
    for seed in range(300):
        x = _noise(400, seed)
        test = significance.map_test(_maps(x, _null_labels(x)), stimuli.WhiteNoise((1, 8, 8)))
        p.extend(test["p"].tolist())
    p = np.array(p)
    assert stats.kstest(p, "uniform").pvalue > 0.001
    # 600 maps at alpha = 0.05: 30 expected, binomial s.d. 5.3
    assert 0.05 - 3 * math.sqrt(0.05 * 0.95 / 600) < (p < 0.05).mean() < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 600)


def test_welch_z_is_standard_normal_for_a_null_observer_on_noise_of_unequal_pixel_variances():
    scale = torch.linspace(0.2, 3.0, D).reshape(1, 1, 8, 8)
    z = []
    for seed in range(40):
        base = _noise(2000, seed)
        labels = _null_labels(base)
        x = 0.3 + scale * (base - 0.5)  # pixel means 0.3, standard deviations from 0.06 to 0.87
        z.append(significance.zmap(_maps(x, labels)).ravel())
        if seed == 0:  # the known-noise form with U[0, 1]'s moments would be wrong here
            assert significance.zmap(_maps(x, labels), (0.5, math.sqrt(1 / 12))).abs().mean() > 5
    z = torch.cat(z)
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05


def _sparse(n, seed, support=16):
    """A linear observer whose template is +1 on the first ``support`` pixels: class 1 when their sum
    exceeds its mean. Pixels off the support are true nulls."""
    x = _noise(n, seed, 256)
    labels = (x.reshape(n, -1)[:, :support].sum(1) > support / 2).long()
    truth = torch.zeros(256, dtype=torch.bool)
    truth[:support] = True
    return x, labels, truth.reshape(1, 16, 16)


def test_fdr_keeps_the_false_discovery_proportion_at_q():
    q, fdp, found = 0.1, [], []
    for seed in range(60):
        x, labels, truth = _sparse(600, seed)
        keep = significance.fdr(significance.zmap(_maps(x, labels), (0.5, math.sqrt(1 / 12))), q)
        for c in range(2):
            hits = keep[c]
            fdp.append(float((hits & ~truth).sum()) / max(int(hits.sum()), 1))
            found.append(float((hits & truth).sum()) / int(truth.sum()))
    assert np.mean(fdp) <= q + 0.03
    assert np.mean(found) > 0.5  # it finds the template, not only controls the errors
    assert not significance.fdr(torch.full((1, 4), float("nan"))).any()


def test_predicted_power_matches_the_measured_power():
    noise = (0.5, math.sqrt(1 / 12))
    x, labels, _ = _sparse(20000, 1000)
    pilot = significance.map_test(_maps(x, labels), noise)
    effect = float(pilot.at[1, "effect"])
    for n in (100, 200, 300):
        measured = np.mean([significance.map_test(_maps(*_sparse(n, seed)[:2]), noise).at[1, "significant"]
                            for seed in range(200)])
        # the class holds about half the images: power at its expected count
        predicted = stats.ncx2.sf(stats.chi2.isf(0.05, 256), 256, effect * n / 2)
        assert abs(measured - predicted) < 0.1, (n, measured, predicted)
    need = significance.samples_needed(_maps(x, labels), noise, power=0.8)
    count = need.at[1, "count"]
    crit = stats.chi2.isf(0.05, 256)
    assert stats.ncx2.sf(crit, 256, effect * count) >= 0.8 > stats.ncx2.sf(crit, 256, effect * (count - 1))
    assert need.at[1, "n_samples"] == math.ceil(count * 20000 / int(labels.sum()))
    assert need.at[1, "power_now"] == pytest.approx(1.0)


def test_split_half_reliability_of_null_and_strong_maps():
    r = []
    for seed in range(40):
        x = _noise(4000, seed)
        labels = _null_labels(x)
        r.append(significance.split_half(_maps(x[::2], labels[::2]), _maps(x[1::2], labels[1::2]))["r"])
    r = np.concatenate(r)
    assert abs(r.mean()) < 0.05  # a null map's halves do not correlate
    x, labels, _ = _sparse(40000, 7)
    half = significance.split_half(_maps(x[::2], labels[::2]), _maps(x[1::2], labels[1::2]))
    assert (half["reliability"] > 0.9).all()
    assert half["reliability"].tolist() == pytest.approx((2 * half["r"] / (1 + half["r"])).tolist())


def test_the_shards_of_one_engine_run_are_the_halves():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    noise = stimuli.WhiteNoise((1, 8, 8))
    with Probe(model, batch_size=500, progress=False) as p:
        even = p.classification_images(noise, 20000, seed=3, shard=(0, 2))
        odd = p.classification_images(noise, 20000, seed=3, shard=(1, 2))
        full = p.classification_images(noise, 20000, seed=3)
    assert torch.equal(even.merge(odd).count, full.count)
    half = significance.split_half(even, odd)
    assert (half["reliability"] > 0.9).all()
    assert (significance.map_test(full, noise)["p"] < 1e-10).all()


def test_bad_input_is_refused():
    x = _noise(100, 0)
    ci = _maps(x, _null_labels(x))
    with pytest.raises(ValueError, match="confidence"):
        significance.zmap(_maps(x, _null_labels(x), weighting="confidence"))
    bare = ClassificationImages(ci.sums, ci.count, ci.n)
    with pytest.raises(ValueError, match="sums of squares"):
        significance.zmap(bare)
    with pytest.raises(ValueError, match="alpha"):
        significance.map_test(ci, (0.5, 0.3), alpha=1.5)
    with pytest.raises(ValueError, match="q must"):
        significance.fdr(torch.zeros(1, 4), q=0)
    with pytest.raises(ValueError, match="Welch"):
        significance.zmap(ci, "gabor")
    with pytest.raises(ValueError, match="analytic"):
        significance.map_test(ci, None)
    with pytest.raises(ValueError, match="standard deviation"):
        significance.noise_moments((0.5, 0.0))
    with pytest.raises(ValueError, match="ClassificationImages"):
        significance.zmap(torch.zeros(2, 4))


class _NullObserver(torch.nn.Module):
    """Logits that pick the class from the 20th bit of pixel 0 (two classes)."""

    def forward(self, x):
        return torch.nn.functional.one_hot(_null_labels(x), 2).float()


def _null_run(est, n, seed):
    """One run of ``est`` without the engine: a single batch from a seeded generator."""
    x, order = est.sample_at(0, n, torch.Generator().manual_seed(seed))
    return est.finalize(est.update((x, order), _NullObserver()(x)), n, {})


def test_permutation_null_is_calibrated_for_a_null_observer():
    est = significance.PermutationNull(stimuli.WhiteNoise((1, 8, 8)), n_null=99)
    p, any_pixel = [], []
    for seed in range(300):
        t = significance.permutation_test(_null_run(est, 1000, seed), alpha=0.1)
        assert t.at[0, "p"] == t.at[1, "p"]  # two classes: each map is the other's mirror image
        p.append(t.at[0, "p"])
        any_pixel.append(bool(t.at[0, "fwer_pixels"] > 0))
    p, band = np.array(p), 3 * math.sqrt(0.09 / 300)
    # p-values k / 100 under the null: mean 1/2 + 1/200, s.d. about sqrt(1/12)
    assert abs(p.mean() - 0.505) < 3 * math.sqrt(1 / 12 / 300)
    assert stats.kstest(p, "uniform").pvalue > 0.001
    assert 0.1 - band < (p < 0.1).mean() < 0.1 + band
    # the family-wise pixel threshold: a null map has a pixel above it in about a tenth of the runs
    assert 0.1 - band < np.mean(any_pixel) < 0.1 + band


def test_permutation_null_finds_a_sparse_template_and_its_pixels():
    class Linear(torch.nn.Module):
        def forward(self, x):
            s = x.reshape(len(x), -1)[:, :16].sum(1) - 8
            return torch.stack([-s, s], 1)

    est = significance.PermutationNull(stimuli.WhiteNoise((1, 16, 16)), n_null=49)
    x, order = est.sample_at(0, 3000, torch.Generator().manual_seed(0))
    result = est.finalize(est.update((x, order), Linear()(x)), 3000, {})
    t = significance.permutation_test(result, alpha=0.05)
    assert (t["p"] == 1 / 50).all() and (t["infoval"] > 20).all()
    z = significance.zmap(result)
    keep = z.abs().reshape(2, -1) > torch.tensor(t["z_fwer"].to_numpy())[:, None]
    assert keep[:, 16:].sum() == 0 and keep[:, :16].sum() >= 24  # the support, and nothing else
    # the real sums are those of ClassificationImages
    plain = _maps(x, Linear()(x).argmax(1))
    assert torch.equal(result.sums, plain.sums) and torch.equal(result.count, plain.count)


def test_permutation_null_shards_merge_into_the_single_run_and_save(tmp_path):
    noise = stimuli.WhiteNoise((1, 8, 8))
    est = significance.PermutationNull(noise, n_null=20)
    with Probe(_NullObserver(), batch_size=300, progress=False) as p:
        full = p.run(est, 3000, seed=5)
        halves = [p.run(est, 3000, seed=5, shard=(k, 2)) for k in (0, 1)]
    merged = halves[0].merge(halves[1])
    assert torch.equal(merged.null, full.null) and torch.equal(merged.sums, full.sums)
    assert full.null.shape == (20, 2, 1, 8, 8)
    # every shuffle keeps each class's count: its sums add up to the real ones over the classes
    assert torch.allclose(full.null.sum(1), full.sums.sum(0).expand(20, 1, 8, 8))
    full.save(tmp_path / "null.pt")
    again = significance.NullClassificationImages.load(tmp_path / "null.pt")
    assert torch.equal(again.null, full.null)
    assert significance.permutation_test(again).equals(significance.permutation_test(full))


def test_permutation_null_bad_input():
    noise = stimuli.WhiteNoise((1, 8, 8))
    with pytest.raises(ValueError, match="n_null"):
        significance.PermutationNull(noise, n_null=0)
    est = significance.PermutationNull(noise, n_null=10, max_bytes=1000)
    with pytest.raises(ValueError, match="analytic white-noise null"):
        _null_run(est, 100, 0)
    small = _null_run(significance.PermutationNull(noise, n_null=9), 100, 0)
    with pytest.raises(ValueError, match="at least 19"):
        significance.permutation_test(small, alpha=0.05)
    with pytest.raises(ValueError, match="PermutationNull"):
        significance.permutation_test(_maps(*(lambda x: (x, _null_labels(x)))(_noise(50, 0))))


def test_cluster_test_holds_its_level_and_finds_a_block():
    est = significance.PermutationNull(stimuli.WhiteNoise((1, 12, 12)), n_null=39)
    found = []
    for seed in range(200):
        table, mask = significance.cluster_test(_null_run(est, 600, seed), alpha=0.1, threshold=2.0)
        found.append(int(table.at[0, "significant"]) > 0)
        assert mask.shape == (2, 12, 12) and int(mask[0].sum()) >= int(table.at[0, "significant"])
    band = 3 * math.sqrt(0.09 / 200)
    assert 0.1 - band < np.mean(found) < 0.1 + band  # family-wise: a null map has a cluster in a tenth

    class Block(torch.nn.Module):  # class 1 when the 4 x 4 block at rows 2-5, columns 6-9 is bright
        def forward(self, x):
            s = x[:, 0, 2:6, 6:10].sum((1, 2)) - 8
            return torch.stack([-s, s], 1)

    x, order = est.sample_at(0, 3000, torch.Generator().manual_seed(1))
    result = est.finalize(est.update((x, order), Block()(x)), 3000, {})
    table, mask = significance.cluster_test(result, alpha=0.05)
    block = torch.zeros(12, 12, dtype=torch.bool)
    block[2:6, 6:10] = True
    assert (table["significant"] == 1).all()
    for c in range(2):  # one cluster over the block (smoothing spreads it by about a pixel)
        assert mask[c][block].all() and not mask[c][~torch.nn.functional.max_pool2d(
            block[None].float(), 5, 1, 2)[0].bool()].any()
    with pytest.raises(ValueError, match="threshold"):
        significance.cluster_test(result, threshold=0)


def test_the_linear_observers_known_effect_sample_size_and_cosine():
    """Gaussian noise, a two-class linear observer at c = 0 without internal noise (k = 1): each class
    mean moves by sigma^2 w sqrt(2/pi) / S, so the effect per image is 2/pi whatever D; the map test at
    D = 784, alpha = 0.05, power 0.8 needs a noncentrality of about 104, so about 163 images of the class;
    the map of n images has the expected cosine (1 + D / (n 2/pi))^(-1/2) to the true direction w."""
    d, sigma = 784, 0.5
    noise = stimuli.WhiteNoise((1, 28, 28), "gaussian", mean=0.5, std=sigma)
    w = torch.randn(d, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    x = noise.sample(40000, torch.Generator().manual_seed(10))
    labels = ((x.reshape(len(x), -1).double() - 0.5) @ w > 0).long()
    test = significance.map_test(_maps(x, labels), noise)
    assert test["effect"].tolist() == pytest.approx([2 / math.pi] * 2, abs=0.05)
    need = significance.samples_needed(_maps(x, labels), noise, power=0.8, cosine=0.9)
    assert 150 <= need.at[1, "count"] <= 178  # 104 / (2 / pi) = 163
    assert need.at[1, "count_cosine"] == math.ceil(d * 0.81 / (test.at[1, "effect"] * 0.19))
    cos = []
    for seed in range(20):  # maps of about 500 images of class 1 against the predicted cosine
        xs = noise.sample(1000, torch.Generator().manual_seed(100 + seed))
        ls = ((xs.reshape(len(xs), -1).double() - 0.5) @ w > 0).long()
        small = _maps(xs, ls)
        m = (small.mean[1].reshape(-1) - 0.5)
        cos.append(float(m @ w / (m.norm() * w.norm())))
        predicted = (1 + d / (int(small.count[1]) * 2 / math.pi)) ** -0.5
    assert np.mean(cos) == pytest.approx(predicted, abs=0.03)
    assert significance.map_test(small, noise).at[1, "cosine"] == pytest.approx(predicted, abs=0.08)


def test_sta_z_is_standard_normal_for_an_unrelated_response_and_finds_a_units_filter():
    from wna import sta

    z = []
    for seed in range(20):
        x = _noise(3000, seed)
        r = torch.rand(3000, 2, generator=torch.Generator().manual_seed(1000 + seed)).double()  # unrelated
        flat = x.double()
        s = sta.SpikeTriggered(rx=torch.einsum("nc,nhwk->chwk", r, flat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
                               r=r.sum(0), r2=(r ** 2).sum(0), x=flat.sum(0), n=3000, layer="unit")
        z.append(significance.sta_zmap(s, stimuli.WhiteNoise((1, 8, 8))).ravel())
    z = torch.cat(z)
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05

    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, bias=False))
    with torch.no_grad():
        conv[0].weight.zero_()
        conv[0].weight[0, 0, 1, 1] = 1.0  # the unit at the centre sees one pixel
    noise = stimuli.WhiteNoise((1, 9, 9))
    s = sta.spike_triggered_average(conv, "0", noise, 20000, nonlinearity=torch.relu, progress=False)
    zs = significance.sta_zmap(s, noise)[0, 0]
    centre = zs[4, 4].item()
    zs[4, 4] = 0
    assert centre > 50 and zs.abs().max() < 4.5


def test_correlation_z_of_a_binary_observer():
    from wna import binary

    n = 4000
    z = []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        noise = torch.rand((n, 1, 8, 8), generator=g)
        signal = torch.randint(0, 2, (n,), generator=g)
        z.append(significance.correlation_zmap(binary.cells_from_responses(noise, signal, signal)).ravel())
    z = torch.cat(z)
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05
    responses = (noise[:, 0, 2, 3] > 0.5).long()  # looks at one pixel
    zc = significance.correlation_zmap(binary.cells_from_responses(noise, signal, responses))
    r = np.corrcoef(noise[:, 0, 2, 3].numpy(), responses.numpy())[0, 1]
    assert zc[0, 2, 3].item() == pytest.approx(math.atanh(r) * math.sqrt(n - 3), rel=1e-6)
    with pytest.raises(ValueError, match="StimulusResponseCells"):
        significance.correlation_zmap(torch.zeros(3))
