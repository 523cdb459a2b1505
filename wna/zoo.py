"""Trained models on demand.

``zoo.load("mnist_cnn", epochs=4, seed=1)`` returns the trained model. The
first call trains it deterministically and caches the checkpoint under
``$WNA_CACHE`` (default ``~/.cache/wna``), keyed by a hash of the full
configuration and of the training code (the training function and the
architecture's source); later calls load it. Checkpoints are written
atomically, so an interrupted run never leaves a corrupt file, and carry the
test accuracy measured after training (``model.test_accuracy``).

The generative models of the paper's Fig. 15 (``"mnist_autoencoder"``,
``"mnist_vae"``) are trained by :func:`train_generative` instead and carry
their test reconstruction error (``model.test_mse``, mean squared error per
pixel on the 10,000 test images; ``model.test_accuracy`` is None).

Training runs on :data:`TRAIN_THREADS` torch threads whatever the process's
own setting (``torch.set_num_threads``, ``OMP_NUM_THREADS``, core count), so
the weights are bitwise the same across machines with the same torch version
and CPU capability; ``model.record`` lists those.

Training follows the authors' code where it is sound: inputs in [0, 1], Adam
(lr 1e-3), batch 64, cross-entropy on logits. The CIFAR-10 CNN (whose
training code the authors did not release) trains with the standard
augmentation (:func:`random_crop_flip`: 4-pixel zero-padded random crops and
horizontal flips, drawn from the training generator) in batches of 128.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import backdoor, data, models
from ._checks import load_torch
from .paths import cache_dir

__all__ = ["load", "train", "train_generative", "cache_dir", "checkpoint_path", "RECIPES", "Recipe", "evaluate",
           "reconstruction_error", "random_crop_flip"]


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


RECIPES: dict[str, Recipe] = {
    # The paper's MNIST CNN (Fig. 10): 99.2% test accuracy in the paper.
    "mnist_cnn": Recipe("mnist_cnn", "mnist", epochs=10),
    # Logistic regression on MNIST: 92.46% in the paper.
    "mnist_logreg": Recipe("logreg", "mnist", epochs=10),
    # Binary observers of Fig. 1 / 12: the CNN with one logit, trained with BCEWithLogitsLoss.
    "mnist_binary_cnn": Recipe("binary_cnn", "mnist", epochs=3, digits=(1, 7)),
    # Fig. 13: MLP (authors' code 98.3%) and RNN (authors' code 96.4%).
    "mnist_mlp": Recipe("mlp", "mnist", epochs=10),
    "mnist_rnn": Recipe("rnn", "mnist", epochs=10),
    # Fig. 16: the paper's CNN trained on Fashion-MNIST (authors' code: about 85-87%).
    "fashion_cnn": Recipe("mnist_cnn", "fashion_mnist", epochs=10),
    # Fig. 15: autoencoder and VAE trained for only 2 epochs (authors' notebook: batch 128,
    # Adam lr 1e-3, weight decay 1e-5); trained by train_generative.
    "mnist_autoencoder": Recipe("autoencoder", "mnist", epochs=2, batch_size=128, weight_decay=1e-5),
    "mnist_vae": Recipe("vae", "mnist", epochs=2, batch_size=128, weight_decay=1e-5),
    # Fig. 11's CIFAR-10 CNN: 82% in the authors' notebooks (epochs and batch not released).
    # Batch 128 rather than 64: 1.1-1.2x the images per second on a 2-core CPU, steadier batch norm.
    "cifar_cnn": Recipe("cifar_cnn", "cifar10", epochs=30, batch_size=128, augment=True),
    # Fig. 7: the same recipes trained on poisoned training sets (wna.backdoor.ATTACKS); their
    # test accuracy is measured on the clean test set.
    "mnist_cnn_backdoor_0to1": Recipe("mnist_cnn", "mnist_backdoor_0to1", epochs=10),
    "mnist_cnn_backdoor_8to9": Recipe("mnist_cnn", "mnist_backdoor_8to9", epochs=10),
    "cifar_cnn_backdoor_bird_cat": Recipe("cifar_cnn", "cifar10_backdoor_bird_cat", epochs=30, batch_size=128,
                                          augment=True),
}

# Architectures trained to reconstruct their input (by train_generative), not to classify.
GENERATIVE = {"autoencoder", "vae"}

# Recipe fields added after the first checkpoints: left out of the cache key while at their
# default, so the keys of existing models stay as they were.
_LATE_FIELDS = {"weight_decay": 0.0}

DATASETS = {"mnist": data.mnist, "fashion_mnist": data.fashion_mnist, "cifar10": data.cifar10,
            **{name: (lambda train=True, _n=name: backdoor.load_poisoned(_n, train))
               for name in backdoor.ATTACKS}}

# Training and its test evaluation run on exactly this many torch intra-op
# threads, whatever the process was started with: CPU kernels (oneDNN, OpenMP
# reductions) split their sums by thread count, so the float rounding, and with
# it the trained weights, depend on it. Part of the checkpoint key.
TRAIN_THREADS = 2


def _recipe(name: str, **config) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; known: {sorted(RECIPES)}")
    fields = set(Recipe.__dataclass_fields__) - {"arch", "dataset"}
    bad = sorted(set(config) - fields)
    if bad:
        raise ValueError(f"unknown option(s) {bad} for {name!r}; options: {sorted(fields)}")
    r = Recipe(**{**asdict(RECIPES[name]), **config})
    if r.digits is not None:
        if r.arch != "binary_cnn":
            raise ValueError(f"digits= is only for binary models, not {name!r}")
        d = tuple(int(v) for v in r.digits)
        if len(d) != 2 or d[0] == d[1] or not all(0 <= v <= 9 for v in d):
            raise ValueError(f"digits must be two different digits, got {r.digits}")
        r = Recipe(**{**asdict(r), "digits": d})
    elif r.arch == "binary_cnn":
        raise ValueError(f"{name!r} needs digits=(a, b)")
    if r.weight_decay != 0.0 and r.arch not in GENERATIVE:
        raise ValueError(f"weight_decay= is only for the generative models {sorted(GENERATIVE)}, not {name!r}")
    if r.arch != "cifar_cnn" and (r.width != 1.0 or r.activation != "relu"):
        raise ValueError(f"width= and activation= are only for cifar_cnn, not {name!r}")
    if not r.width > 0 or r.activation not in ("relu", "tanh"):
        raise ValueError(f"invalid width or activation: {r}")
    r = Recipe(**{**asdict(r), "width": float(r.width)})  # width=1 and width=1.0: one checkpoint
    if (r.epochs < 1 or r.batch_size < 1 or not r.lr > 0 or (r.n_train is not None and r.n_train < 1)
            or not r.weight_decay >= 0):
        raise ValueError(f"invalid training options: {r}")
    return r


def _code_hash(recipe: Recipe) -> str:
    if recipe.arch in GENERATIVE:
        parts = [train_generative, _fixed_threads, _train_generative, reconstruction_error,
                 models.ARCHITECTURES[recipe.arch]]
        return hashlib.sha256("".join(inspect.getsource(p) for p in parts).encode()).hexdigest()[:16]
    parts = [train, _fixed_threads, _train, _build, _loss, models.decide, models.binary_logit,
             binary_subset, random_crop_flip, models.ARCHITECTURES[recipe.arch]]
    if recipe.arch == "binary_cnn":
        parts.append(models.MnistCNN)
    # a poisoned data set's recipe also depends on its poisoning ("" for clean data: keys unchanged)
    src = "".join(inspect.getsource(p) for p in parts) + backdoor.code_key(recipe.dataset)
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def _data_source(recipe: Recipe) -> dict:
    """Which copy of the data a recipe trains on, where there are several (CIFAR-10: official or
    the lossy JPEG mirror); part of the checkpoint key and the record."""
    base = backdoor.ATTACKS[recipe.dataset].base if recipe.dataset in backdoor.ATTACKS else recipe.dataset
    if base != "cifar10":
        return {}
    try:
        return {"data": data.cifar10_source()}
    except data.DataNotFoundError:
        return {}  # training will raise the error


def checkpoint_path(name: str, **config) -> Path:
    """Where ``load(name, **config)`` keeps its checkpoint."""
    r = _recipe(name, **config)
    fields = {k: v for k, v in asdict(r).items() if not (k in _LATE_FIELDS and v == _LATE_FIELDS[k])}
    key = json.dumps({"name": name, **fields, "code": _code_hash(r), "threads": TRAIN_THREADS,
                      **_data_source(r)}, sort_keys=True)
    if r.digits is not None:
        name = f"{name}-{r.digits[0]}v{r.digits[1]}"
    return cache_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def _build(recipe: Recipe) -> torch.nn.Module:
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


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if out.shape[1] == 1:  # binary observer: one logit, sigmoid cross-entropy
        return F.binary_cross_entropy_with_logits(out[:, 0], y.to(out.dtype))
    return F.cross_entropy(out, y)


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


@contextlib.contextmanager
def _fixed_threads(n: int):
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


def _environment() -> dict:
    """What bitwise-equal training still depends on besides the recipe and the code."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": TRAIN_THREADS, "machine": platform.machine(), "cpu": _cpu_name(),
            "python": platform.python_version()}


def train(recipe: Recipe, progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train ``recipe`` from scratch, deterministically; return the model and a record.

    Bitwise the same weights whatever the process's thread settings: the run
    uses :data:`TRAIN_THREADS` threads (restored afterwards). The record lists
    what the result can still depend on (torch version, CPU capability, ...).
    """
    with _fixed_threads(TRAIN_THREADS):
        return _train(recipe, progress)


def _train(recipe: Recipe, progress: bool) -> tuple[torch.nn.Module, dict]:
    load_data = DATASETS[recipe.dataset]
    x, y = load_data(train=True)
    xt, yt = load_data(train=False)
    if recipe.digits is not None:
        x, y = binary_subset(x, y, recipe.digits)
        xt, yt = binary_subset(xt, yt, recipe.digits)
    if recipe.n_train is not None:
        x, y = x[:recipe.n_train], y[:recipe.n_train]
    # The global generator, seeded here and restored after, draws the initial weights and the
    # dropout masks; the batches and their augmentation come from g.
    with torch.random.fork_rng(devices=[]), tqdm(
            total=recipe.epochs * -(-len(x) // recipe.batch_size), desc=f"train {recipe.arch}",
            unit="step", disable=not progress, dynamic_ncols=True, leave=False) as bar:
        torch.manual_seed(recipe.seed)
        model = _build(recipe)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
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
                loss = _loss(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                bar.update(1)
            acc = evaluate(model, xt, yt)
            history.append({"epoch": epoch + 1, "train_loss": total / len(x), "test_accuracy": acc,
                            "elapsed_seconds": time.perf_counter() - t0})
            bar.set_postfix(loss=f"{total / len(x):.4f}", test_acc=f"{acc:.4f}")
    model.eval()
    record = {"test_accuracy": history[-1]["test_accuracy"], "history": history,
              "train_seconds": time.perf_counter() - t0, **_data_source(recipe), **_environment()}
    return model, record


def load(name: str, progress: bool = True, retrain: bool = False, **config) -> torch.nn.Module:
    """The trained model ``name`` (see :data:`RECIPES`), trained on first use.

    Options override the recipe: ``epochs``, ``batch_size``, ``lr``, ``seed``,
    ``n_train``, ``augment``; for ``cifar_cnn`` also ``width`` and ``activation``;
    ``weight_decay`` for the generative models. The model comes back in eval
    mode on the CPU, with ``model.test_accuracy`` (fraction; None for the
    generative models), ``model.test_mse`` (their reconstruction error; None
    for classifiers), ``model.recipe`` and ``model.record``. Neither path
    draws from the caller's global random generator.

    A cached checkpoint that cannot be read (truncated, say, by a copy that
    stopped half way: the zoo itself writes atomically) is not retrained
    silently: a ValueError names the file and says to delete it or to pass
    ``retrain=True``, which trains the model again and replaces it.
    """
    recipe = _recipe(name, **config)
    path = checkpoint_path(name, **config)
    if path.is_file() and not retrain:
        todo = f"delete it, or call zoo.load({name!r}, retrain=True), to train the model again"
        ckpt = load_torch(path, "zoo model checkpoint", todo, weights_only=False)
        with torch.random.fork_rng(devices=[]):  # throw-away initial weights: caller's RNG untouched
            model = _build(recipe)
        try:
            model.load_state_dict(ckpt["state_dict"])
            record = ckpt["record"]
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ValueError(f"{path} is not a {name} zoo model checkpoint ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); {todo}") from None
    else:
        trainer = train_generative if recipe.arch in GENERATIVE else train
        model, record = trainer(recipe, progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save({"state_dict": model.state_dict(), "recipe": asdict(recipe), "record": record}, tmp)
        os.replace(tmp, path)
    model.eval()
    model.test_accuracy = record["test_accuracy"]
    model.test_mse = record.get("test_mse")
    model.recipe = recipe
    model.record = record
    return model


# The generative models' training lives in its own module (it imports this one's helpers).
from ._generative import _train_generative, reconstruction_error, train_generative  # noqa: E402,F401
