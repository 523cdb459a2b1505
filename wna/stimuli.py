"""Stimulus generators.

Every generator has a ``.shape`` (of one stimulus, without the batch axis) and
``.sample(n, generator) -> Tensor`` of shape ``(n, *shape)`` drawn only from
the given :class:`torch.Generator` (on the generator's device), so that a
seed fixes the stimuli exactly.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import math
import numbers
import threading
from typing import Protocol, runtime_checkable

import torch

from ._gabor import GaborPCANoise
from ._stream import digest, fingerprint

__all__ = ["Stimulus", "WhiteNoise", "GaborPCANoise", "DecoderNoise", "Rows", "mix"]


@runtime_checkable
class Stimulus(Protocol):
    shape: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor: ...


class WhiteNoise:
    """Independent pixel noise: uniform U[low, high] (the paper's U[0,1]) or Gaussian.

    >>> noise = WhiteNoise((1, 28, 28))                       # U[0, 1]
    >>> noise = WhiteNoise((1, 28, 28), "gaussian", mean=0.5, std=0.25)
    """

    def __init__(self, shape, distribution: str = "uniform", *, low: float = 0.0, high: float = 1.0,
                 mean: float = 0.0, std: float = 1.0, dtype: torch.dtype = torch.float32):
        shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,)))
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"shape must be non-empty positive sizes, got {shape}")
        if distribution not in ("uniform", "gaussian"):
            raise ValueError(f"distribution must be 'uniform' or 'gaussian', got {distribution!r}")
        if distribution == "uniform" and not high > low:
            raise ValueError(f"need high > low, got low={low}, high={high}")
        if distribution == "gaussian" and not std > 0:
            raise ValueError(f"need std > 0, got {std}")
        self.shape = shape
        self.distribution = distribution
        self.low, self.high, self.mean, self.std = float(low), float(high), float(mean), float(std)
        self.dtype = dtype

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        dev = generator.device
        if self.distribution == "uniform":
            x = torch.rand((n, *self.shape), generator=generator, device=dev, dtype=self.dtype)
            if (self.low, self.high) != (0.0, 1.0):
                x.mul_(self.high - self.low).add_(self.low)
        else:
            x = torch.randn((n, *self.shape), generator=generator, device=dev, dtype=self.dtype)
            if (self.mean, self.std) != (0.0, 1.0):
                x.mul_(self.std).add_(self.mean)
        return x

    def __repr__(self) -> str:
        p = (f"low={self.low}, high={self.high}" if self.distribution == "uniform"
             else f"mean={self.mean}, std={self.std}")
        return f"WhiteNoise({self.shape}, {self.distribution!r}, {p})"


class DecoderNoise:
    """Images decoded from random codes: the noise of the paper's Fig. 15.

    Codes ``z ~ N(mean, diag(std**2))`` of size ``latent_dim`` are drawn only
    from the generator (float32, on its device) and decoded; the images are
    clamped to ``clamp`` (``None``: not clamped) and come back as float32
    ``(n, *shape)``.

    >>> ae = zoo.load("mnist_autoencoder")
    >>> noise = DecoderNoise.from_model(ae)                   # codes ~ the training codes' Gaussian
    >>> noise = DecoderNoise(vae.decode, 20)                  # codes ~ N(0, I), the VAE's prior

    ``decoder`` is an ``nn.Module`` (its ``forward`` decodes) or a method of
    one (``model.decode``). The stimulus decodes with a **frozen copy** taken
    when it is built: eval mode, no gradients, one copy per device it is asked
    to sample on. The caller's module is never moved, switched to eval mode or
    otherwise changed, later changes to it do not reach the stimulus, and
    sampling from several threads at once is safe. ``repr`` names the copy by a
    hash of its state dict, so an engine checkpoint keyed by it cannot mix
    samples of two decoders.

    ``shape`` defaults to the decoder's output shape (one row); a different
    shape with as many elements reshapes it (``(784,)`` to ``(1, 28, 28)``).
    On the CPU the decoder runs on one torch thread (the caller's count
    restored after): matrix kernels split their sums by thread count, so this
    keeps the samples bitwise the same whatever the thread setting.
    """

    def __init__(self, decoder, latent_dim: int, *, mean=0.0, std=1.0, clamp=(0.0, 1.0), shape=None):
        if isinstance(decoder, torch.nn.Module):
            module, method = decoder, None
        elif inspect.ismethod(decoder) and isinstance(decoder.__self__, torch.nn.Module):
            module, method = decoder.__self__, decoder.__name__
        else:
            raise ValueError(f"decoder must be an nn.Module or a method of one, got {type(decoder).__name__}")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, numbers.Integral) or latent_dim < 1:
            raise ValueError(f"latent_dim must be an integer >= 1, got {latent_dim!r}")
        self.latent_dim = latent_dim = int(latent_dim)
        self.mean = self._code_vector("mean", mean)
        self.std = self._code_vector("std", std)
        if bool((self.std < 0).any()):
            raise ValueError("std must be >= 0")
        if clamp is not None:
            clamp = (float(clamp[0]), float(clamp[1]))
            if not clamp[0] < clamp[1]:
                raise ValueError(f"clamp must be (low, high) with low < high, got {clamp}")
        self.clamp = clamp
        self._method = method
        self._name = type(module).__qualname__ + (f".{method}" if method else "")
        frozen = copy.deepcopy(module).eval().requires_grad_(False)
        tensors = [*frozen.parameters(), *frozen.buffers()]
        home = tensors[0].device if tensors else torch.device("cpu")
        self._dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
        self._copies = {home: frozen}
        self._lock = threading.Lock()
        self._hash = fingerprint(frozen)[:16]
        try:
            with torch.inference_mode():
                out = self._decode(frozen, torch.zeros(2, latent_dim, device=home, dtype=self._dtype))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(f"the decoder does not take codes of size latent_dim={latent_dim}: {exc}") from exc
        if not isinstance(out, torch.Tensor) or out.ndim < 2 or out.shape[0] != 2:
            raise ValueError("the decoder must map codes (B, latent_dim) to a tensor (B, ...)")
        if shape is None:
            shape = tuple(out.shape[1:])
        shape = tuple(int(v) for v in (shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,)))
        if not shape or any(v < 1 for v in shape) or math.prod(shape) != out[0].numel():
            raise ValueError(f"shape {shape} does not hold the decoder's output {tuple(out.shape[1:])}")
        self.shape = shape

    @classmethod
    def from_model(cls, model, *, clamp=(0.0, 1.0)) -> "DecoderNoise":
        """The decoder noise of an autoencoder or VAE (e.g. from :func:`wna.zoo.load`).

        The model needs ``decode(z)`` and ``latent_dim``. Codes come from its
        fitted code distribution when it has one, else from N(0, I) (the VAE's
        prior). The autoencoder's is a diagonal Gaussian fitted to the codes
        of its training images (``code_mean`` / ``code_std``, per dimension,
        set by the zoo after training). The authors drew its codes ad hoc
        (``torch.rand`` / ``randn``); an autoencoder has no prior, and its
        codes live far from N(0, I) (means of -5 to 3.5, std 1.4 to 2.2 after
        2 epochs), so the fitted Gaussian keeps the decoded samples in the
        data's latent region. Its tanh output in [-1, 1] is clamped to
        ``clamp``, by default the classifiers' input range [0, 1]; as it was
        trained on [0, 1] targets, the clamp cuts only undershoot.
        """
        if not (isinstance(model, torch.nn.Module) and callable(getattr(model, "decode", None))
                and isinstance(getattr(model, "latent_dim", None), numbers.Integral)):
            raise ValueError(f"{type(model).__name__} has no decoder: from_model needs an nn.Module "
                             "with decode(z) and latent_dim (wna.models.Autoencoder or VAE)")
        mean, std = getattr(model, "code_mean", None), getattr(model, "code_std", None)
        if mean is None or std is None:
            mean, std = 0.0, 1.0
        return cls(model.decode, model.latent_dim, mean=mean, std=std, clamp=clamp)

    def _code_vector(self, name, v) -> torch.Tensor:
        t = torch.as_tensor(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=torch.float32)
        if t.ndim > 1 or (t.ndim == 1 and t.numel() not in (1, self.latent_dim)):
            raise ValueError(f"{name} must be a number or {self.latent_dim} numbers (latent_dim), "
                             f"got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite")
        return t.expand(self.latent_dim).clone()

    def _decode(self, module, z):
        return getattr(module, self._method)(z) if self._method else module(z)

    def _copy_on(self, device: torch.device):
        with self._lock:
            if device not in self._copies:
                self._copies[device] = copy.deepcopy(next(iter(self._copies.values()))).to(device)
            return self._copies[device]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        n = int(n)
        dev = torch.device(generator.device)
        module = self._copy_on(dev)
        z = torch.randn((n, self.latent_dim), generator=generator, device=dev, dtype=torch.float32)
        z = (z * self.std.to(dev) + self.mean.to(dev)).to(self._dtype)
        outside = not torch.is_inference_mode_enabled()
        with torch.inference_mode(), (_one_thread() if dev.type == "cpu" else contextlib.nullcontext()):
            x = self._decode(module, z).reshape(n, *self.shape).to(torch.float32)
            if self.clamp is not None:
                x = x.clamp(*self.clamp)
        return x.clone() if outside else x  # an ordinary tensor for callers outside inference mode

    def __getstate__(self):  # copy / pickle without the lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        def code(v):
            return (str(float(v[0])) if bool((v == v[0]).all())
                    else f"<{self.latent_dim} values #{_digest(v)}>")
        return (f"DecoderNoise({self._name} #{self._hash}, latent_dim={self.latent_dim}, "
                f"mean={code(self.mean)}, std={code(self.std)}, clamp={self.clamp}, shape={self.shape})")


class Rows:
    """A finite data set as a stimulus: rows in order (``sample_at``), never drawn at random.

    ``labels`` may be None (the test digits of a bias-map attack need none).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        self.images = torch.as_tensor(images, dtype=torch.float32)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        n = len(self.images)
        if self.images.ndim < 2 or n == 0 or (self.labels is not None and self.labels.shape != (n,)):
            raise ValueError(f"need images (N, ...) with N > 0 and labels (N,), got "
                             f"{tuple(self.images.shape)} and "
                             f"{None if self.labels is None else tuple(self.labels.shape)}")
        self.shape = tuple(self.images.shape[1:])
        named = [("images", self.images)] + ([] if self.labels is None else [("labels", self.labels)])
        self.digest = digest("rows", named)[:12]

    def sample(self, n, generator):
        raise ValueError("a data set is streamed in order (sample_at), not drawn at random")

    def rows(self, start: int, n: int):
        """Images and labels (None without labels) of rows ``[start, start + n)``."""
        if start + n > len(self.images):
            raise ValueError(f"rows [{start}, {start + n}) of a data set of "
                             f"{len(self.images)}: run "
                             f"with n_samples <= {len(self.images)}")
        end = start + n
        return self.images[start:end], None if self.labels is None else self.labels[start:end]

    def head(self, start: int, n: int):
        """:meth:`rows` from ``start``, at most ``n`` of them (the probe's first test chunk may ask
        for more rows than the data set has)."""
        return self.rows(start, min(n, len(self.images) - start))

    def __repr__(self) -> str:
        return f"Rows(n={len(self.images)}, shape={self.shape}, #{self.digest})"


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:12]


@contextlib.contextmanager
def _one_thread():
    """Run the block on one torch intra-op thread (a per-thread setting); restore the count after."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mix(signal: torch.Tensor, noise: torch.Tensor, gamma: float) -> torch.Tensor:
    """The paper's Eq. 3: ``t = gamma * signal + (1 - gamma) * noise``."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    return gamma * signal + (1.0 - gamma) * noise
