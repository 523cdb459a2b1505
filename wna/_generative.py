"""Training of the generative models of Fig. 15 (autoencoder, VAE) for :mod:`wna.zoo`.

The zoo's rules apply (fixed training threads, a seeded generator, the
record of what the weights still depend on); :func:`wna.zoo.load` calls
:func:`train_generative` for the architectures in ``zoo.GENERATIVE``, and the
source of these functions keys their checkpoints.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import models
from .zoo import DATASETS, TRAIN_THREADS, Recipe, _environment, _fixed_threads

__all__ = ["train_generative", "reconstruction_error"]


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


def train_generative(recipe: Recipe, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train an autoencoder or VAE recipe from scratch, deterministically (as :func:`train`).

    Adam with the recipe's ``weight_decay``; images in [0, 1] are both input
    and target. Autoencoder: mean squared error; afterwards its
    ``code_mean`` / ``code_std`` are fitted to the training images' codes.
    VAE: summed squared error + KL divergence, the code sampled with the
    seeded generator that also shuffles the batches. The record holds
    ``test_mse`` (per pixel, 10,000 test images) and ``test_accuracy=None``;
    ``history[i]["train_loss"]`` is the objective per image (VAE) or per pixel
    (autoencoder).
    """
    with _fixed_threads(TRAIN_THREADS):
        return _train_generative(recipe, progress)


def _train_generative(recipe: Recipe, progress: bool) -> tuple[torch.nn.Module, dict]:
    load_data = DATASETS[recipe.dataset]
    x, _ = load_data(train=True)
    xt, _ = load_data(train=False)
    if recipe.n_train is not None:
        x = x[:recipe.n_train]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = models.build(recipe.arch)
    variational = isinstance(model, models.VAE)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    g = torch.Generator().manual_seed(recipe.seed)
    history = []
    t0 = time.perf_counter()
    n_steps = recipe.epochs * -(-len(x) // recipe.batch_size)
    with tqdm(total=n_steps, desc=f"train {recipe.arch}", unit="step", disable=not progress,
              dynamic_ncols=True, leave=False) as bar:
        for epoch in range(recipe.epochs):
            model.train()
            perm = torch.randperm(len(x), generator=g)
            total = 0.0
            for i in range(0, len(x), recipe.batch_size):
                xb = x[perm[i:i + recipe.batch_size]]
                if variational:
                    loss = model.loss(xb, g)  # summed over the batch
                    total += loss.item()
                else:
                    loss = F.mse_loss(model(xb), xb)  # mean per pixel
                    total += loss.item() * len(xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update(1)
            mse = reconstruction_error(model, xt)
            history.append({"epoch": epoch + 1, "train_loss": total / len(x), "test_mse": mse})
            bar.set_postfix(loss=f"{total / len(x):.4f}", test_mse=f"{mse:.4f}")
    if not variational:
        model.fit_codes(x)
    model.eval()
    record = {"test_accuracy": None, "test_mse": history[-1]["test_mse"], "history": history,
              "train_seconds": time.perf_counter() - t0, **_environment()}
    return model, record
