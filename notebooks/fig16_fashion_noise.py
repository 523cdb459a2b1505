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
# # Figure 16: where a Fashion-MNIST CNN sends noise
#
# This notebook reproduces **Figure 16** (supplement) of Borji & Lin (2020):
# how often a CNN trained on Fashion-MNIST assigns Gabor-PCA noise (top) and
# white noise (middle) to each of its ten classes, and its white-noise
# classification images (bottom). The paper printed the counts from 10^6
# Gabor-noise and 10^7 white-noise images; most of both went to "bag".

# %% tags=["parameters"]
n_white = 10_000_000  # white-noise images (the paper's count)
n_gabor = 1_000_000  # Gabor-PCA noise images (the paper's count)
n_components = 250
n_fit = None  # training images for the Gabor-PCA fit (None: all 60,000)
batch_size = 4096
seed = 0
fashion_epochs = 10
train_seed = 1
n_train = None
profile = "paper"

# %%
import numpy as np

from wna import Probe, data, paper, plots, stimuli, templates, zoo

plots.setup()
CLASSES = data.FASHION_MNIST_CLASSES

# %% tags=["remove-cell"]
from myst_nb import glue

glue("profile", profile, display=False)
glue("n_white", f"{n_white:,}", display=False)
glue("n_gabor", f"{n_gabor:,}", display=False)

# %% [markdown]
# ## The model
#
# The paper's MNIST CNN (Fig. 10) trained on Fashion-MNIST like the MNIST
# one (Adam, lr 1e-3, batch 64, raw [0, 1] pixels).

# %%
cnn = zoo.load("fashion_cnn", epochs=fashion_epochs, seed=train_seed, n_train=n_train)
print(paper.compare("fashion_cnn_acc", 100 * cnn.test_accuracy))

# %% [markdown]
# ## Gabor-PCA and white noise
#
# The Gabor-PCA generator is fitted on the Fashion-MNIST training images
# (960 Gabor wavelets, ridge regression, PCA; see Fig. 5).

# %%
x_train, _ = data.fashion_mnist(train=True)
gabor = stimuli.GaborPCANoise(n_components).fit(x_train[:n_fit])  # n_fit None: all
white = stimuli.WhiteNoise((1, 28, 28))
with Probe(cnn, batch_size=batch_size) as p:
    maps = {"gabor": p.classification_images(gabor, n_gabor, seed=seed),
            "white": p.classification_images(white, n_white, seed=seed)}

# %% [markdown]
# Share of the noise images assigned to each class, ours beside the paper's
# printed counts (as shares of its 10^6 and 10^7 images).

# %%
panels = {f"{name} noise": (maps[name], paper.FIG16_COUNTS[name]) for name in maps}
plots.class_shares(panels, CLASSES);

# %% [markdown]
# ## White-noise classification images
#
# The mean white-noise image per class (min-max normalised); titles give the
# share of the noise images the class received.

# %%
titles = [f"{c}: {100 * float(f):.3g}%" for c, f in zip(CLASSES, maps["white"].frequency)]
plots.map_grid(templates.minmax(maps["white"].mean), titles, size=1.6);

# %% [markdown]
# ## Comparison with the paper

# %% tags=["hide-input"]
for name in ("white", "gabor"):
    ci = maps[name]
    top = int(ci.count.argmax())
    print(paper.compare(f"fashion_{name}_top_class", top))
    print(f"  {CLASSES[top]}: {100 * float(ci.frequency[top]):.1f}% of the images")
    print(f"  {name} noise per class:", ci.count.tolist())
    print(f"  paper ({name}):", paper.FIG16_COUNTS[name])

# %% tags=["remove-cell"]
for name, ci in maps.items():
    theirs = np.array(paper.FIG16_COUNTS[name]) / sum(paper.FIG16_COUNTS[name])
    top = int(ci.count.argmax())
    glue(f"{name}_top_share", round(100 * float(ci.frequency[top]), 1), display=False)
    glue(f"{name}_top_name", CLASSES[top], display=False)
    glue(f"paper_{name}_top_share", round(100 * float(theirs.max()), 1), display=False)
    glue(f"{name}_empty", int((ci.count == 0).sum()), display=False)
