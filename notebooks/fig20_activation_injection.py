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
# # Figures 7C, 20 and 21: mean layer activations and activation injection
#
# This notebook reproduces **Figures 20 and 21** of Borji & Lin (2020) and the
# example of **Figure 7C** (end of §3.3). White noise goes through the CIFAR-10
# CNN of Fig. 3, and the mean activation of each layer over the noise images
# the CNN assigns to a class is that class's *noise activation* (Fig. 20, left);
# the same means over the real test images of each class are its *real
# activations* (Fig. 20, right). The paper finds the two most alike in the fully
# connected layer, which also separates the classes most (the mean L2 distance
# between classes per layer, Fig. 20 bottom).
#
# Fig. 21 then *injects* a class's noise activation into real images: the
# layer's output is replaced by
#
# $$(1 - \gamma)\, \bar a_c + \gamma\, a(x),$$
#
# $\bar a_c$ the mean noise activation of class $c$ and $a(x)$ the image's own
# activation, at the paper's conv6, conv4, conv2 and at the input (the class's
# mean noise image mixed into the image). The misclassification ratio is the
# share of the images *not* of class $c$ that the CNN then calls $c$. The paper
# reports, in words, that "for some classes (e.g., cat or bird) it is easy to
# impact the network, whereas for some others (e.g., horse) it is harder", and
# that "for different objects, different layers have more influence". Fig. 7C
# turns a frog into a car this way.
#
# **Layer names.** Our `CifarCNN` (the paper's Fig. 11) has three blocks
# `conv1`, `conv2`, `conv3` of two convolutions each; a block's output (after
# its second convolution's ReLU, before pooling) is the paper's conv2, conv4
# and conv6. The paper's "fc" is `fc_layer1`'s output (the 512 units before
# the decision layer).

# %% tags=["parameters"]
n_noise = 1_000_000  # white-noise images for the noise activations (not stated in the paper)
n_images = 10_000  # test images per cell of Fig. 21 (not stated: all of them)
n_real = None  # test images for the real activations (None: all 10,000)
n_gammas = 11  # levels of γ from 0 to 1 in equal steps
example_source = 6  # Fig. 7C: a frog ...
example_target = 1  # ... turned into a car (automobile)
cifar_epochs = 30
cifar_width = 1.0
train_seed = 1
n_train = None
seed = 0
batch_size = 4096
profile = "paper"

# %%
import numpy as np
import torch

from wna import Probe, data, plots, stimuli, zoo
from wna.activations import INPUT, channel_maps, data_activations, injection_sweep, noise_activations
from wna.injection_tables import (class_ease, claims, ease_cells, ease_glue, ease_grid, ease_summary,
                                 first_correct, flip_gamma, flip_panels, layer_glue, layer_table, noise_counts,
                                 top_layers)
from wna.plots import plot_ratios

plots.setup()
CLASSES = data.CIFAR10_CLASSES
x_test, y_test = data.cifar10(train=False)
gammas = np.linspace(0.0, 1.0, n_gammas).round(3)
PAPER_NAMES = {INPUT: "input", "conv1": "conv2", "conv2": "conv4", "conv3": "conv6",
               "fc_layer1": "fc"}
LAYERS = list(PAPER_NAMES)  # Fig. 20
INJECT = ["conv3", "conv2", "conv1", INPUT]  # Fig. 21: conv6, conv4, conv2, input

# %% tags=["remove-cell"]
from myst_nb import glue


def glue_all(values: dict, heading: str | None = None):  # glue each value; print them under a heading
    for k, v in values.items():
        glue(k, v, display=False)
    if heading:
        print(f"{heading}:\n" + "\n".join(f"  {k}: {v}" for k, v in values.items()))


glue_all({"profile": profile, "n_noise": f"{n_noise:,}", "n_real": f"{len(x_test[:n_real]):,}",
          "cifar_epochs": cifar_epochs, "cifar_width": float(cifar_width)})

# %% [markdown]
# ## The model and the mean activations (Fig. 20)
#
# The CNN is Fig. 3's (`zoo.load("cifar_cnn", ...)`, trained once and cached).
# One `Probe` streams the noise (grouped by the CNN's decision) and the test
# set (grouped by the true class), reading each layer with forward hooks.

# %%
cnn = zoo.load("cifar_cnn", epochs=cifar_epochs, width=cifar_width, seed=train_seed,
               n_train=n_train)
with Probe(cnn, batch_size=batch_size) as p:
    noise = noise_activations(p, LAYERS, stimuli.WhiteNoise((3, 32, 32)), n_noise, seed=seed)
    real = data_activations(p, LAYERS, x_test[:n_real], y_test[:n_real])
noise_mean, real_mean = noise.mean, real.mean

# %% tags=["hide-input"]
print(f"CNN: width {cifar_width:g}, {cifar_epochs} epochs, test accuracy "
      f"{100 * cnn.test_accuracy:.2f}%")
print("noise images per predicted class:",
      ", ".join(f"{c} {int(k):,}" for c, k in zip(CLASSES, noise.count)))
print(f"noise activations: {noise.meta['stimuli_per_second']:,.0f} images/s")
glue_all({"cnn_acc": round(100 * cnn.test_accuracy, 2), **noise_counts(noise, CLASSES)}, "the noise")

# %% [markdown]
# Each panel: one layer's mean activation per class, averaged over the
# layer's channels (the fc layer's units laid out as a grid; the input in
# colour), each map min-max normalised. Top row noise (by predicted class,
# with the number of noise images), bottom row real test images (by class).

# %%
for layer in LAYERS:
    maps = torch.cat([channel_maps(noise_mean[layer]), channel_maps(real_mean[layer])])
    titles = ([f"{CLASSES[c]}\nnoise ({int(noise.count[c]):,})" for c in range(10)]
              + [f"{CLASSES[c]}\nreal" for c in range(10)])
    plots.map_grid(maps, titles, ncols=10, size=1.3,
                   suptitle=f"{layer} (the paper's {PAPER_NAMES[layer]})")

# %% [markdown]
# How alike are noise and real activations? Per layer (`layer_table`), the
# cosine between a class's mean noise and mean real activation, averaged over
# the classes that received noise, raw and as *contrasts* (each class's mean
# minus the mean over those classes: a raw mean is dominated by what all
# classes share, e.g. a grey input); and Fig. 20's bottom panel, the mean L2
# distance between two classes' means (also per unit: the layers differ in size).

# %%
layers = layer_table(noise, real, PAPER_NAMES)
tops = top_layers(layers)

plots.layer_panels(layers);

# %% tags=["hide-input"]
print(layers.round(4).to_string())
glue_all(layer_glue(layers))
glue_all(tops, "the layer that leads each column")

# %% [markdown]
# ## Injection (Fig. 21)
#
# For each layer, class and γ, the first `n_images` test images go through the
# CNN with the class's mean noise activation injected (`injection_sweep`: a
# hook on a private copy of the model). At γ = 1 the images are untouched, at
# γ = 0 they carry the class's activation alone; a class without noise has no curve.

# %%
xs, ys = x_test[:n_images], y_test[:n_images]
sweeps = {layer: injection_sweep(cnn, layer, noise_mean[layer], xs, ys, gammas,
                                 batch_size=batch_size) for layer in INJECT}
plot_ratios({f"{la} (paper's {PAPER_NAMES[la]})": s for la, s in sweeps.items()}, CLASSES);

# %% tags=["hide-input"]
n_cells, seconds = (sum(s.meta[k] for s in sweeps.values()) for k in ("stimuli", "seconds"))
print(f"{n_cells:,} injected images in {seconds:.0f} s: {n_cells / seconds:,.0f} images/s "
      f"(fast path: {sweeps[INJECT[0]].meta['fast_path']})")
glue_all({"n_images": f"{len(xs):,}", "n_gammas": int(n_gammas)})

# %% [markdown]
# The paper's words as numbers. *Ease* of a class at a layer: the mean
# misclassification ratio over the γ grid (the area under its curve); *fooling
# γ*: the largest γ (the most real image) at which at least half of the other
# classes' images are called the class (— where none is). A class's overall
# ease is its mean over the four layers; its *strongest layer* is the one with
# the largest ease.

# %%
cells = ease_cells(sweeps, PAPER_NAMES)
ranks = class_ease(cells)
summary = ease_summary(ranks, CLASSES, {"cat": 3, "bird": 2, "horse": 7})

# %% tags=["hide-input"]
print(ease_grid(cells, ranks, CLASSES).round(3).to_string())
glue_all(ease_glue(cells, ranks))
glue_all(summary, "Fig. 21 in words")

# %% [markdown]
# ## Fig. 7C: a frog turned into a car
#
# The first test frog the CNN calls a frog gets the car's mean noise activation
# at the input and at conv3 (the paper's conv6). Shown, with the CNN's decision:
# the frog, the car's mean noise image, the frog mixed with it at the input and
# the frog with the car's conv3 activation injected, each at the largest γ at
# which the CNN calls it a car (γ = 0.5 where none does; blank: no noise was a car).

# %%
src, tgt = example_source, example_target
frog = first_correct(cnn, x_test, y_test, src)
flips = {la: flip_gamma(cnn, la, noise_mean[la][tgt], frog, tgt, gammas) for la in (INPUT, "conv3")}
images, titles = flip_panels(cnn, noise_mean, frog, tgt, flips, CLASSES)
titles[0] = f"{CLASSES[src]}: {titles[0]}"
plots.map_grid(images, titles, ncols=4, size=2.0, normalize=False);

# %% tags=["hide-input"]
glue_all({f"flip_{la}": "never" if g is None else f"{g:.1f}" for la, g in flips.items()},
         f"{CLASSES[src]} called {CLASSES[tgt]}, largest γ at")

# %% [markdown]
# ## The paper's claims, checked

# %%
agree = claims(tops, ranks, summary, easy=(3, 2), hard=7, flipped=flips["conv3"] is not None)

# %% tags=["hide-input"]
glue_all({f"agree_{k}": v for k, v in agree.items()}, "the paper's claims")
