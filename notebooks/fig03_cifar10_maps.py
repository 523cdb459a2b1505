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
# # Figure 3: classification images on CIFAR-10
#
# This notebook reproduces **Figure 3** of Borji & Lin (2020), Section 3.1.
# White-noise images (each pixel of a 3×32×32 image drawn from U[0, 1]) go
# through the CIFAR-10 CNN of the paper's Fig. 11; the mean noise image per
# predicted class is its classification image, or bias map. Fig. 3A shows the
# mean training image of each class beside the bias map; unlike on MNIST,
# the maps do not resemble their classes. Fig. 3B uses both as templates to
# classify the test images: the paper reports 28.69% with the mean images and
# 23.71% with the bias maps (chance: 10%).

# %% tags=["parameters"]
n_samples = 1_000_000  # white-noise images (the paper's count)
batch_size = 4096
seed = 0  # seed of the noise
cifar_epochs = 30
cifar_width = 1.0  # channel multiplier of the CNN (1.0: the paper's Fig. 11)
train_seed = 1  # the authors' seed
n_train = None  # first n training images (None: all 50,000)
profile = "paper"  # the profile that set these parameters (filled in by `wna run`)

# %%
from wna import Probe, data, paper, plots, stimuli, templates, zoo

plots.setup()
CLASSES = data.CIFAR10_CLASSES
x_train, y_train = data.cifar10(train=True)
x_test, y_test = data.cifar10(train=False)

# %% tags=["remove-cell"]
from myst_nb import glue

glue("profile", profile, display=False)
glue("cifar_source", data.cifar10_source(), display=False)
glue("cifar_epochs", cifar_epochs, display=False)
glue("cifar_width", float(cifar_width), display=False)

# %% [markdown]
# ## The data and the model
#
# Where the official CIFAR-10 files cannot be downloaded, the images come from
# an offline copy re-encoded as JPEG at quality 75 (lossy: about 5–8 grey
# levels of error per pixel). The CNN is the paper's Fig. 11 architecture
# (its width scaled by `cifar_width`), trained with Adam on raw [0, 1] pixels
# with standard augmentation; the authors did not release its training code
# (their model reached 82%).

# %%
cnn = zoo.load("cifar_cnn", epochs=cifar_epochs, width=cifar_width, seed=train_seed,
               n_train=n_train)

# %% tags=["hide-input"]
print(f"CIFAR-10 copy: {data.cifar10_source()}")
print(f"CNN: width {cifar_width:g}, {cifar_epochs} epochs, training seed {train_seed}")
print(paper.compare("cifar_cnn_acc", 100 * cnn.test_accuracy))

# %% [markdown]
# ## Mean images and bias maps (Fig. 3A)
#
# Top: the mean training image of each class. Bottom: the mean white-noise
# image the CNN assigned to each class, each min-max normalised for display.
# Titles: the class, then (after the arrow) the class the CNN assigns to the
# image itself, as in the paper's titles; under each bias map, the number of
# noise images behind it. A class that received no noise image has no map.

# %%
with Probe(cnn, batch_size=batch_size) as p:
    ci = p.classification_images(stimuli.WhiteNoise((3, 32, 32)), n_samples, seed=seed)
mean_images = templates.class_means(x_train, y_train, 10)
bias_maps = templates.minmax(ci.mean)

# %% tags=["remove-cell"]
own_means = templates.assigned_classes(cnn, mean_images)
own_maps = templates.assigned_classes(cnn, bias_maps)

# %%
plots.map_grid(mean_images, plots.map_titles(None, own_means, names=CLASSES), size=2.0,
               suptitle="A) mean training images");
plots.map_grid(bias_maps, plots.map_titles(ci.count, own_maps, names=CLASSES), size=2.0,
               suptitle=f"A) bias maps ({ci.n:,} noise images)");

# %% [markdown]
# Where the noise goes: the share of the noise images assigned to each class.

# %%
plots.class_shares({"white noise": (ci, None)}, CLASSES, size=(5.0, 3.2));

# %% [markdown]
# ## Template matching (Fig. 3B)
#
# Each test image gets the class of its most similar template. Two template
# forms per set: the class mean, and the class root-mean-square image
# `sqrt(mean(x²))` (of the training images, or of the noise images assigned to
# the class); each used as it is or min-max normalised; and two rules: the raw
# dot product (Fig. 2C's rule) and cosine similarity (the released code's).
# The paper's mean-image number follows the released code: cosine with the
# RMS training images, not min-max normalised ([Methods](../methods.md)); the rule behind
# its bias-map number is not known, so the same rule is used for the maps
# and the table below gives every other combination.

# %%
template_sets = {
    "mean images, class mean": mean_images,
    "mean images, class RMS": templates.class_rms(x_train, y_train, 10),
    "bias maps, class mean": ci.mean,
    "bias maps, class RMS": ci.rms,
}
tm = templates.variants(template_sets, x_test, y_test)
fig_b = plots.confusion_matrices({
    "cosine": [("mean images (RMS)", *tm["mean images, class RMS", "raw", "cosine"]),
               ("bias maps (RMS)", *tm["bias maps, class RMS", "raw", "cosine"])],
    "dot": [("mean images (mean)", *tm["mean images, class mean", "raw", "dot"]),
            ("bias maps (min-max mean)", *tm["bias maps, class mean", "min-max", "dot"])],
}, class_names=CLASSES, size=3.6)

# %% [markdown]
# Test accuracy (%) of every combination; the paper's rule for the mean
# images is cosine on the raw RMS images.

# %% tags=["hide-input"]
print(f"{'templates':26} {'scaling':8} {'dot':>7} {'cosine':>7}")
for name in template_sets:
    for how in templates.SCALINGS:
        dot, cos = (100 * tm[name, how, rule][0] for rule in templates.RULES)
        print(f"{name:26} {how:8} {dot:7.2f} {cos:7.2f}")

# %% [markdown]
# ## Comparison with the paper

# %% tags=["hide-input"]
rule = ("raw", "cosine")  # the released code's rule for the mean images
print(paper.compare("cifar_tm_means", 100 * tm[("mean images, class RMS", *rule)][0]))
print(paper.compare("cifar_tm_maps", 100 * tm[("bias maps, class RMS", *rule)][0]))
nearest = {}
for key, kind in [("cifar_tm_means", "mean images"), ("cifar_tm_maps", "bias maps")]:
    close = {k: 100 * v[0] for k, v in tm.items() if k[0].startswith(kind)}
    nearest[key] = min(close, key=lambda k: abs(close[k] - paper.PAPER[key]))
    name, how, r = nearest[key]
    print(f"  nearest to the paper's {kind} number: {name}, {how}, {r}: "
          f"{close[nearest[key]]:.2f}%")
print(f"noise per class: {ci.count.tolist()}; empty classes: {int((ci.count == 0).sum())}")

# %% tags=["remove-cell"]
glue("n_samples", f"{ci.n:,}", display=False)
short = {"mean images": "means", "bias maps": "maps", "class mean": "mean", "class RMS": "rms",
         "raw": "raw", "min-max": "minmax", "dot": "dot", "cosine": "cos"}
for (name, how, r), (acc, _) in tm.items():
    kind, form = name.split(", ")
    key = "_".join(["tm", *(short[part] for part in (kind, form, how, r))])
    glue(key, round(100 * acc, 2), display=False)
for key, (name, how, r) in nearest.items():
    glue(f"{key}_nearest", f"{name.split(', ')[1]}, {how}, {r}", display=False)
    glue(f"{key}_nearest_acc", round(100 * tm[name, how, r][0], 2), display=False)
glue("empty", int((ci.count == 0).sum()), display=False)
glue("rare", int(((ci.count > 0) & (ci.count < 100)).sum()), display=False)
top = int(ci.count.argmax())
glue("top_name", CLASSES[top], display=False)
glue("top_share", round(100 * float(ci.frequency[top]), 1), display=False)
# a class without a map can never be predicted: the bias maps' accuracy is capped
glue("maps_cap", round(100 * float((ci.count[y_test] > 0).double().mean()), 1), display=False)
glue("means_self", sum(int(c) == k for k, c in enumerate(own_means)), display=False)
glue("maps_self", sum(int(c) == k for k, c in enumerate(own_maps)), display=False)
