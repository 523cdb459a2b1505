# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Figure 15: noise from an autoencoder and a VAE
#
# This notebook reproduces **Figure 15** (supplement) of Borji & Lin (2020).
# An autoencoder and a variational autoencoder (the paper's Fig. 10
# architectures) are trained on MNIST for only two epochs, so that their
# decoders produce noise with faint digit structure rather than clean digits.
# Classification images of the MNIST CNN built from such noise resemble
# digits after about 100 samples, where white noise needs about 10^4
# (Fig. 4).

# %% tags=["parameters"]
sizes = [100, 200, 500, 1_000, 2_000, 5_000, 10_000]  # the maps at each N come from one stream
shown = [100, 1_000, 10_000]  # the paper's panels
batch_size = 100
seed = 0
generator_epochs = 2
cnn_epochs = 10
train_seed = 1
n_train = None
profile = "paper"

# %%
import numpy as np

from wna import Probe, data, paper, plots, probe, stimuli, templates, zoo

plots.setup()

# %% tags=["remove-cell"]
from myst_nb import glue

glue("profile", profile, display=False)
glue("n_max", f"{max(sizes):,}", display=False)

# %% [markdown]
# ## The generators and the classifier
#
# The autoencoder (784 → 128 → 64 → 12 → 9 → … → 784, tanh output) and the
# VAE (784 → 400 → 20 → 400 → 784, sigmoid output) are trained with the
# authors' losses (mean squared error; for the VAE plus the KL term) for two
# epochs. VAE noise decodes codes z ~ N(0, I); autoencoder noise decodes
# codes drawn from a Gaussian fitted to the encoder's codes of the training
# digits (the authors drew them ad hoc). Both are clamped to the CNN's input
# range [0, 1].

# %%
cnn = zoo.load("mnist_cnn", epochs=cnn_epochs, seed=train_seed, n_train=n_train)
options = dict(epochs=generator_epochs, seed=train_seed, n_train=n_train)
generators = {
    "autoencoder": stimuli.DecoderNoise.from_model(zoo.load("mnist_autoencoder", **options)),
    "VAE": stimuli.DecoderNoise.from_model(zoo.load("mnist_vae", **options)),
    "white noise": stimuli.WhiteNoise((1, 28, 28)),
}

# %% [markdown]
# Ten samples of each generator (the top of the paper's figure):

# %%
import torch

g0 = probe.batch_generator(seed, 10**6)  # a stream of its own, apart from the probe's
samples = torch.cat([g.sample(10, g0) for g in generators.values()])
titles = [name for name in generators for _ in range(10)]
plots.map_grid(samples, titles, ncols=10, size=1.1, normalize=False);

# %% [markdown]
# ## Classification images at 100, 1,000 and 10,000 samples
#
# One seeded stream per generator through the CNN; the maps at each N are
# snapshots of its running sums (the first N samples). Each map is the mean
# sample per predicted digit, min-max normalised.

# %%
maps = {}
with Probe(cnn, batch_size=batch_size) as p:
    for name, g in generators.items():
        maps[name] = p.classification_images(g, max(sizes), seed=seed, snapshots=sizes)
for name, snaps in maps.items():
    grid = np.concatenate([templates.minmax(snaps[n].mean).numpy() for n in shown])
    titles = [f"{d}: N={n:,}" for n in shown for d in range(10)]
    plots.map_grid(grid, titles, ncols=10, size=1.1, suptitle=name);

# %% [markdown]
# ## How many samples?
#
# For each generator: the cosine between a digit's map at N and at the
# largest N (each map minus the mean of all samples), averaged over digits
# with weights equal to their share of the samples (as in Fig. 4), and the
# template accuracy of the MNIST test digits with the maps at N (Fig. 2C's
# rule: dot product, min-max maps). "Resembles" is taken as a cosine of 0.9
# to the final map.

# %% tags=["hide-input"]
x_test, y_test = data.mnist(train=False)
first = {}
rows = []
for name, snaps in maps.items():
    ns, cos = probe.map_cosines(snaps)
    med = probe.share_weighted(cos, snaps[ns[-1]].count)
    hit = [n for n, m in zip(ns[:-1], med[:-1]) if m >= 0.9]  # the last map is the reference
    first[name] = hit[0] if hit else None
    for n, m in zip(ns, med):
        acc, _ = templates.template_accuracy(templates.minmax(snaps[n].mean), x_test, y_test)
        rows.append((name, n, m, 100 * acc, int((snaps[n].count == 0).sum())))
print(f"{'generator':>12} {'N':>7} {'cosine':>10} {'template acc':>12} {'empty':>5}")
for name, n, m, acc, empty in rows:
    print(f"{name:>12} {n:>7,} {m:>10.3f} {acc:>11.2f}% {empty:>5}")
for name, n in first.items():
    when = f"reached at N = {n:,}" if n else f"not reached by N = {ns[-2]:,}"
    print(f"{name}: cosine 0.9 {when}")

# %% [markdown]
# ## Comparison with the paper

# %% tags=["hide-input"]
best = min((n for name, n in first.items() if name != "white noise" and n), default=max(sizes))
print(paper.compare("fig15_samples", best, "samples to a cosine of 0.9 (best generator)"))

# %% tags=["remove-cell"]
for name, n in first.items():
    key = name.replace(" ", "_").lower()
    glue(f"first_{key}", f"{n:,}" if n else f"more than {ns[-2]:,}", display=False)
for name, n, m, acc, empty in rows:
    key = name.replace(" ", "_").lower()
    glue(f"acc_{key}_{n}", round(acc, 2), display=False)
    glue(f"cos_{key}_{n}", round(float(m), 3), display=False)
