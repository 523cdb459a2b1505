"""The permutation null of classification images, streamed in the probe's pass (see :mod:`wna.significance`).

Users import these from :mod:`wna.significance`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ._classimages import ClassificationImages, accumulate
from ._estimator import Estimator
from .models import decide

__all__ = ["NULL_BYTES", "NullClassificationImages", "PermutationNull", "permutation_test", "cluster_test",
           "check_level"]

NULL_BYTES = 2 ** 30
"""The most memory the permutation null's sums may take (n_null x classes x pixels float64)."""


def check_level(name: str, value: float) -> float:
    """``value`` as a float in (0, 1) (a level: alpha, q, power); a ValueError names ``name`` otherwise."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value}")
    return value


@dataclass(repr=False)
class NullClassificationImages(ClassificationImages):
    """:class:`~wna.probe.ClassificationImages` with the sums of ``n_null`` shuffles of the decisions,
    ``null`` float64 ``(n_null, C, *shape)`` (see :class:`PermutationNull`)."""

    null: torch.Tensor | None = None

    kind = "classification_images_null"
    summed = ("sums", "count", "sq", "null")

    @property
    def n_null(self) -> int:
        return int(self.null.shape[0])

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", n_null={self.n_null})"


class PermutationNull(Estimator):
    """Classification images and their permutation null in one pass (``Probe.run(est, n, seed=...)``).

    Every batch's decisions are shuffled among its stimuli ``n_null`` times
    (each shuffle a column of ``argsort`` of uniform draws from the batch's
    generator, after its stimuli) and each shuffle's per-class sums are kept:
    ``n_null * C * D`` float64, at most :data:`NULL_BYTES` (a ValueError on the
    first batch otherwise: fewer shuffles, or the analytic null of
    :func:`map_test`). The model runs once per stimulus.
    """

    name = "permutation_null"

    def __init__(self, stimulus, n_null: int = 200, max_bytes: int = NULL_BYTES):
        super().__init__(stimulus)
        if isinstance(n_null, bool) or not isinstance(n_null, int) or n_null < 1:
            raise ValueError(f"n_null must be an integer >= 1, got {n_null!r}")
        self.n_null, self.max_bytes = n_null, int(max_bytes)

    def key(self) -> dict:
        return {**super().key(), "n_null": self.n_null}

    def sample_at(self, start, n, generator):
        x = super().sample_at(start, n, generator)
        x = x[0] if isinstance(x, tuple) else x
        order = torch.rand((n, self.n_null), generator=generator, device=generator.device).argsort(0)
        return x, order  # rows first: each column a permutation of the batch's rows

    def update(self, stimuli, outputs):
        x, order = stimuli
        pred, c = decide(outputs)
        d = math.prod(self.shape)
        need = self.n_null * c * d * 8
        if need > self.max_bytes:
            raise ValueError(f"the permutation null would hold {self.n_null} x {c} classes x {d} pixels of "
                             f"sums ({need / 2 ** 30:.2f} GiB > {self.max_bytes / 2 ** 30:.2f} GiB): ask for "
                             "fewer shuffles (n_null) or use the analytic white-noise null (map_test)")
        out = accumulate(x, pred, c)
        flat = x.reshape(len(x), -1).to(torch.float64)
        null = torch.zeros((self.n_null, c, d), dtype=torch.float64, device=flat.device)
        for b in range(self.n_null if len(x) else 0):
            null[b].index_add_(0, pred[order[:, b]], flat)
        return {**out, "null": null}

    def finalize(self, sums, n, meta):
        shape = self.shape
        return NullClassificationImages(sums["sums"].reshape(-1, *shape), sums["count"], n, "none", meta,
                                        sums["sq"].reshape(-1, *shape), repr(self.stimulus),
                                        sums["null"].reshape(self.n_null, -1, *shape))


def _pooled_z(sums: torch.Tensor, count: torch.Tensor, n: int, total: torch.Tensor, var: torch.Tensor):
    """Class against the rest with the stimuli's own per-pixel variance (shared by every shuffle)."""
    c = count.to(torch.float64).reshape(-1, 1)
    rest = n - c
    diff = sums / c - (total - sums) / rest
    return diff / (var * (1 / c + 1 / rest)).sqrt()


def _null_z(result, alpha: float):
    """The real and the shuffled pooled z, ``(C, D)`` and ``(B, C, D)``, after checking the input."""
    if not isinstance(result, NullClassificationImages) or result.null is None:
        raise ValueError("the permutation tests need the result of a PermutationNull run (its null sums)")
    alpha = check_level("alpha", alpha)
    b = result.n_null
    if alpha < 1 / (1 + b):
        raise ValueError(f"{b} shuffles cannot give a p-value below {1 / (1 + b):.3g}: ask for at least "
                         f"{math.ceil(1 / alpha) - 1} (n_null) for alpha = {alpha}")
    C, n = result.num_classes, result.n
    sums = result.sums.reshape(C, -1)
    total = sums.sum(0)
    var = ((result.sq.reshape(C, -1).sum(0) - total ** 2 / n) / (n - 1)).clamp_min(1e-300)
    return (_pooled_z(sums, result.count, n, total, var),
            _pooled_z(result.null.reshape(b, C, -1), result.count, n, total, var), alpha)


def permutation_test(result: NullClassificationImages, alpha: float = 0.05) -> pd.DataFrame:
    """Per class, the map against the streamed permutation null of :class:`PermutationNull`.

    The statistic is each pixel's z of the class against the rest, with the
    per-pixel variance of all stimuli (the same for every shuffle). Columns:
    ``n``; ``stat`` (``sum z^2`` of the map); ``p`` (``(1 + shuffles with a
    stat at least as large) / (1 + n_null)``); ``infoval`` (``(stat -
    median) / (1.4826 MAD)`` of the null's stats, as rcicr's infoVal);
    ``significant`` (``p < alpha``); ``z_fwer`` (the ``1 - alpha`` quantile of
    the null's maximum |z| over the map's pixels: pixels above it are
    significant family-wise) and ``fwer_pixels`` (how many are). A class with
    fewer than 1 or more than n - 1 stimuli gets NaN. ``alpha`` below
    ``1 / (1 + n_null)`` is refused: the null cannot reach it.
    """
    z, znull, alpha = _null_z(result, alpha)
    b, C, n = result.n_null, result.num_classes, result.n
    stat = (z ** 2).sum(1)
    null_stat = (znull ** 2).sum(2)
    med = null_stat.median(0).values
    mad = 1.4826 * (null_stat - med).abs().median(0).values
    z_fwer = torch.quantile(znull.abs().amax(2), 1 - alpha, dim=0)
    p = (1 + (null_stat >= stat).sum(0)).double() / (1 + b)
    bad = (result.count < 1) | (result.count > n - 1)
    out = pd.DataFrame({"n": result.count.numpy(), "stat": stat.numpy(), "p": p.numpy(),
                        "infoval": ((stat - med) / mad).numpy(), "z_fwer": z_fwer.numpy(),
                        "fwer_pixels": (z.abs() > z_fwer[:, None]).sum(1).numpy()},
                       index=pd.RangeIndex(C, name="class"))
    out.loc[bad.numpy(), ["stat", "p", "infoval", "z_fwer"]] = np.nan
    out.loc[bad.numpy(), "fwer_pixels"] = 0
    out.insert(4, "significant", out["p"] < alpha)
    return out


def _cluster_masses(z: np.ndarray, shape, sigma: float, threshold: float):
    """Clusters of one map's smoothed |z| above ``threshold``: ``(labels, masses)``.

    The z of each channel is smoothed by a Gaussian of ``sigma`` pixels and
    rescaled to unit variance for white z (the kernel's norm); channels are
    combined as the root mean square; a cluster is a 2-D connected region
    above ``threshold`` and its mass the sum of the statistic over it.
    """
    from scipy import ndimage

    z = z.reshape((1,) * (3 - len(shape)) + tuple(shape))
    if sigma > 0:
        delta = np.zeros((int(8 * sigma) + 1,) * 2)
        delta[delta.shape[0] // 2, delta.shape[1] // 2] = 1
        norm = np.sqrt((ndimage.gaussian_filter(delta, sigma) ** 2).sum())
        z = ndimage.gaussian_filter(z, (0, sigma, sigma)) / norm
    stat = np.sqrt((z ** 2).mean(0))
    labels, k = ndimage.label(stat > threshold)
    masses = ndimage.sum_labels(stat, labels, np.arange(1, k + 1)) if k else np.zeros(0)
    return labels, masses


def cluster_test(result: NullClassificationImages, alpha: float = 0.05, threshold: float = 3.0,
                 sigma: float = 1.0) -> tuple[pd.DataFrame, torch.Tensor]:
    """The cluster-mass test of each class's map against the permutation null (max statistic).

    The pooled z-map of :func:`permutation_test` is smoothed and thresholded
    (see :func:`_cluster_masses`: ``sigma`` pixels, ``threshold`` in units of
    z); a cluster is significant when its mass exceeds the ``1 - alpha``
    quantile of the null's largest cluster mass per map, which controls the
    family-wise error over the map's clusters. Returns a table per class
    (``clusters`` above the threshold, ``significant`` clusters, ``mass`` of
    the largest, ``mass_fwer`` the null's quantile) and the significant
    clusters' pixels, bool ``(C, H, W)``.
    """
    z, znull, alpha = _null_z(result, alpha)
    threshold, sigma = float(threshold), float(sigma)
    if not (threshold > 0 and sigma >= 0):
        raise ValueError(f"need threshold > 0 and sigma >= 0, got {threshold} and {sigma}")
    shape = result.shape
    if len(shape) not in (2, 3):
        raise ValueError(f"the cluster test needs image maps (H, W) or (channels, H, W), not {shape}")
    zn = torch.nan_to_num(znull).numpy()
    null_max = np.array([[max(_cluster_masses(zn[b, c], shape, sigma, threshold)[1], default=0.0)
                          for c in range(result.num_classes)] for b in range(result.n_null)])
    mass_fwer = np.quantile(null_max, 1 - alpha, axis=0)
    rows, masks = [], []
    for c in range(result.num_classes):
        labels, masses = _cluster_masses(torch.nan_to_num(z[c]).numpy(), shape, sigma, threshold)
        keep = np.flatnonzero(masses > mass_fwer[c]) + 1
        masks.append(torch.from_numpy(np.isin(labels, keep)))
        rows.append({"clusters": len(masses), "significant": len(keep), "mass": max(masses, default=0.0),
                     "mass_fwer": float(mass_fwer[c])})
    return pd.DataFrame(rows, index=pd.RangeIndex(result.num_classes, name="class")), torch.stack(masks)
