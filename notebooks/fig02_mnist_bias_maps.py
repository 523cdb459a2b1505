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
# # Figure 2: classification images of MNIST classifiers
#
# This notebook reproduces **Figure 2** of Borji & Lin (2020), Section 3.1.
# A CNN (the paper's Fig. 10 architecture) and a logistic regression are
# trained on MNIST; white-noise images, each pixel drawn from U[0, 1], are fed
# to each model, and the images it assigns to each digit are averaged. These
# averages, the *classification images* or *bias maps*, show the pattern each
# model looks for (Fig. 2A, 2B). Fig. 2C then uses the maps as templates: a
# test digit gets the class of the most similar template (cosine similarity,
# the authors' rule), next to mean digit images and the logistic regression's
# weights used the same way.
#
# The paper's text says 10^6 noise images; the authors' code used 10^7.
# The first cell holds the paper-scale defaults; the book is built at the
# profile named in the reproduction report.

# %% tags=["parameters"]
n_samples = 1_000_000  # white-noise images per model (paper: 10^6, authors' code: 10^7)
batch_size = 4096
seed = 0  # seed of the noise
weighting = "none"  # "none": plain mean per predicted class; "confidence": authors' variant
cnn_epochs = 10
logreg_epochs = 10
train_seed = 1  # the authors' seed
n_train = None  # first n training images (None: all 60,000)
profile = "paper"  # the profile that set these parameters (filled in by `wna run`)

# %%
import torch
from myst_nb import glue

from wna import data, plots, probe, stimuli, zoo
from wna.paper import PAPER, difference

plots.setup()
x_train, y_train = data.mnist(train=True)
x_test, y_test = data.mnist(train=False)

# %% [markdown]
# ## The two observers
#
# Both are trained with Adam (lr 1e-3, batch 64) on raw [0, 1] pixels, as the
# authors did; the zoo trains them once and caches the checkpoints.

# %%
cnn = zoo.load("mnist_cnn", epochs=cnn_epochs, seed=train_seed, n_train=n_train)
logreg = zoo.load("mnist_logreg", epochs=logreg_epochs, seed=train_seed, n_train=n_train)
print(f"CNN test accuracy: {100 * cnn.test_accuracy:.2f}%  (paper 99.2%)")
print(f"logistic regression test accuracy: {100 * logreg.test_accuracy:.2f}%  (paper 92.46%)")
for key, model in [("cnn_acc", cnn), ("logreg_acc", logreg)]:
    glue(key, round(100 * model.test_accuracy, 2), display=False)
    glue(f"{key}_diff", difference(key, 100 * model.test_accuracy), display=False)

# %% [markdown]
# ## Classification images (Fig. 2A, 2B)
#
# The same seeded noise goes to both models. Each map is the mean noise image
# over the stimuli the model assigned to that digit; a digit that received no
# stimulus has no map. Titles: the digit, the class the model assigns to the
# map itself (maps min-max normalised, as the authors' saved images were), and
# the number of noise images classified as that digit.

# %%
noise = stimuli.WhiteNoise((1, 28, 28))
cis = {
    name: probe.classification_images(model, noise, n_samples=n_samples, batch_size=batch_size,
                                      seed=seed, weighting=weighting)
    for name, model in [("cnn", cnn), ("logreg", logreg)]
}
maps = {name: probe.minmax(ci.mean) for name, ci in cis.items()}


def titles(name, model):
    own = probe.assigned_classes(model, maps[name]).tolist()
    return [f"{k} → {'–' if c < 0 else c}, |{n:,}|" for k, (c, n) in enumerate(zip(own, cis[name].count.tolist()))]


fig_a = plots.map_grid(maps["cnn"], titles("cnn", cnn), suptitle="A) CNN")
fig_b = plots.map_grid(maps["logreg"], titles("logreg", logreg), suptitle="B) logistic regression")

# %%
top = int(cis["cnn"].count.argmax())
top_frac = float(cis["cnn"].frequency[top])
print(f"most noise images go to class {top} ({100 * top_frac:.1f}% of {cis['cnn'].n:,}); paper: 8")
glue("n_samples", f"{cis['cnn'].n:,}", display=False)
glue("profile", profile, display=False)
glue("cnn_top_class", top, display=False)
glue("cnn_top_matches", "yes" if top == PAPER["cnn_top_class"] else "no", display=False)
glue("cnn_top_frac", round(100 * top_frac, 1), display=False)
for name, ci in cis.items():
    # a class without a map can never be predicted: the template accuracy is capped
    cap = float((ci.count[y_test] > 0).double().mean())
    glue(f"{name}_empty", int((ci.count == 0).sum()), display=False)
    glue(f"{name}_maps_cap", round(100 * cap, 1), display=False)
own_cnn = probe.assigned_classes(cnn, maps["cnn"])
glue("cnn_maps_self_correct", int((own_cnn == torch.arange(10)).sum()), display=False)

# %% [markdown]
# ## Template matching (Fig. 2C)
#
# Four sets of templates classify the 10,000 test digits: the CNN's and the
# logistic regression's classification images (min-max normalised, as the
# authors' saved maps were), the mean training image of each digit, and the
# logistic regression's weight vectors. Each test image gets the class of the
# template with the largest cosine similarity. A class without a map can
# never be chosen.

# %%
templates = {
    "CNN bias maps": maps["cnn"],
    "LR bias maps": maps["logreg"],
    "mean digits": probe.class_means(x_train, y_train, 10),
    "LR weights": logreg.linear.weight.detach(),
}
results = [(name, *probe.template_accuracy(t, x_test, y_test)) for name, t in templates.items()]
fig_c = plots.confusion_matrices(results)
for key, (name, acc, _) in zip(["tm_cnn_maps", "tm_logreg_maps", "tm_mean_digits", "tm_logreg_weights"], results):
    glue(key, round(100 * acc, 2), display=False)
    glue(f"{key}_diff", difference(key, 100 * acc), display=False)
    print(f"{name:>14}: {100 * acc:.2f}%  (paper {PAPER[key]}%)")

# %% [markdown]
# Whether maps are min-max normalised before matching matters, because a raw
# map is about 0.5 everywhere plus a small signal. The authors' code matched
# the min-max normalised maps it had saved as images; the raw variant is shown
# for comparison.

# %%
raw = {"CNN bias maps": cis["cnn"].mean, "LR bias maps": cis["logreg"].mean,
       "LR weights (min-max)": probe.minmax(logreg.linear.weight.detach())}
for name, t in raw.items():
    acc, _ = probe.template_accuracy(t, x_test, y_test)
    print(f"{name + (' (raw)' if 'maps' in name else ''):>22}: {100 * acc:.2f}%")
glue("tm_cnn_maps_raw", round(100 * probe.template_accuracy(cis["cnn"].mean, x_test, y_test)[0], 2),
     display=False)
