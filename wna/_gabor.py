"""Gabor-PCA noise: the paper's Appendix (after Greene et al. 2014), as a fitted stimulus.

Each image channel is regressed (ridge, ``alpha=0.1``) on a bank of OpenCV
Gabor kernels tiled on non-overlapping grids; the Gabor coefficients of the
training images go through a PCA; a stimulus draws each PCA score uniformly
between that component's observed minimum and maximum and maps the scores
back to pixels (``scores @ components @ basis``, without the PCA mean, as the
authors did), then min-max normalises every image channel to [0, 1].

Differences from the authors' notebook, none of which changes the method:
channels and chunks of images are fitted one at a time (bounded memory; the
per-image regressions are independent, so the chunks give the single fit);
scikit-learn's ``Ridge`` is applied in its closed form, computed once for the
bank; the PCA defaults to scikit-learn's exact ``covariance_eigh`` solver;
``components @ basis`` is computed once so that sampling is one matmul.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time

import numpy as np
import torch

FORMAT = "wna.GaborPCANoise"
FORMAT_VERSION = 1
DEFAULT_KERNEL_SIZES = {28: (3, 7, 15), 32: (3, 5, 9, 17)}  # MNIST, CIFAR-10 (the Appendix)
THETAS = tuple(i * math.pi / 4 for i in range(4))  # 0, 45, 90, 135 degrees
PSIS = tuple(i * math.pi / 2 for i in range(2))  # 0, 90 degrees
SOLVERS = ("covariance_eigh", "full", "randomized", "arpack", "auto")
PARAMS = ("n_components", "alpha", "kernel_sizes", "chunk_size", "svd_solver", "random_state")
STATE = ("shape", "kernel_sizes_", "n_images", "fit_seconds", "components", "mean", "score_min", "score_max",
         "explained_variance_ratio", "projection")


def gabor_kernel(k: int, theta: float, psi: float) -> np.ndarray:
    """The authors' ``k x k`` OpenCV Gabor kernel (float32), min-max normalised to [0, 1]."""
    import cv2

    ker = cv2.getGaborKernel((k, k), k / 7.0, theta, k / 2.0, 0.5, psi, ktype=cv2.CV_32F)
    return (ker - ker.min()) / (ker.max() - ker.min())


def gabor_basis(side: tuple[int, int], kernel_sizes) -> np.ndarray:
    """The basis ``(n_wavelets, H * W)`` float64: every kernel on every cell of its grid.

    For kernel size ``k`` the grid has ``ceil(H/k) x ceil(W/k)`` cells; cell
    ``(i, j)`` holds the kernel at rows ``k*i ...`` and columns ``k*j ...``, cut at
    the border. Order: size, theta, psi, grid row, grid column (the authors').
    """
    h, w = side
    rows = []
    for k in kernel_sizes:
        for theta in THETAS:
            for psi in PSIS:
                ker = gabor_kernel(k, theta, psi)
                for i in range(math.ceil(h / k)):
                    for j in range(math.ceil(w / k)):
                        tmp = np.zeros((h, w))
                        si, sj = min(k * (i + 1), h) - k * i, min(k * (j + 1), w) - k * j
                        tmp[k * i:k * i + si, k * j:k * j + sj] = ker[:si, :sj]
                        rows.append(tmp.ravel())
    return np.stack(rows)


def ridge_operator(basis: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(A, xmean)``: the ridge coefficients of images ``y`` (n, pixels) are ``y @ A``.

    The closed form of ``sklearn.linear_model.Ridge(alpha).fit(basis.T, y.T)``
    (pixels as samples, one target per image, intercept fitted): with the
    basis centred over pixels, ``Xc``, scikit-learn's Cholesky kernel solver
    gives ``coef = Xc^T (Xc Xc^T + alpha I)^-1 y`` (centring ``y`` changes
    nothing, as ``Xc^T 1 = 0``) and ``intercept = mean(y) - coef @ xmean``.
    Computed once, then every chunk of images is one matmul.
    """
    xmean = basis.mean(1)
    xc = basis.T - xmean  # (pixels, wavelets)
    k = xc @ xc.T
    k[np.diag_indices_from(k)] += alpha
    return np.linalg.solve(k, xc), xmean


def ridge(op, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (n, wavelets) and intercepts (n,) of images ``y`` (n, pixels); ``op``: :func:`ridge_operator`."""
    a, xmean = op
    coef = y @ a
    return coef, y.mean(1) - coef @ xmean


@functools.lru_cache(maxsize=4)
def _bank_for(side: tuple[int, int], kernel_sizes: tuple[int, ...], alpha: float):
    """``(basis, ridge operator)``, read-only and shared: several banks (and refits) build it once."""
    basis = gabor_basis(side, kernel_sizes)
    op = ridge_operator(basis, alpha)
    for a in (basis, *op):
        a.flags.writeable = False
    return basis, op


def _images(images, name="images") -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or min(x.shape) < 1:
        raise ValueError(f"{name} must be (N, C, H, W) or (N, H, W) with non-zero sizes, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got {x.dtype}")
    return x


class GaborPCANoise:
    """Gabor-PCA noise (the paper's Appendix): ``fit`` on images, then ``sample``.

    >>> noise = GaborPCANoise(250).fit(mnist_train_images)   # (N, 1, 28, 28) in [0, 1]
    >>> noise.variance_kept_                                  # the paper: 0.961
    >>> x = noise.sample(1000, torch.Generator().manual_seed(0))  # (1000, 1, 28, 28)

    ``kernel_sizes`` defaults to the paper's for 28x28 (3, 7, 15) and 32x32
    (3, 5, 9, 17) images; other sizes need it. ``chunk_size`` images are
    regressed at a time; colour channels get their own ridge and PCA.
    ``svd_solver`` is scikit-learn's PCA solver; the default (None) takes the
    exact ``covariance_eigh`` (no copy of the coefficient matrix) when there
    are at least as many images as wavelets, else ``full``; ``random_state``
    seeds the randomized solvers.

    After ``fit``: ``shape`` (C, H, W), ``n_wavelets``, ``n_images_``,
    ``explained_variance_ratio_`` (C, n_components) per component and channel
    as in scikit-learn, ``variance_kept_`` (C,) its sum per channel,
    ``components_`` (C, n_components, n_wavelets), ``mean_`` (C, n_wavelets),
    ``score_min_`` / ``score_max_`` (C, n_components), ``kernel_sizes_``, ``fit_seconds_``.
    """

    def __init__(self, n_components: int = 250, *, alpha: float = 0.1, kernel_sizes=None,
                 chunk_size: int = 4096, svd_solver: str | None = None, random_state: int = 0):
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be a positive int, got {n_components!r}")
        if not alpha > 0:  # the centred basis's Gram matrix is singular: the ridge needs alpha > 0
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if svd_solver is not None and svd_solver not in SOLVERS:
            raise ValueError(f"svd_solver must be one of {SOLVERS}, got {svd_solver!r}")
        if kernel_sizes is not None:
            if not len(kernel_sizes) or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1
                                            for k in kernel_sizes):
                raise ValueError(f"kernel_sizes must be positive ints, got {kernel_sizes!r}")
            kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.n_components, self.alpha, self.kernel_sizes = n_components, float(alpha), kernel_sizes
        self.chunk_size, self.svd_solver, self.random_state = chunk_size, svd_solver, random_state
        self.shape, self._on_device, self._digest = None, {}, None


    def _sizes_for(self, h: int, w: int) -> tuple[int, ...]:
        if self.kernel_sizes is not None:
            return self.kernel_sizes
        if h == w and h in DEFAULT_KERNEL_SIZES:
            return DEFAULT_KERNEL_SIZES[h]
        raise ValueError(f"no default kernel sizes for {h}x{w} images (the paper's are for 28x28 and "
                         f"32x32: {DEFAULT_KERNEL_SIZES}); pass kernel_sizes=...")

    def _bank(self, x: torch.Tensor) -> tuple[np.ndarray, tuple]:
        """The basis and its ridge operator for images ``x`` (cached once fitted)."""
        if self.shape is None:
            return _bank_for(tuple(x.shape[2:]), self._sizes_for(*x.shape[2:]), self.alpha)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"images of shape {tuple(x.shape[1:])}, but this noise is fitted to {self.shape}")
        return _bank_for(self.shape[1:], self.kernel_sizes_, self.alpha)

    @property
    def n_wavelets(self) -> int:
        self._check_fitted("n_wavelets")
        return int(self.components_.shape[2])

    def _check_fitted(self, what: str):
        if self.shape is None:
            raise ValueError(f"{what}: this GaborPCANoise is not fitted; call fit(images) first")

    def _chunks(self, x, bank, progress, desc):
        """Yield (channel, start, coefficients, intercepts) over channels and chunks of images."""
        from tqdm.auto import tqdm

        n, c = x.shape[:2]
        starts = range(0, n, self.chunk_size)
        with tqdm(total=c * len(starts), desc=desc, unit="chunk", disable=not progress) as bar:
            for ch in range(c):
                for i in starts:
                    y = x[i:i + self.chunk_size, ch].reshape(-1, bank[0].shape[1]).to(torch.float64)
                    if not torch.isfinite(y).all():
                        raise ValueError("images must be finite")
                    coef, icpt = ridge(bank[1], y.cpu().numpy())
                    bar.update()
                    yield ch, i, coef, icpt

    def coefficients(self, images, *, progress: bool = False) -> torch.Tensor:
        """The ridge coefficients of every image channel on the Gabor bank: float64 (N, C, n_wavelets)."""
        x = _images(images)
        bank = self._bank(x)
        out = torch.empty(x.shape[0], x.shape[1], bank[0].shape[0], dtype=torch.float64)
        for ch, i, coef, _ in self._chunks(x, bank, progress, "Gabor coefficients"):
            out[i:i + len(coef), ch] = torch.from_numpy(coef)
        return out

    def reconstruct(self, images, *, through_pca: bool = False, progress: bool = False) -> torch.Tensor:
        """Each image as the Gabor bank sees it: ``coef @ basis + intercept``, float32 like ``images``.

        Works before ``fit`` too (the bank depends only on the image size).
        ``through_pca=True`` (fitted only) first projects the coefficients on
        the fitted PCA components and back (``mean_ + scores @ components_``).
        """
        x = _images(images)
        if through_pca:
            self._check_fitted("reconstruct(through_pca=True)")
        bank = self._bank(x)
        out = torch.empty(x.shape, dtype=torch.float32)
        for ch, i, coef, icpt in self._chunks(x, bank, progress, "Gabor reconstruction"):
            if through_pca:
                comp, mean = self.components_[ch].numpy(), self.mean_[ch].numpy()
                coef = (coef - mean) @ comp.T @ comp + mean
            rec = coef @ bank[0] + icpt[:, None]
            out[i:i + len(coef), ch] = torch.from_numpy(rec.reshape(len(coef), *x.shape[2:]))
        return out


    def fit(self, images, *, progress: bool = True) -> "GaborPCANoise":
        """Fit the ridge and the PCA on ``images`` (N, C, H, W) or (N, H, W) in [0, 1]; returns self."""
        from sklearn.decomposition import PCA

        t0 = time.perf_counter()
        x = _images(images)
        n, c, h, w = x.shape
        sizes = self._sizes_for(h, w)
        bank = _bank_for((h, w), sizes, self.alpha)
        basis = bank[0]
        k, nw = self.n_components, basis.shape[0]
        if k > nw or k > n:
            raise ValueError(f"n_components={k} exceeds the number of wavelets ({nw}) or of images ({n})")
        comps, means, lo, hi, ratio, proj = [], [], [], [], [], []
        solver = self.svd_solver or ("covariance_eigh" if n >= nw else "full")
        coef = np.empty((n, nw))  # one channel at a time
        for ch, i, cf, _ in self._chunks(x, bank, progress, "Gabor-PCA fit"):
            coef[i:i + len(cf)] = cf
            if i + len(cf) < n:
                continue
            pca = PCA(k, svd_solver=solver, random_state=self.random_state).fit(coef)
            mn, mx = np.full(k, np.inf), np.full(k, -np.inf)
            for j in range(0, n, self.chunk_size):
                s = pca.transform(coef[j:j + self.chunk_size])
                mn, mx = np.minimum(mn, s.min(0)), np.maximum(mx, s.max(0))
            comps.append(pca.components_), means.append(pca.mean_), lo.append(mn), hi.append(mx)
            ratio.append(pca.explained_variance_ratio_)
            proj.append((pca.components_ @ basis).astype(np.float32))
        del coef
        t = lambda arrs: torch.from_numpy(np.stack(arrs))  # noqa: E731
        self._set_state(shape=[c, h, w], kernel_sizes_=list(sizes), n_images=n, fit_seconds=time.perf_counter() - t0,
                        components=t(comps), mean=t(means), score_min=t(lo), score_max=t(hi),
                        explained_variance_ratio=t(ratio), projection=t(proj))
        return self

    def _set_state(self, *, shape, kernel_sizes_, n_images, fit_seconds, components, mean, score_min,
                   score_max, explained_variance_ratio, projection):
        self._state = {k: v for k, v in locals().items() if k in STATE}  # what save() writes
        self.shape, self.kernel_sizes_ = tuple(int(s) for s in shape), tuple(int(k) for k in kernel_sizes_)
        self.n_images_, self.fit_seconds_ = int(n_images), float(fit_seconds)
        self.components_, self.mean_ = components, mean
        self.score_min_, self.score_max_ = score_min, score_max
        self.explained_variance_ratio_ = explained_variance_ratio
        self.variance_kept_ = tuple(float(v) for v in explained_variance_ratio.sum(1))
        self._projection = projection.contiguous()  # (C, n_components, H*W) float32: components @ basis
        self._lo = score_min.to(torch.float32)
        self._span = (score_max - score_min).to(torch.float32)
        self._on_device = {}
        h = hashlib.sha256(repr((self.shape, self.kernel_sizes_, self.alpha)).encode())
        for a in (self._projection, self._lo, self._span):
            h.update(a.numpy().tobytes())
        self._digest = h.hexdigest()[:12]


    def transform(self, images, *, progress: bool = False) -> torch.Tensor:
        """PCA scores of each image channel: float64 (N, C, n_components). (Gabor coefficients: ``coefficients``.)"""
        self._check_fitted("transform")
        x = _images(images)
        bank = self._bank(x)
        out = torch.empty(x.shape[0], x.shape[1], self.n_components, dtype=torch.float64)
        for ch, i, coef, _ in self._chunks(x, bank, progress, "Gabor-PCA transform"):
            comp, mean = self.components_[ch].numpy(), self.mean_[ch].numpy()
            out[i:i + len(coef), ch] = torch.from_numpy((coef - mean) @ comp.T)
        return out

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` stimuli, float32 (n, C, H, W), each channel min-max normalised to [0, 1].

        Drawn only from ``generator`` (one ``torch.rand`` of the scores, on its device).
        """
        self._check_fitted("sample")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        dev = generator.device
        if dev not in self._on_device:
            self._on_device[dev] = tuple(a.to(dev) for a in (self._projection, self._lo, self._span))
        proj, lo, span = self._on_device[dev]
        c = proj.shape[0]
        scores = torch.rand((n, c, self.n_components), generator=generator, device=dev).mul_(span).add_(lo)
        x = torch.stack([scores[:, ch] @ proj[ch] for ch in range(c)], 1)  # (n, C, H*W)
        mn, mx = x.amin(2, keepdim=True), x.amax(2, keepdim=True)
        return x.sub_(mn).div_(mx - mn).view(n, *self.shape)

    def save(self, path) -> None:
        """Write the fitted state (plain tensors and numbers, ``torch.load(weights_only=True)``)."""
        self._check_fitted("save")
        params = {k: getattr(self, k) for k in PARAMS}
        params["kernel_sizes"] = self.kernel_sizes and list(self.kernel_sizes)
        torch.save({"format": FORMAT, "version": FORMAT_VERSION, **params, **self._state}, path)

    @classmethod
    def load(cls, path) -> "GaborPCANoise":
        """Read a file written by :meth:`save`; it samples bitwise as the saved one did."""
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except Exception as exc:  # noqa: BLE001 - not a torch file, or one holding other objects
            raise ValueError(f"{path} is not a GaborPCANoise file ({type(exc).__name__})") from exc
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path} is not a GaborPCANoise file")
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path} is GaborPCANoise format version {d.get('version')}; "
                             f"this wna reads version {FORMAT_VERSION}")
        self = cls(**{k: d[k] for k in PARAMS})
        self._set_state(**{k: d[k] for k in STATE})
        return self

    def __repr__(self) -> str:
        head = f"GaborPCANoise(n_components={self.n_components}, alpha={self.alpha}"
        if self.shape is None:
            return f"{head}, kernel_sizes={self.kernel_sizes}, unfitted)"
        return (f"{head}, kernel_sizes={self.kernel_sizes_}, shape={self.shape}, n_images={self.n_images_}, "
                f"state={self._digest})")
