"""Spike-triggered analysis of single units: STA, whitened STA (Eq. 5), STC and receptive fields.

The paper's Section 2.2 and Fig. 8 treat a unit of a network like a neuron:
for every channel of a layer at one feature-map position, the
spike-triggered average is the response-weighted mean stimulus (Eq. 4)::

    STA = sum_i r_i x_i / sum_i r_i          normalize="response" (Eq. 4, n_sp = sum r)
    STA = sum_i r_i x_i / N                  normalize="count" (the authors' code, book/methods.md)

Under Gaussian white noise the STA of a linear-nonlinear unit is
proportional to its filter (Stein/Bussgang, known answer 3 in book/methods.md); under
correlated noise N(0, C) it is proportional to C w, and the whitened STA
C^-1 STA (Eq. 5, the least-squares regression of the responses on the
stimuli) recovers w. The spike-triggered covariance (Eq. 4; the paper leaves
it to future work) finds the several filters of units the STA misses, e.g.
the energy unit (w1 x)^2 + (w2 x)^2; its eigenvalues are judged against
those of responses shuffled within each batch, accumulated in the same pass.

Everything streams through :class:`wna.Probe` (seeded batches, shards,
checkpoints, ranks): the estimator adds float64 sums, never the stimuli.
Second-order sums are taken over the unit's receptive-field patch (e.g.
14x14 for conv2 of the MNIST CNN), whose geometry :func:`receptive_field`
reads from the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._rf import RF, feature_shape, receptive_field, unit_geometry
from .engine import SUM_ROWS, Estimator, Result, probe_for

__all__ = ["spike_triggered_average", "SpikeTriggered", "STAEstimator", "STC", "RF", "receptive_field",
           "NORMALIZE"]

NORMALIZE = ("response", "count")
STC_SHUFFLES = 19  # default shuffled nulls with stc=True: a 5% permutation test
RIDGE = 1e-6  # default ridge of the whitened solves, relative to the mean stimulus variance


def _check_normalize(normalize: str) -> str:
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    return normalize


@dataclass
class STC:
    """Eigen-decomposition of the spike-triggered covariance of each channel, leading first.

    ``values`` ``(C, P)`` sorted by decreasing ``|value|``; ``vectors``
    ``(C, P, *patch)``: ``vectors[c, k]`` belongs to ``values[c, k]`` (unit
    norm). With K shuffled-response nulls (else None): ``null_low`` and
    ``null_high`` ``(C, K)``, the smallest and largest eigenvalue of each
    null; ``p_values`` ``(C, P)``, the permutation p-value of each eigenvalue,
    ``(1 + number of nulls whose spectrum reaches it) / (K + 1)`` (upwards for
    a positive eigenvalue, downwards for a negative one); ``significant``
    ``(C, P)``: the eigenvalues beyond every null, p = 1 / (K + 1) (a 5% test
    for K = 19).
    """

    values: torch.Tensor
    vectors: torch.Tensor
    null_low: torch.Tensor | None = None
    null_high: torch.Tensor | None = None
    p_values: torch.Tensor | None = None
    significant: torch.Tensor | None = None


@dataclass(repr=False)
class SpikeTriggered(Result):
    """Float64 sums of one pass of spike-triggered analysis of a layer's channels at one position.

    ``rx`` ``(C, *shape)``: sum of response x stimulus; ``r``, ``r2`` ``(C,)``:
    sums of the responses and of their squares; ``x`` ``(*shape)``: sum of
    the stimuli; ``n``: stimuli seen. Over the receptive-field patch of ``P``
    values (``window = (top, bottom, left, right)``, the whole stimulus when
    None): ``xx`` ``(P, P)`` sum of x x^T; ``rxx`` ``(C, P, P)`` sum of
    r x x^T; ``null_rx`` ``(K, C, P)`` and ``null_rxx`` ``(K, C, P, P)``: the
    same with the responses shuffled within each batch (K shuffles).
    ``rf``: ``(size, jump, start)`` of :class:`RF` (None for a layer without
    a spatial map). Results of shards merge into the single-process result up to the rounding
    of the float64 additions across batches (see :meth:`wna.engine.Result.merge`).
    """

    rx: torch.Tensor
    r: torch.Tensor
    r2: torch.Tensor
    x: torch.Tensor
    n: int
    layer: str
    position: tuple | None = None
    rf: tuple | None = None
    window: tuple | None = None
    normalize: str = "response"
    meta: dict = field(default_factory=dict)
    xx: torch.Tensor | None = None
    rxx: torch.Tensor | None = None
    null_rx: torch.Tensor | None = None
    null_rxx: torch.Tensor | None = None
    channels: tuple | None = None
    nonlinearity: str | None = None
    stimulus: str | None = None

    kind = "spike_triggered"
    summed = ("rx", "r", "r2", "x", "xx", "rxx", "null_rx", "null_rxx")
    identity = ("layer", "position", "rf", "window", "normalize", "channels", "nonlinearity", "stimulus")

    @property
    def receptive_field(self) -> RF | None:
        return None if self.rf is None else RF(*(tuple(v) for v in self.rf))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape)

    @property
    def patch_shape(self) -> tuple[int, ...]:
        return tuple(self.crop(self.x).shape)

    def _per(self, normalize) -> torch.Tensor:
        by = _check_normalize(self.normalize if normalize is None else normalize)
        d = self.r if by == "response" else torch.full_like(self.r, float(self.n))
        return d.reshape(-1, *([1] * len(self.shape)))

    def average(self, normalize: str | None = None) -> torch.Tensor:
        """The STA ``(C, *shape)`` divided by the summed response or the sample count (default: ``normalize``).

        With ``"response"``, NaN for a channel that never responded (sum r = 0).
        """
        return self.rx / self._per(normalize)

    @property
    def sta(self) -> torch.Tensor:
        """The spike-triggered average ``(C, *shape)`` over the whole stimulus (see :meth:`average`)."""
        return self.average()

    @property
    def mean_stimulus(self) -> torch.Tensor:
        return self.x / max(self.n, 1)

    def centred(self, normalize: str | None = None) -> torch.Tensor:
        """The STA minus what an unrelated response would give: ``(sum r x - sum r * mean x) / norm``.

        ``normalize="count"`` gives the covariance of response and stimulus
        per pixel; for zero-mean noise it equals :meth:`average`.
        """
        return (self.rx - self.r.reshape(-1, *([1] * len(self.shape))) * self.mean_stimulus) / self._per(normalize)

    def crop(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """The receptive-field patch of ``t`` (trailing dims the stimulus's; default the STA)."""
        t = self.sta if t is None else t
        if self.window is None:
            return t
        top, bottom, left, right = self.window
        return t[..., top:bottom, left:right]

    def _flat_patch(self, t: torch.Tensor) -> torch.Tensor:
        return self.crop(t).flatten(-len(self.shape))

    def prior_covariance(self, centre: bool = True) -> torch.Tensor:
        """The stimulus covariance over the patch ``(P, P)`` (``centre=False``: the second moment E[x x^T])."""
        if self.xx is None:
            raise ValueError("this result holds no stimulus second moments: run with whiten=True or stc=True")
        m = self._flat_patch(self.mean_stimulus)
        return self.xx / self.n - (torch.outer(m, m) if centre else 0)

    def whitened(self, ridge: float = RIDGE, centre: bool = True, normalize: str | None = None) -> torch.Tensor:
        """The whitened STA over the patch ``(C, *patch)`` (Eq. 5): ``(Phi + ridge * tr(Phi)/P I)^-1 STA``.

        ``centre=True``: Phi the stimulus covariance and the :meth:`centred`
        STA, i.e. the least-squares regression of the responses on the
        stimuli with an intercept; ``centre=False``: Eq. 5 as printed,
        ``(N / n_sp) (X^T X)^-1 X^T y`` (second moments, no intercept). The
        two agree for zero-mean noise. ``ridge`` (relative to the mean
        variance) keeps a low-rank noise (Gabor-PCA) solvable; it then
        recovers the filter's part in the span of the noise.
        """
        phi = _ridged(self.prior_covariance(centre), ridge)
        b = self._flat_patch(self.centred(normalize) if centre else self.average(normalize))
        return torch.linalg.solve(phi, b.T).T.reshape(-1, *self.patch_shape)

    def _delta(self, rxx: torch.Tensor, rx: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        mu = rx / self.r[:, None]
        return rxx / self.r[:, None, None] - mu[..., :, None] * mu[..., None, :] - phi

    def stc_matrix(self) -> torch.Tensor:
        """Spike-triggered covariance minus the prior stimulus covariance, ``(C, P, P)`` (Eq. 4: by ``sum r``)."""
        if self.rxx is None:
            raise ValueError("this result holds no spike-triggered covariance: run with stc=True")
        return self._delta(self.rxx, self._flat_patch(self.rx), self.prior_covariance())

    def stc(self, whiten: bool = False, ridge: float = RIDGE) -> STC:
        """The leading directions of :meth:`stc_matrix` per channel, judged against the shuffled nulls.

        ``whiten=True`` solves ``dC v = lambda (Phi + ridge) v`` instead, so
        that under correlated noise the eigenvectors are the filters
        themselves, as the whitened STA is (Eq. 5 for second order).
        """
        phi = self.prior_covariance()
        white = None
        if whiten:
            white = torch.linalg.inv(torch.linalg.cholesky(_ridged(phi, ridge)))

        def eig(d):
            bad = ~d.isfinite().flatten(-2).all(-1)  # a channel that never responded: NaN
            d = d.masked_fill(bad[..., None, None], 0.0)
            if white is None:
                val, vec = torch.linalg.eigh(d)
            else:
                val, vec = torch.linalg.eigh(white @ d @ white.T)
                vec = white.T @ vec
                vec = vec / vec.norm(dim=-2, keepdim=True)
            nan = float("nan")
            return val.masked_fill(bad[..., None], nan), vec.masked_fill(bad[..., None, None], nan)

        values, vectors = eig(self.stc_matrix())
        order = values.abs().argsort(dim=-1, descending=True)
        values = values.gather(-1, order)
        vectors = vectors.gather(-1, order[:, None, :].expand_as(vectors)).transpose(-1, -2)
        out = STC(values, vectors.reshape(*vectors.shape[:2], *self.patch_shape))
        if self.null_rxx is not None and len(self.null_rxx):
            null = eig(self._delta(self.null_rxx, self.null_rx, phi))[0]  # (K, C, P)
            low, high = null.amin(-1).T, null.amax(-1).T  # (C, K)
            reach = torch.where(values[:, :, None] > 0, high[:, None, :] >= values[:, :, None],
                                low[:, None, :] <= values[:, :, None]).sum(-1)
            out.null_low, out.null_high = low, high
            nan = values.isnan()  # a channel that never responded
            out.p_values = ((1 + reach).double() / (1 + low.shape[1])).masked_fill(nan, float("nan"))
            out.significant = (reach == 0) & ~nan
        return out

    def null_sta(self, normalize: str | None = None) -> torch.Tensor:
        """The :meth:`centred` patch STA of each shuffled-response null, ``(K, C, *patch)``."""
        if self.null_rx is None:
            raise ValueError("this result holds no shuffled nulls: run with shuffles >= 1")
        m = self._flat_patch(self.mean_stimulus)
        per = self._per(normalize).flatten()[:, None]
        return ((self.null_rx - self.r[:, None] * m) / per).reshape(*self.null_rx.shape[:2], *self.patch_shape)

    def __repr__(self) -> str:
        return (f"SpikeTriggered(layer={self.layer!r}, position={self.position}, channels={len(self.r)}, "
                f"n={self.n}, window={self.window}, normalize={self.normalize!r})")


def _ridged(phi: torch.Tensor, ridge: float) -> torch.Tensor:
    p = phi.shape[-1]
    return phi + float(ridge) * float(torch.diagonal(phi).sum()) / p * torch.eye(p, dtype=phi.dtype)


class STAEstimator(Estimator):
    """The estimator behind :func:`spike_triggered_average`.

    The responses are the channels of ``info["layer"]`` at ``info["position"]``
    (``info["channels"]`` of them, through ``nonlinearity``), read by the
    probe's hook in the pass that computes the logits; without a layer, the
    model's outputs ``(B, C)`` themselves. ``window``: ``(top, bottom, left,
    right)`` of the patch over which the second-order sums and the nulls are
    taken (None: the whole stimulus). ``info``: the identity fields of the
    result (layer, position, rf, channels, ...).
    """

    name = "spike_triggered_average"
    reads_logits = False  # the responses are unit activations (any values), not logits

    def __init__(self, stimulus, window=None, *, whiten: bool = False, stc: bool = False, shuffles: int = 0,
                 normalize: str = "response", info: dict | None = None, nonlinearity=None):
        super().__init__(stimulus)
        self.window = None if window is None else tuple(int(v) for v in window)
        self.moments = bool(whiten or stc)
        self.stc = bool(stc)
        if isinstance(shuffles, bool) or int(shuffles) != shuffles or shuffles < 0:
            raise ValueError(f"shuffles must be an integer >= 0, got {shuffles!r}")
        self.shuffles = int(shuffles)
        self.normalize = _check_normalize(normalize)
        self.info = dict(info or {})
        self.nonlinearity = nonlinearity
        self.reads_outputs = self.info.get("layer") is None  # with a layer, any model output will do

    def layers(self) -> tuple[str, ...]:
        return () if self.info.get("layer") is None else (self.info["layer"],)

    def read(self, name, output):
        a, position, channels = output.detach(), self.info.get("position"), self.info.get("channels")
        if position is not None:
            a = a[:, :, int(position[0]), int(position[1])]
        if channels is not None:
            a = a[:, list(channels)]
        a = a.clone()  # a copy: an in-place op after the layer (e.g. ReLU(inplace=True)) cannot change it
        return a if self.nonlinearity is None else self.nonlinearity(a)

    def key(self) -> dict:
        return {**super().key(), "window": self.window, "moments": self.moments, "stc": self.stc,
                "shuffles": self.shuffles, **{k: repr(v) for k, v in self.info.items()}}

    def sample(self, n: int, generator: torch.Generator):
        x = self.stimulus.sample(n, generator)
        if not self.shuffles:
            return x
        perms = [torch.randperm(n, generator=generator, device=generator.device) for _ in range(self.shuffles)]
        return x, torch.stack(perms, 1)  # (n, K): rows slice like the stimuli

    def _patch(self, x: torch.Tensor) -> torch.Tensor:
        if self.window is not None:
            top, bottom, left, right = self.window
            x = x[..., top:bottom, left:right]
        return x.flatten(1)

    def update(self, stimuli, outputs, layers=None):
        x, perms = stimuli if isinstance(stimuli, tuple) else (stimuli, None)
        r = (outputs if not layers else layers[self.info["layer"]]).to(torch.float64).reshape(len(x), -1)
        nulls = [] if perms is None else [r[perms[:, k]] for k in range(perms.shape[1])]
        c, d, p = r.shape[1], math.prod(self.shape), self._patch(x[:0]).shape[1]

        def zeros(*s):
            return torch.zeros(s, dtype=torch.float64, device=r.device)

        out = {"rx": zeros(c, d), "r": r.sum(0), "r2": (r * r).sum(0), "x": zeros(d)}
        if self.moments:
            out["xx"] = zeros(p, p)
        if self.stc:
            out["rxx"] = zeros(c, p, p)
        if nulls:
            out["null_rx"] = zeros(len(nulls), c, p)
            if self.stc:
                out["null_rxx"] = zeros(len(nulls), c, p, p)
        for i in range(0, len(x), SUM_ROWS):  # float64 a block of rows at a time: bounded memory
            rows = slice(i, i + SUM_ROWS)
            xs = x[rows].to(torch.float64)
            flat, rs = xs.flatten(1), r[rows]
            out["rx"] += rs.T @ flat
            out["x"] += flat.sum(0)
            xp = self._patch(xs)
            if self.moments:
                out["xx"] += xp.T @ xp
            for k, rk in enumerate(nulls):
                out["null_rx"][k] += rk[rows].T @ xp
            for j in range(c) if self.stc else ():
                out["rxx"][j] += (xp * rs[:, j:j + 1]).T @ xp
                for k, rk in enumerate(nulls):
                    out["null_rxx"][k, j] += (xp * rk[rows, j:j + 1]).T @ xp
        return out

    def finalize(self, sums, n, meta):
        s = dict(sums)
        rx = s.pop("rx").reshape(-1, *self.shape)
        x = s.pop("x").reshape(self.shape)
        return SpikeTriggered(rx, s.pop("r"), s.pop("r2"), x, n, window=self.window, normalize=self.normalize,
                              meta=meta, stimulus=repr(self.stimulus), **self.info, **s)


def spike_triggered_average(model, layer: str, stimulus, n_samples: int, *, seed: int = 0, position=None,
                            channels=None, nonlinearity=None, normalize: str = "response", whiten: bool = False,
                            stc: bool = False, shuffles: int | None = None, batch_size: int | None = None,
                            device=None, fast=None, progress: bool | None = None, shard=None, checkpoint=None,
                            checkpoint_every: float = 60.0) -> SpikeTriggered:
    """Spike-triggered average of every channel of ``layer`` at one position (the paper's Fig. 8).

    ``model``: a model or a :class:`wna.Probe` (its device, fast path, batch
    size and progress setting are used unless given here); ``layer``: a name
    from ``model.named_modules()``, read with a forward hook (its output, so
    pre-ReLU for the MNIST CNN's ``conv1``/``conv2``: pass
    ``nonlinearity=torch.relu`` for the paper's post-ReLU responses);
    ``position``: ``(i, j)`` in the layer's feature map, its centre by
    default (None for a layer without a spatial map); ``channels``: indices
    to analyse (all when None); ``normalize``: ``"response"`` (divide by the
    summed response, Eq. 4) or ``"count"`` (by the number of stimuli, the
    authors' code). ``whiten=True`` also sums the stimulus second moments
    over the receptive-field patch for :meth:`SpikeTriggered.whitened`
    (Eq. 5); ``stc=True`` the response-weighted ones for
    :meth:`SpikeTriggered.stc`, with ``shuffles`` shuffled-response nulls
    (default 19 with ``stc``, a 5% permutation test, else 0; each costs as
    much as the STC itself: choose ``channels`` for large patches).
    ``seed``, ``shard``, ``checkpoint``: as :meth:`wna.Probe.run` (same
    seed, same result bitwise; shards merge, see :meth:`wna.engine.Result.merge`).
    """
    _check_normalize(normalize)
    shape = Estimator(stimulus).shape  # checks the stimulus
    with probe_for(model, device=device, fast=fast, batch_size=batch_size, progress=progress) as probe:
        net = probe._plain()  # the model on the probe's device
        fshape = feature_shape(net, layer, shape, probe.device)
        pos, rf, window = unit_geometry(net, layer, fshape, shape, position)
        if channels is not None:
            channels = tuple(int(c) for c in channels)
            if not channels or not all(0 <= c < fshape[0] for c in channels):
                raise ValueError(f"channels must be indices in [0, {fshape[0]}), got {channels}")
        info = {"layer": layer, "position": pos, "rf": rf, "channels": channels,
                "nonlinearity": None if nonlinearity is None else getattr(nonlinearity, "__name__", repr(nonlinearity))}
        if shuffles is None:
            shuffles = STC_SHUFFLES if stc else 0
        est = STAEstimator(stimulus, window, whiten=whiten, stc=stc, shuffles=shuffles, normalize=normalize,
                           info=info, nonlinearity=nonlinearity)
        return probe.run(est, n_samples, seed=seed, shard=shard, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, desc=f"STA {layer}")
