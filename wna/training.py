"""One training loop for every model of the zoo (classifiers, autoencoder, VAE).

:func:`train` trains a :class:`Recipe` from scratch, deterministically: the
initial weights and the dropout masks come from the global generator seeded
with ``recipe.seed`` inside :func:`torch.random.fork_rng` (the caller's state
is restored), the batches and their augmentation from a
:class:`torch.Generator` seeded the same way, and the run uses a fixed number
of torch threads (CPU kernels split their sums by thread count, so the float
rounding, and with it the weights, depend on it).

What differs between the kinds of model is the objective and the test score:

- a classifier minimises cross-entropy on logits (sigmoid cross-entropy for a
  single logit) and is scored by its test accuracy (:func:`evaluate`);
- an autoencoder minimises the mean squared error per pixel, a VAE its summed
  squared error plus KL divergence (its code sampled from the batch
  generator); both are scored by :func:`reconstruction_error`, and an
  autoencoder's ``code_mean`` / ``code_std`` are fitted to the training codes
  afterwards (the paper's Fig. 15 draws codes from them).

:mod:`wna.zoo` keys its checkpoints on :func:`code_source`, the source of the
functions here that shape the weights.
"""

from __future__ import annotations

import contextlib
import inspect
import platform
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import models

__all__ = ["Recipe", "GENERATIVE", "train", "build", "evaluate", "reconstruction_error", "random_crop_flip",
           "binary_subset", "fixed_threads", "environment", "code_source"]

# Architectures trained to reconstruct their input, not to classify.
GENERATIVE = {"autoencoder", "vae"}


@dataclass(frozen=True)
class Recipe:
    arch: str
    dataset: str
    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 1
    n_train: int | None = None  # first n training images (None: all)
    digits: tuple[int, int] | None = None  # binary task: (class 0 digit, class 1 digit)
    weight_decay: float = 0.0  # Adam's L2 penalty (generative models only, for now)
    augment: bool = False  # random 4-pixel-padded crops and horizontal flips (random_crop_flip)
    width: float = 1.0  # cifar_cnn only: channel/feature multiplier
    activation: str = "relu"  # cifar_cnn only: "relu" or "tanh"


def build(recipe: Recipe) -> torch.nn.Module:
    """A fresh model of the recipe's architecture (with its width and activation where it has them)."""
    if recipe.arch == "cifar_cnn":
        return models.build(recipe.arch, width=recipe.width, activation=recipe.activation)
    return models.build(recipe.arch)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation, drawn from ``generator``, vectorised on the batch.

    Each image ``(C, H, W)`` of ``x`` is zero-padded by ``padding`` pixels on
    every side and cropped back to ``H x W`` at a random offset (rows and
    columns each uniform in ``0 .. 2 * padding``), then mirrored left-right
    with probability 1/2. Draws, in this order: row offsets, column offsets,
    flips (one value per image each).
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    rows = dy[:, None] + torch.arange(h)  # (n, h) rows of the padded image
    cols = dx[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (n, h, w, C)
    return out.permute(0, 3, 1, 2).contiguous()


def binary_subset(x: torch.Tensor, y: torch.Tensor, digits) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of two digits, labelled 0 (``digits[0]``) and 1 (``digits[1]``)."""
    keep = (y == digits[0]) | (y == digits[1])
    return x[keep], (y[keep] == digits[1]).long()


@torch.inference_mode()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 2048) -> float:
    """Accuracy of ``model`` on ``images`` (fraction in [0, 1]); one logit means binary (> 0)."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        correct += int((models.decide(model(images[i:i + batch_size]))[0] == labels[i:i + batch_size]).sum())
    return correct / len(images)


@torch.inference_mode()
def reconstruction_error(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 2048) -> float:
    """Mean squared error per pixel between ``model(images)`` and ``images`` (summed in float64).

    The model runs in eval mode; its training flag is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            out = model(x)
            total += float((out.double() - x.reshape(out.shape).double()).pow(2).sum())
    finally:
        model.train(was_training)
    return total / images.numel()


@contextlib.contextmanager
def fixed_threads(n: int):
    """Run the block on ``n`` torch intra-op threads; restore the caller's count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment(threads: int) -> dict:
    """What bitwise-equal training still depends on besides the recipe and the code."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": threads, "machine": platform.machine(), "cpu": _cpu_name(),
            "python": platform.python_version()}


def _objective(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor, g: torch.Generator):
    """The batch's loss to minimise and its share of the epoch's summed loss."""
    if isinstance(model, models.VAE):
        loss = model.loss(xb, g)  # summed over the batch
        return loss, loss.item()
    if isinstance(model, models.Autoencoder):
        loss = F.mse_loss(model(xb), xb)  # mean per pixel
    else:
        out = model(xb)
        if out.shape[1] == 1:  # binary observer: one logit, sigmoid cross-entropy
            loss = F.binary_cross_entropy_with_logits(out[:, 0], yb.to(out.dtype))
        else:
            loss = F.cross_entropy(out, yb)
    return loss, loss.item() * len(xb)


def train(recipe: Recipe, load_data, threads: int, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train ``recipe`` from scratch on ``load_data(train=...)``, deterministically; return the model
    and a record (``test_accuracy`` or ``test_mse``, the per-epoch ``history``, ``train_seconds`` and
    :func:`environment`).

    Bitwise the same weights whatever the process's thread settings: the run
    uses ``threads`` torch threads (restored afterwards).
    """
    with fixed_threads(threads):
        x, y = load_data(train=True)
        xt, yt = load_data(train=False)
        if recipe.digits is not None:
            x, y = binary_subset(x, y, recipe.digits)
            xt, yt = binary_subset(xt, yt, recipe.digits)
        if recipe.n_train is not None:
            x, y = x[:recipe.n_train], y[:recipe.n_train]
        generative = recipe.arch in GENERATIVE
        score = "test_mse" if generative else "test_accuracy"
        steps = recipe.epochs * -(-len(x) // recipe.batch_size)
        with torch.random.fork_rng(devices=[]), tqdm(total=steps, desc=f"train {recipe.arch}", unit="step",
                                                     disable=not progress, dynamic_ncols=True, leave=False) as bar:
            torch.manual_seed(recipe.seed)
            model = build(recipe)
            opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
            g = torch.Generator().manual_seed(recipe.seed)
            history = []
            t0 = time.perf_counter()
            for epoch in range(recipe.epochs):
                model.train()
                perm = torch.randperm(len(x), generator=g)
                total = 0.0
                for i in range(0, len(x), recipe.batch_size):
                    idx = perm[i:i + recipe.batch_size]
                    xb = random_crop_flip(x[idx], g) if recipe.augment else x[idx]
                    loss, share = _objective(model, xb, y[idx], g)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += share
                    bar.update(1)
                value = reconstruction_error(model, xt) if generative else evaluate(model, xt, yt)
                history.append({"epoch": epoch + 1, "train_loss": total / len(x), score: value,
                                "elapsed_seconds": time.perf_counter() - t0})
                bar.set_postfix(loss=f"{total / len(x):.4f}", **{score: f"{value:.4f}"})
            if isinstance(model, models.Autoencoder):
                model.fit_codes(x)
        model.eval()
        record = {"test_accuracy": None if generative else history[-1][score], "history": history,
                  "train_seconds": time.perf_counter() - t0, **environment(threads)}
        if generative:
            record["test_mse"] = history[-1][score]
        return model, record


def code_source(recipe: Recipe) -> str:
    """The source of the code that shapes a recipe's weights: this loop, its objective and scores,
    the augmentation, the decisions and the architecture (a change to any of them is a new model)."""
    parts = [train, _objective, fixed_threads, build, evaluate, reconstruction_error, binary_subset,
             random_crop_flip, models.decide, models.binary_logit, models.ARCHITECTURES[recipe.arch]]
    if recipe.arch == "binary_cnn":
        parts.append(models.MnistCNN)
    return "".join(inspect.getsource(p) for p in parts)
