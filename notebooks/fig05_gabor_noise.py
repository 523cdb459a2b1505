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
# # Figure 5: noise with natural-image structure (Gabor-PCA)
#
# This notebook reproduces **Figure 5** of Borji & Lin (2020). Following
# Greene et al. (2014), every training image is written as a weighted sum of
# Gabor wavelets (ridge regression), the weights are reduced by PCA, and new
# noise images are drawn by picking random PCA scores, each within the range
# it takes on the training images. Classification images built from this
# noise resemble the classes better than white-noise ones, and classify test
# images: the paper reports 35.5% (MNIST), 41.21% (Fashion-MNIST) and 21.67%
# (CIFAR-10).

# %% tags=["parameters"]
datasets = ["mnist", "fashion_mnist", "cifar10"]
n_samples = 1_000_000  # Gabor-noise images per classifier (the paper's count)
n_components = {"mnist": 250, "fashion_mnist": 250, "cifar10": 600}  # per colour channel
n_fit = {"mnist": None, "fashion_mnist": None, "cifar10": None}  # images fitted (None: all)
batch_size = 4096
seed = 0
cnn_epochs = 10
fashion_epochs = 10
cifar_epochs = 30
cifar_width = 1.0
train_seed = 1
n_train = None
profile = "paper"

# %%
import numpy as np
import torch

from wna import Probe, data, paper, plots, probe, stimuli, templates, zoo

plots.setup()
LOAD = {"mnist": data.mnist, "fashion_mnist": data.fashion_mnist, "cifar10": data.cifar10}
NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}

# %% tags=["remove-cell"]
from myst_nb import glue

glue("profile", profile, display=False)
glue("n_samples", f"{n_samples:,}", display=False)

# %% [markdown]
# ## The generators
#
# The Gabor bank of the authors' code: OpenCV Gabor kernels at four
# orientations and two phases, tiled without overlap at three scales for
# 28×28 images (960 wavelets) and four for 32×32 (1,520 per colour channel);
# ridge regression (α = 0.1) of each training image on the bank; PCA of the
# weights. A noise image is the sum of the wavelets weighted by random
# scores, min-max normalised to [0, 1] (per channel for colour).

# %%
images, generators = {}, {}
for name in datasets:
    x, y = LOAD[name](train=True)
    images[name] = (x, y)
    generators[name] = stimuli.GaborPCANoise(n_components[name]).fit(x[:n_fit[name]])  # None: all

# %% tags=["hide-input"]
for name, g in generators.items():
    var = 100 * np.asarray(g.variance_kept_, dtype=float)
    used = len(images[name][0]) if n_fit[name] is None else n_fit[name]
    print(f"{NAMES[name]}: {g.n_wavelets} wavelets, {n_components[name]} components, {used:,} images")
    print("  variance kept " + " / ".join(f"{v:.2f}%" for v in var))
    if f"gabor_var_{name}" in paper.PAPER:
        print("  " + paper.compare(f"gabor_var_{name}", var.mean()))

# %% [markdown]
# Eight noise images of each generator, then a training image and its
# reconstruction from the Gabor bank (the figure's "orig." and "recon.").

# %%
for name, g in generators.items():
    x = images[name][0]
    noise = g.sample(8, probe.batch_generator(seed, 10**6))
    recon = g.reconstruct(x[:1]).clamp(0, 1)
    titles = ["noise"] * 8 + ["orig.", "recon."]
    grid = torch.cat([noise, x[:1], recon])
    plots.map_grid(grid, titles, ncols=10, size=1.1, suptitle=NAMES[name]);

# %% [markdown]
# ## Classification images
#
# Each classifier sees its own data set's Gabor noise: the MNIST CNN of
# Fig. 2, the same architecture trained on Fashion-MNIST, and the CIFAR-10
# CNN of the paper's Fig. 11. The maps shown are the released code's
# templates: the root-mean-square noise image per predicted class
# (`sqrt(mean(x²))`), min-max normalised.

# %%
recipes = {
    "mnist": ("mnist_cnn", dict(epochs=cnn_epochs)),
    "fashion_mnist": ("fashion_cnn", dict(epochs=fashion_epochs)),
    "cifar10": ("cifar_cnn", dict(epochs=cifar_epochs, width=cifar_width)),
}
maps, accuracy = {}, {}
for name in datasets:
    recipe, options = recipes[name]
    model = zoo.load(recipe, seed=train_seed, n_train=n_train, **options)
    accuracy[name] = 100 * model.test_accuracy
    with Probe(model, batch_size=batch_size) as p:
        maps[name] = p.classification_images(generators[name], n_samples, seed=seed)

# %%
for name, ci in maps.items():
    labels = data.CLASS_NAMES[name]
    titles = [f"{labels[k]}: {100 * float(f):.2g}%" for k, f in enumerate(ci.frequency)]
    suptitle = f"{NAMES[name]} (classifier test accuracy {accuracy[name]:.1f}%)"
    plots.map_grid(templates.minmax(ci.rms), titles, suptitle=suptitle, size=1.5);

# %% [markdown]
# ## Template matching: two rules
#
# *The released code's rule* (how the paper's Fig. 5 numbers were made):
# cosine similarity between each image and the min-max normalised RMS maps,
# on the test set for MNIST and CIFAR-10 but on the *training* set for
# Fashion-MNIST ([Methods](../methods.md)). *Fig. 2C's rule*: the raw dot product with the
# min-max normalised mean maps, on the test set. The confusion matrices are
# rows true class, columns predicted, each row normalised.

# %%
results = {"released code (cosine, RMS)": [], "Fig. 2C (dot, mean)": []}
tm = {}
for name, ci in maps.items():
    x_eval, y_eval = images[name] if name == "fashion_mnist" else LOAD[name](train=False)
    x_test, y_test = LOAD[name](train=False)
    rms, mean = templates.minmax(ci.rms), templates.minmax(ci.mean)
    acc_c, conf_c = templates.template_accuracy(rms, x_eval, y_eval, rule="cosine")
    acc_d, conf_d = templates.template_accuracy(mean, x_test, y_test, rule="dot")
    tm[name] = (100 * acc_c, 100 * acc_d)
    results["released code (cosine, RMS)"].append((NAMES[name], acc_c, conf_c))
    results["Fig. 2C (dot, mean)"].append((NAMES[name], acc_d, conf_d))
plots.confusion_matrices(results);

# %% [markdown]
# ## Comparison with the paper

# %% tags=["hide-input"]
for name, (acc_c, acc_d) in tm.items():
    print(paper.compare(f"gabor_tm_{name}", acc_c))
    print(f"  Fig. 2C's rule: {acc_d:.2f}%; classifier test accuracy {accuracy[name]:.2f}%")
    print(f"  noise per class: {maps[name].count.tolist()}")

# %% tags=["remove-cell"]
for name in datasets:
    g = generators[name]
    glue(f"var_{name}", " / ".join(f"{100 * float(v):.2f}" for v in g.variance_kept_),
         display=False)
    used = len(images[name][0]) if n_fit[name] is None else n_fit[name]
    glue(f"n_fit_{name}", f"{used:,}", display=False)
    glue(f"acc_{name}", round(accuracy[name], 2), display=False)
    glue(f"tm_dot_{name}", round(tm[name][1], 2), display=False)
    glue(f"empty_{name}", int((maps[name].count == 0).sum()), display=False)
if "cifar10" in datasets:
    glue("cifar_source", data.cifar10_source(), display=False)
