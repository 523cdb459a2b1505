"""Which maps are real: z-maps, a map-level test, FDR and split-half reliability of classification images.

A classification image is the mean of the noise images a model gave one
class. Averaged over few images it is noise itself; this module says how far
each map is from that, from the sums a :class:`wna.probe.ClassificationImages`
already holds (per-class sums, sums of squares and counts), so nothing runs
the model again.

- :func:`zmap`: per-pixel z. For white noise with a known per-pixel mean
  ``mu`` and standard deviation ``sigma`` (U[0, 1]: 1/2 and ``sqrt(1/12)``),
  ``z = (mean_c - mu) * sqrt(n_c) / sigma``. For any other noise (Gabor-PCA,
  decoder samples, data), whose mean and variance vary per pixel and are not
  known, the class against the rest of the stimuli in Welch's form,
  ``(mean_c - mean_rest) / sqrt(s_c^2 / n_c + s_rest^2 / n_rest)``.
- :func:`map_test`: one p-value per map. Under the null (the class a
  stimulus gets does not depend on it) the known-noise z of a map's D pixels
  are independent standard normals for large ``n_c``, so ``sum z^2`` follows
  chi-square with D degrees of freedom (the analytic white-noise null).
- :func:`fdr`: the pixels that survive the Benjamini-Hochberg procedure at
  level ``q`` (``scipy.stats.false_discovery_control``), per map.
- :func:`split_half`: how much of a significant map is still noise. The maps
  of the even and of the odd batches of one run (``shard=(0, 2)`` and
  ``shard=(1, 2)``: the model sees every stimulus once, and the two merge into
  the full run's result) are correlated per class, and the Spearman-Brown
  formula ``2 r / (1 + r)`` gives the reliability of the map of both halves,
  as rcicr's reliability tools do for human classification images.
- :func:`samples_needed`: from a run's measured effect, the class count (and
  the number of noise images) at which the map-level test reaches a power.
- :func:`sta_zmap` and :func:`correlation_zmap`: the same question for a
  unit's spike-triggered average (Section 3.3) and for the Eq. 2
  correlation map of a binary observer (Fig. 1).
- :class:`PermutationNull`: the permutation null, streamed in the same pass.
  Under the null the class a stimulus gets is independent of the stimulus;
  each batch's decisions are shuffled among its stimuli ``n_null`` times (a
  shuffle within a batch keeps every class's count; drawn from the batch's
  own seeded generator, so shards, ranks and checkpoints merge exactly) and
  the per-class sums of every shuffle are kept. :func:`permutation_test`
  turns them into a map-level p-value and an rcicr-style informational value
  (the map's norm against the null's median and MAD), and a family-wise
  threshold for the pixels (the null's maximum |z|), for any noise;
  :func:`cluster_test` the cluster-mass test on the smoothed z-map (Maris &
  Oostenveld 2007; Chauvin et al. 2005), against the null's largest cluster.

Maps weighted by confidence (``weighting="confidence"``) are refused: their
sums of squares do not give the effective sample size.

References: Chauvin, Worsley, Schyns, Arguin & Gosselin (2005), *Accurate
statistical tests for smooth classification images*, J. Vision 5(9);
Benjamini & Hochberg (1995), J. R. Stat. Soc. B 57; Brinkman et al. (2017),
*Visualising mental representations* (rcicr), Eur. Rev. Soc. Psychol. 28;
Maris & Oostenveld (2007), *Nonparametric statistical testing of EEG- and
MEG-data*, J. Neurosci. Methods 164.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy import stats

from ._classimages import ClassificationImages
from ._null import (NULL_BYTES, NullClassificationImages, PermutationNull, check_level,  # noqa: F401
                    cluster_test, permutation_test)

__all__ = ["noise_moments", "zmap", "map_test", "fdr", "split_half", "samples_needed", "sta_zmap",
           "correlation_zmap", "PermutationNull",
           "NullClassificationImages", "permutation_test", "cluster_test", "NULL_BYTES"]


def noise_moments(noise) -> tuple[float, float]:
    """``(mu, sigma)`` of each pixel of a white noise: a :class:`wna.stimuli.WhiteNoise` or a pair.

    Uniform ``U[low, high]``: ``((low + high) / 2, (high - low) / sqrt(12))``;
    Gaussian: ``(mean, std)``. Anything else raises a ValueError: its
    per-pixel moments are not known (use ``noise=None``, the Welch form).
    """
    if isinstance(noise, tuple) and len(noise) == 2:
        mu, sigma = (float(v) for v in noise)
    elif getattr(noise, "distribution", None) == "uniform":
        mu, sigma = (noise.low + noise.high) / 2, (noise.high - noise.low) / math.sqrt(12)
    elif getattr(noise, "distribution", None) == "gaussian":
        mu, sigma = noise.mean, noise.std
    else:
        raise ValueError(f"the known-noise z needs white noise of known mean and standard deviation "
                         f"(a WhiteNoise or a (mu, sigma) pair), not {noise!r}; pass noise=None for "
                         "the class-against-the-rest (Welch) form, which any noise allows")
    if not (math.isfinite(mu) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"need a finite mean and a standard deviation > 0, got mu={mu}, sigma={sigma}")
    return mu, sigma


def _check(ci) -> None:
    if not isinstance(ci, ClassificationImages):
        raise ValueError(f"need a ClassificationImages result (wna.probe), got {type(ci).__name__}")
    if ci.weighting != "none":
        raise ValueError(f"maps weighted by {ci.weighting!r} are refused: their sums of squares do not "
                         "give the effective sample size; run the probe with weighting='none'")
    if ci.sq is None:
        raise ValueError("the z-map needs the sums of squares, and this result holds none (sq is None); "
                         "run the probe again (wna.probe.classification_images or wna.Probe) to get them")


def zmap(ci: ClassificationImages, noise=None) -> torch.Tensor:
    """Per-pixel z of every class's map, float64 ``(C, *shape)``; NaN for a class without the images
    the form needs (none for the known-noise form, fewer than 2 in it or in the rest for Welch's).

    ``noise``: the white noise the stimuli were drawn from (see
    :func:`noise_moments`) for the known-noise form; None for Welch's form,
    the class against all other stimuli of the run.
    """
    _check(ci)
    c = ci.count.to(torch.float64).reshape(-1, *([1] * len(ci.shape)))
    if noise is not None:
        mu, sigma = noise_moments(noise)
        z = (ci.sums / c - mu) * c.sqrt() / sigma
        z[ci.count == 0] = float("nan")
        return z
    total, total_sq, n = ci.sums.sum(0), ci.sq.sum(0), float(ci.n)
    rest = n - c
    mean_c, mean_r = ci.sums / c, (total - ci.sums) / rest
    var_c = ((ci.sq - c * mean_c ** 2) / (c - 1)).clamp_min(0)
    var_r = ((total_sq - ci.sq - rest * mean_r ** 2) / (rest - 1)).clamp_min(0)
    z = (mean_c - mean_r) / (var_c / c + var_r / rest).sqrt()
    z[(ci.count < 2) | (ci.n - ci.count < 2)] = float("nan")
    return z


def map_test(ci: ClassificationImages, noise, alpha: float = 0.05) -> pd.DataFrame:
    """One row per class: is its map more than white noise? (the analytic null, known noise only)

    Columns: ``n`` (the class's noise images), ``chi2`` (``sum z^2`` over the
    map's D pixels, :func:`zmap` in its known-noise form), ``df`` (D), ``p``
    (``P(chi2_D >= chi2)``), ``significant`` (``p < alpha``), ``effect``
    (``(chi2 - D) / n``, the noncentrality one image adds: an unbiased
    estimate of the squared distance of the class mean from the noise mean
    in units of sigma, summed over pixels; :func:`samples_needed`
    extrapolates it) and ``cosine``, the expected cosine of this map (class
    mean minus ``mu``) to the map of infinitely many images,
    ``(1 + D / (n * effect))^(-1/2)``: the map is the true one plus
    independent noise of variance ``sigma^2 / n`` per pixel (0 where the
    effect is not positive). A class without images has NaN and is not
    significant.
    """
    alpha = check_level("alpha", alpha)
    if noise is None:
        raise ValueError("map_test uses the analytic white-noise null: pass the noise the stimuli were "
                         "drawn from (a WhiteNoise or (mu, sigma))")
    z = zmap(ci, noise).reshape(ci.num_classes, -1)
    d = z.shape[1]
    chi2 = (z ** 2).sum(1).numpy()
    n = ci.count.numpy()
    p = np.where(n > 0, stats.chi2.sf(chi2, d), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        effect = np.where(n > 0, (chi2 - d) / n, np.nan)
        cosine = np.where(effect > 0, (1 + d / (n * effect)) ** -0.5, np.where(n > 0, 0.0, np.nan))
    return pd.DataFrame({"n": n, "chi2": chi2, "df": d, "p": p, "significant": p < alpha, "effect": effect,
                         "cosine": cosine}, index=pd.RangeIndex(ci.num_classes, name="class"))


def fdr(z: torch.Tensor, q: float = 0.05) -> torch.Tensor:
    """The pixels of each map ``z[c]`` that survive Benjamini-Hochberg at false-discovery rate ``q``
    (two-sided p-values of the z; scipy's procedure), bool ``z.shape``. A map of NaN keeps none."""
    q = check_level("q", q)
    z = torch.as_tensor(z, dtype=torch.float64)
    out = torch.zeros(z.shape, dtype=torch.bool)
    flat = z.reshape(z.shape[0], -1).numpy()
    for c, row in enumerate(flat):
        if not np.isfinite(row).all():
            continue
        p = 2 * stats.norm.sf(np.abs(row))
        adjusted = stats.false_discovery_control(p, method="bh")
        out[c] = torch.from_numpy(adjusted <= q).reshape(z.shape[1:])
    return out


def split_half(even: ClassificationImages, odd: ClassificationImages) -> pd.DataFrame:
    """Per class, the correlation of the maps of two halves of a run and the reliability of the whole map.

    ``even`` and ``odd``: the results of ``shard=(0, 2)`` and ``shard=(1, 2)``
    of one run (or any two independent halves of the same noise and model).
    Each half's map is its class mean minus its grand mean (the
    :attr:`~wna.probe.ClassificationImages.contrast`). Columns: ``n_even``,
    ``n_odd``, ``r`` (Pearson over pixels) and ``reliability``
    (Spearman-Brown, ``2 r / (1 + r)``); NaN where a half has no image of
    the class or a map is constant.
    """
    for half in (even, odd):
        _check(half)
    if even.num_classes != odd.num_classes or even.shape != odd.shape:
        raise ValueError(f"the halves differ: {even.num_classes} classes of {even.shape} and "
                         f"{odd.num_classes} of {odd.shape}")
    a = even.contrast.reshape(even.num_classes, -1)
    b = odd.contrast.reshape(odd.num_classes, -1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    r = ((a * b).sum(1) / ((a * a).sum(1) * (b * b).sum(1)).sqrt()).numpy()
    return pd.DataFrame({"n_even": even.count.numpy(), "n_odd": odd.count.numpy(), "r": r,
                         "reliability": 2 * r / (1 + r)},
                        index=pd.RangeIndex(even.num_classes, name="class"))


def _power(effect: float, n: float, d: int, alpha: float) -> float:
    return float(stats.ncx2.sf(stats.chi2.isf(alpha, d), d, max(effect, 0.0) * n))


def samples_needed(ci: ClassificationImages, noise, alpha: float = 0.05, power: float = 0.8,
                   cosine: float = 0.9, max_count: int = 10 ** 12) -> pd.DataFrame:
    """Per class, how many of its noise images its map needs: to be significant, and to be close to the
    map of infinitely many images; and how many noise images in all, at the class's measured frequency.

    The effect is :func:`map_test`'s ``effect`` (noncentrality per image),
    measured in this run. ``count``: the smallest class count at which
    :func:`map_test` is significant at ``alpha`` with probability ``power``
    (a noncentral chi-square with D degrees of freedom and noncentrality
    ``effect * count``); ``n_samples``: the noise images that give it.
    ``count_cosine`` and ``n_samples_cosine``: where the expected cosine of
    :func:`map_test` reaches ``cosine``, ``D cosine^2 / (effect (1 -
    cosine^2))``. ``power_now``: the predicted power at the run's own count.
    A class with no measurable effect (``effect <= 0``) or without images
    gets NaN; inf where ``max_count`` does not reach the power.
    """
    power, cosine = check_level("power", power), check_level("cosine", cosine)
    test = map_test(ci, noise, alpha)
    d = int(test["df"].iloc[0])
    rows = []
    for c, row in test.iterrows():
        eff, n = float(row["effect"]), int(row["n"])
        if n == 0 or not eff > 0:
            rows.append(dict.fromkeys(["count", "n_samples", "count_cosine", "n_samples_cosine", "power_now"],
                                      np.nan))
            continue
        lo, hi = 0, 1  # power(lo) < power <= power(hi), found by doubling, then bisection
        while _power(eff, hi, d, alpha) < power and hi < max_count:
            lo, hi = hi, hi * 2
        count = hi if _power(eff, hi, d, alpha) >= power else np.inf
        while count != np.inf and hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _power(eff, mid, d, alpha) < power else (lo, mid)
            count = hi
        for_cosine = math.ceil(d * cosine ** 2 / (eff * (1 - cosine ** 2)))
        rows.append({"count": count, "n_samples": math.ceil(count * ci.n / n) if count != np.inf else np.inf,
                     "count_cosine": for_cosine, "n_samples_cosine": math.ceil(for_cosine * ci.n / n),
                     "power_now": _power(eff, n, d, alpha)})
    out = pd.DataFrame(rows, index=test.index)
    out["effect"] = test["effect"]
    return out


def sta_zmap(s, noise) -> torch.Tensor:
    """Per-pixel z of each channel's centred spike-triggered average against white noise of known
    moments, float64 ``(C, *shape)``: ``(sum r x - sum r * mean x) / (sigma sqrt(sum r^2 - (sum r)^2 / n))``.

    ``s``: a :class:`wna.sta.SpikeTriggered` (its sums ``rx``, ``r``, ``r2``,
    ``x``). Under the null (the response independent of the stimulus) the
    numerator has mean 0 and variance ``sigma^2`` times the responses' sum of
    squared deviations, so each z is standard normal for many stimuli. NaN
    for a channel whose response never varied.
    """
    from .sta import SpikeTriggered

    if not isinstance(s, SpikeTriggered):
        raise ValueError(f"need a SpikeTriggered result (wna.sta), got {type(s).__name__}")
    _, sigma = noise_moments(noise)
    per = (-1, *([1] * len(s.shape)))
    n = float(s.n)
    num = s.rx - s.r.reshape(per) * (s.x / n)
    spread = (s.r2 - s.r ** 2 / n).clamp_min(0)
    z = num / (sigma * spread.sqrt().reshape(per))
    z[spread <= 0] = float("nan")
    return z


def correlation_zmap(cells) -> torch.Tensor:
    """Per-pixel z of a binary observer's Eq. 2 correlation map (:attr:`wna.binary.StimulusResponseCells.
    correlation`): Fisher's ``atanh(r) sqrt(n - 3)``, standard normal under the null, ``(*shape)``."""
    from ._cells import StimulusResponseCells

    if not isinstance(cells, StimulusResponseCells):
        raise ValueError(f"need a StimulusResponseCells result (wna.binary), got {type(cells).__name__}")
    if cells.n < 4:
        raise ValueError(f"the correlation's z needs at least 4 trials, got {cells.n}")
    r = cells.correlation.clamp(-1 + 1e-15, 1 - 1e-15)
    return torch.atanh(r) * math.sqrt(cells.n - 3)
