"""The paper's architectures (its Figs. 10 and 11).

Every classifier's ``forward`` returns logits only (the autoencoder's and the
VAE's return their reconstruction, also one tensor). Inner activations are
read by layer name with forward hooks (:func:`record`), never returned as tuples; the
authors' models returned ``(softmax, x3, x2, x1)`` and then applied
cross-entropy to the softmax, a bug this package does not copy.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MnistCNN", "LogisticRegression", "MLP", "RNN", "CifarCNN", "Autoencoder", "VAE", "build", "record",
           "decide", "binary_logit", "ARCHITECTURES"]


class MnistCNN(nn.Module):
    """The paper's MNIST CNN: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10.

    Layer names (for :func:`record`): ``conv1``, ``conv2`` (pre-ReLU conv
    outputs), ``fc1`` (pre-ReLU), ``fc2`` (logits).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class LogisticRegression(nn.Module):
    """Multinomial logistic regression on flattened pixels (784 -> 10)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """Two-layer perceptron (the paper's Fig. 13): 784 -> 1000 (ReLU) -> 10.

    Layer names: ``fc1`` (pre-ReLU hidden), ``fc2`` (logits).
    """

    def __init__(self, in_features: int = 784, hidden: int = 1000, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class RNN(nn.Module):
    """The paper's RNN (Fig. 10): 2-layer tanh RNN, hidden 100, the 28 image rows as time steps,
    a linear read-out of the last step.

    Layer names: ``rnn`` (its output is the tuple ``(outputs, h_n)``), ``fc`` (logits).
    """

    def __init__(self, input_dim: int = 28, hidden: int = 100, layers: int = 2, num_classes: int = 10):
        super().__init__()
        self.rnn = nn.RNN(input_dim, hidden, layers, batch_first=True, nonlinearity="tanh")
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.reshape(x.shape[0], -1, self.rnn.input_size)  # (B, rows, columns)
        out, _ = self.rnn(seq)
        return self.fc(out[:, -1])


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class CifarCNN(nn.Module):
    """The paper's CIFAR-10 CNN (its Fig. 11, the authors' ``Model(p)`` with p = 32).

    Three blocks of two 3x3 convolutions (the first followed by batch norm),
    each block followed by 2x2 max pooling, then three fully connected layers::

        conv1     Conv(3, 32) BN act Conv(32, 64) act        32x32
        pool1     MaxPool 2                                  16x16
        conv2     Conv(64, 128) BN act Conv(128, 128) act
        pool2     MaxPool 2, Dropout2d(0.05)                 8x8
        conv3     Conv(128, 256) BN act Conv(256, 256) act
        pool3     MaxPool 2                                  4x4
        fc_layer1 Dropout(0.1) Linear(4096, 1024) act Linear(1024, 512) act
        fc_layer2 Dropout(0.1) Linear(512, 10)

    ``activation`` is ``"relu"`` (the paper) or ``"tanh"``; activations are not
    in-place, so forward hooks see each layer's own output. ``width``
    multiplies every channel and feature count (rounded, at least 1): 0.25
    gives a model that trains in minutes on a CPU.

    Layer names (for :func:`record`): ``conv1``, ``conv2``, ``conv3`` (each
    block's output after its last activation), ``pool1``..``pool3``,
    ``fc_layer1`` (post-activation 512 features), ``fc_layer2`` (logits); the
    layers inside a block are ``conv1.0`` (first conv), ``conv1.2`` (its
    activation), ``conv1.3`` (second conv), ....
    """

    def __init__(self, activation: str = "relu", width: float = 1.0, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        act = _ACTIVATIONS[activation]
        self.activation, self.width = activation, float(width)

        def w(n: int) -> int:
            return max(1, int(n * width + 0.5))

        def block(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_mid, 3, padding=1), nn.BatchNorm2d(c_mid), act(),
                                 nn.Conv2d(c_mid, c_out, 3, padding=1), act())

        self.conv1 = block(in_channels, w(32), w(64))
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = block(w(64), w(128), w(128))
        self.pool2 = nn.Sequential(nn.MaxPool2d(2, 2), nn.Dropout2d(0.05))
        self.conv3 = block(w(128), w(256), w(256))
        self.pool3 = nn.MaxPool2d(2, 2)
        self.fc_layer1 = nn.Sequential(nn.Dropout(0.1), nn.Linear(w(256) * 4 * 4, w(1024)), act(),
                                       nn.Linear(w(1024), w(512)), act())
        self.fc_layer2 = nn.Sequential(nn.Dropout(0.1), nn.Linear(w(512), num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.pool3(self.conv3(x))
        return self.fc_layer2(self.fc_layer1(x.flatten(1)))


def _binary_cnn(**kwargs) -> MnistCNN:
    """The Fig. 10 CNN with one output logit: a binary observer (class 1 when the logit > 0)."""
    return MnistCNN(num_classes=1, **kwargs)


ARCHITECTURES = {
    "mnist_cnn": MnistCNN,
    "binary_cnn": _binary_cnn,
    "logreg": LogisticRegression,
    "mlp": MLP,
    "rnn": RNN,
    "cifar_cnn": CifarCNN,
}


def binary_logit(logits: torch.Tensor) -> torch.Tensor:
    """A single output column ``(B, 1)`` as ``(B,)``; other outputs unchanged."""
    return logits[:, 0] if logits.ndim == 2 and logits.shape[1] == 1 else logits


def decide(logits: torch.Tensor) -> tuple[torch.Tensor, int]:
    """An observer's decisions and its number of classes.

    ``(B, C)`` logits: the argmax, C classes. One output, ``(B,)`` or
    ``(B, 1)``: a binary observer, class 1 when the logit is > 0.
    """
    logits = binary_logit(logits)
    if logits.ndim == 1:
        return (logits > 0).long(), 2
    return logits.argmax(1), int(logits.shape[1])


def build(arch: str, **kwargs) -> nn.Module:
    """A fresh, untrained model of the named architecture."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}") from None
    return cls(**kwargs)


@contextlib.contextmanager
def record(model: nn.Module, *names: str, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named submodules during forward passes.

    >>> with record(model, "conv1", "fc1") as acts:
    ...     logits = model(x)
    >>> acts["conv1"].shape

    The dict holds the output of the most recent forward pass of each layer.
    """
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"no layer named {unknown}; layers: {[n for n in modules if n]}")
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        def hook(_m, _inp, output, _name=name):
            if detach:
                output = (tuple(o.detach() for o in output) if isinstance(output, tuple)
                          else output.detach())
            out[_name] = output
        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


# Generative models of the paper's Fig. 15 (their architectures from its Fig. 10 and the
# authors' notebook auto_encode_classification_images.ipynb). They are not classifiers:
# ``forward`` returns the reconstruction, one tensor (B, 1, 28, 28); their decoders feed
# :class:`wna.stimuli.DecoderNoise`.

class Autoencoder(nn.Module):
    """The paper's autoencoder: 784-128-64-12-9 (ReLU between) and back, a tanh output.

    ``encoder`` and ``decoder`` are ``nn.Sequential``; :meth:`encode` takes
    ``(B, 1, 28, 28)`` or ``(B, 784)`` images in [0, 1] to codes ``(B, 9)``,
    :meth:`decode` codes to images ``(B, 1, 28, 28)`` in [-1, 1] (tanh; the model
    is trained on [0, 1] targets, so trained outputs lie mostly in [0, 1]).

    ``code_mean`` and ``code_std`` (buffers, so in the state dict) are the
    per-dimension mean and standard deviation of the training images' codes,
    set by :meth:`fit_codes` after training (0 and 1 before); decoder noise
    draws its codes from that diagonal Gaussian.
    """

    def __init__(self, in_features: int = 784, latent_dim: int = 9, image_shape=(1, 28, 28)):
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.encoder = nn.Sequential(
            nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
            nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, latent_dim))
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 12), nn.ReLU(), nn.Linear(12, 64), nn.ReLU(),
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, in_features), nn.Tanh())
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_std", torch.ones(latent_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(-1, *self.image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.inference_mode()
    def fit_codes(self, images: torch.Tensor, batch_size: int = 4096) -> None:
        """Set ``code_mean`` / ``code_std`` to the per-dimension mean and (n - 1) std of the codes
        of ``images``; the training flag is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            codes = torch.cat([self.encode(images[i:i + batch_size]).double()
                               for i in range(0, len(images), batch_size)])
        finally:
            self.train(was_training)
        std, mean = torch.std_mean(codes, dim=0)
        self.code_mean.copy_(mean)
        self.code_std.copy_(std)


class VAE(nn.Module):
    """The paper's variational autoencoder: ``fc1`` 784-400 (ReLU), ``fc21`` / ``fc22``
    400-20 (mean and log-variance of the code), ``fc3`` 20-400 (ReLU), ``fc4`` 400-784 (sigmoid).

    ``forward(x)`` returns one tensor, the decoding of the code's mean
    ``decode(mu)`` (deterministic; used for the test reconstruction error).
    Training uses :meth:`loss`, which samples the code through
    :meth:`reparametrize` with an explicit generator. Codes of decoder noise
    come from the prior N(0, I).
    """

    def __init__(self, in_features: int = 784, hidden: int = 400, latent_dim: int = 20, image_shape=(1, 28, 28)):
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc21 = nn.Linear(hidden, latent_dim)
        self.fc22 = nn.Linear(hidden, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden)
        self.fc4 = nn.Linear(hidden, in_features)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of the code, each ``(B, latent_dim)``."""
        h = F.relu(self.fc1(x.flatten(1)))
        return self.fc21(h), self.fc22(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))).reshape(-1, *self.image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])

    @staticmethod
    def reparametrize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)`` drawn from ``generator``."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    @staticmethod
    def kld(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) || N(0, I)) summed over the batch:
        ``-0.5 * sum(1 + logvar - mu^2 - exp(logvar))``."""
        return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    def loss(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The authors' loss, summed over the batch: squared reconstruction error + KL divergence."""
        mu, logvar = self.encode(x)
        recon = self.decode(self.reparametrize(mu, logvar, generator))
        return F.mse_loss(recon, x.reshape(recon.shape), reduction="sum") + self.kld(mu, logvar)


ARCHITECTURES["autoencoder"] = Autoencoder
ARCHITECTURES["vae"] = VAE
