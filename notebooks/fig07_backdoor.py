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
# # Figures 7A, 7B, 7D, 18 and 19: patch backdoors revealed by classification images
#
# This notebook reproduces the "adversarial defense" part of Section 3.2 of
# Borji & Lin (2020). A backdoor is planted by training on a poisoned set: a
# small patch is drawn on half of one class (the source) and those images are
# relabelled as another class (the target). The paper built three such sets:
# MNIST with an x-shaped 3×3 patch on the top left of half of the 0s,
# relabelled 1; MNIST with a c-shaped ("bracket") patch on the top right of
# half of the 8s, relabelled 9; and CIFAR-10 with an H-shaped patch on the
# top right of half of the birds, relabelled cat. CNNs trained on them
# classify a clean test set normally but send patched source images to the
# target (Fig. 7A, Fig. 18), and their classification images show the patch
# (Fig. 7A right, Fig. 7B). The average input gradient of the loss (Fig. 7D)
# shows it only faintly. Fig. 19 shows the mean digits of the clean and the
# poisoned training sets.
#
# The MNIST patches use the authors' pixels (their notebook); the paper gives
# no pixels for the CIFAR-10 H, so ours is a white 5×5 H (`wna.backdoor.PATCHES`).
# The map "reveals the patch" is made a number twice: the map's energy inside
# the patch against outside it, and a blind detector that is not told where
# the patch is.

# %% tags=["parameters"]
n_samples = 10_000_000  # white-noise images per MNIST model (the authors' count)
cifar_n_samples = 1_000_000  # per CIFAR-10 model
cnn_epochs = 10
cifar_epochs = 30
cifar_width = 1.0  # channel multiplier of the CIFAR-10 CNN (1.0: the paper's Fig. 11)
train_seed = 1  # the authors' seed
n_train = None  # first n training images (None: all)
n_gradient = None  # training images for the average gradients (None: all 60,000)
k = 5  # the detector's window (k×k pixels)
seed = 0  # seed of the noise
batch_size = 4096
profile = "paper"  # the profile that set these parameters (filled in by `wna run`)

# %%
import pandas as pd
import torch
from IPython.display import Markdown

from wna import Probe, backdoor, backdoor_tables, data, paper, plots, stimuli, templates, zoo

plots.setup()
x_train, y_train = data.mnist(train=True)
x_test, y_test = data.mnist(train=False)
MNIST_ATTACKS = {"0→1": backdoor.ATTACKS["mnist_backdoor_0to1"], "8→9": backdoor.ATTACKS["mnist_backdoor_8to9"]}

# %% tags=["remove-cell"]
from myst_nb import glue

glue("profile", profile, display=False)
glue("n_samples", f"{n_samples:,}", display=False)
glue("cifar_n_samples", f"{cifar_n_samples:,}", display=False)
glue("cnn_epochs", cnn_epochs, display=False)
glue("cifar_epochs", cifar_epochs, display=False)
glue("cifar_width", float(cifar_width), display=False)
glue("k", k, display=False)

# %% [markdown]
# ## The poisoned training sets (Fig. 19)
#
# The first half (in index order) of the source class gets the patch, pixels
# set to 1.0, and the target's label. The authors added 255 to uint8 images,
# which wraps around where the digit already covers a patch pixel (the pixel
# ends up one grey level darker, not white); the count of such images is
# printed below. Fig. 19: the mean training digits, clean (top), then each
# poisoned set (the patch shows in the target's mean, faintly in proportion
# to the share of poisoned images in it).

# %%
for name, a in MNIST_ATTACKS.items():
    px, py, _ = backdoor.poison(x_train, y_train, a.patch, a.source, a.target, a.fraction)
    plots.map_grid(templates.class_means(px, py, 10), [str(c) for c in range(10)],
                   ncols=10, size=1.2, suptitle=f"mean digits, {name} poisoned training set");
plots.map_grid(templates.class_means(x_train, y_train, 10), [str(c) for c in range(10)], ncols=10,
               size=1.2, suptitle="mean digits, clean training set");
poisoned = backdoor_tables.poison_table(x_train, y_train, MNIST_ATTACKS)

# %% tags=["hide-input"]
for _, r in poisoned.iterrows():
    print(f"{r['attack']}: {r['poisoned']:,} of {r['n source']:,} training {r['source']}s patched and "
          f"relabelled {r['target']}; {r['covered']:,} of them had digit pixels under the patch")
for key, value in backdoor_tables.glue_items(poisoned, {"poisoned": "poisoned", "covered": "covered"},
                                             fmt=",").items():
    glue(key, value, display=False)

# %% [markdown]
# ## The models
#
# The paper's MNIST CNN, trained on the clean set and on each poisoned set by
# the same recipe (`zoo`: Adam, batch 64, the authors' seed); test accuracy
# on the clean test set.

# %%
cfg = dict(epochs=cnn_epochs, seed=train_seed, n_train=n_train)
models = {"clean": zoo.load("mnist_cnn", **cfg),
          "0→1": zoo.load("mnist_cnn_backdoor_0to1", **cfg),
          "8→9": zoo.load("mnist_cnn_backdoor_8to9", **cfg)}
accuracy = backdoor_tables.accuracy_table(models)

# %% tags=["hide-input"]
for _, r in accuracy.iterrows():
    print(f"{r['model']:6} CNN: clean test accuracy {r['test accuracy (%)']:.2f}%")
for key, value in backdoor_tables.glue_items(accuracy, {"acc": "test accuracy (%)"}, digits=2).items():
    glue(key, value, display=False)

# %% [markdown]
# ## The attack works (Fig. 7A, confusion matrices)
#
# Each attacked CNN on the clean test set, and on the test set with every
# source digit patched (rows: true class, columns: predicted; each row
# normalised).

# %%
rows = {}
for name, a in MNIST_ATTACKS.items():
    patched_test = backdoor.poison(x_test, y_test, a.patch, a.source, a.target, 1.0)[0]
    rows[name] = [("clean CNN, clean test", *backdoor.confusion(models["clean"], x_test, y_test)),
                  ("attacked, clean test", *backdoor.confusion(models[name], x_test, y_test)),
                  (f"attacked, {a.source}s patched", *backdoor.confusion(models[name], patched_test, y_test))]
plots.confusion_matrices(rows, size=2.8);
success = backdoor_tables.success_table({n: models[n] for n in MNIST_ATTACKS}, x_test, y_test, MNIST_ATTACKS)

# %% tags=["hide-input"]
for _, r in success.iterrows():
    print(f"{r['model']}: {r['success (%)']:.2f}% of the {r['n source']} patched test {r['source']}s "
          f"classified as {r['target']}")
for key, value in backdoor_tables.glue_items(success, {"success": "success (%)"}, by="pair", digits=2).items():
    glue(key, value, display=False)
print(paper.compare("backdoor_8to9_patched", float(success.at["8to9", "success (%)"])))

# %% [markdown]
# ## The maps reveal the patch (Fig. 7A, right)
#
# White noise through each CNN; the classification images (mean noise per
# predicted class, min-max normalised) of the clean CNN and the attacked ones.
# Titles: the class and the number of noise images it received.

# %%
noise = stimuli.WhiteNoise((1, 28, 28))
maps = {}
for name, m in models.items():
    with Probe(m, batch_size=batch_size) as p:
        maps[name] = p.classification_images(noise, n_samples, seed=seed, desc=f"maps, {name}")
    plots.map_grid(templates.minmax(maps[name].mean), plots.map_titles(maps[name].count), ncols=10,
                   size=1.3, suptitle=f"bias maps, {name} CNN");

# %% [markdown]
# ## The average gradient (Fig. 7D)
#
# The per-class mean of the input gradient of the cross-entropy loss over the
# training images (grouped by label): the clean CNN on the clean set (top),
# the 8→9 CNN on the clean set (middle), and the 8→9 CNN on the set with
# every 8 patched and relabelled 9 (bottom). Positive (yellow): raising the
# pixel raises the loss. The authors averaged the gradient of −p(label) over
# the correctly classified images; ours is the plain cross-entropy over all.

# %%
n_g = len(x_train) if n_gradient is None else n_gradient
a89 = MNIST_ATTACKS["8→9"]
all_patched = backdoor.poison(x_train[:n_g], y_train[:n_g], a89.patch, 8, 9, 1.0)
gradients = {  # key: (title, map)
    "clean": ("clean CNN, clean set", backdoor.average_gradient(models["clean"], x_train[:n_g], y_train[:n_g])),
    "attacked": ("8→9 CNN, clean set", backdoor.average_gradient(models["8→9"], x_train[:n_g], y_train[:n_g])),
    "patched": ("8→9 CNN, 8s patched as 9", backdoor.average_gradient(models["8→9"], *all_patched[:2])),
}
for title, g in gradients.values():
    plots.map_grid(g, [str(c) for c in range(10)], ncols=10, size=1.3, cmap="viridis",
                   suptitle=title);

# %% [markdown]
# ## Turning "the map reveals the patch" into numbers
#
# **Energy.** For each class map, the mean squared contrast (the class's mean
# noise minus the mean of all noise) on the patch's pixels, divided by that
# off the patch: about 1 where the patch region is as active as the rest,
# large where the map lights up on the patch. The same ratio for the average
# gradients (the gradient itself squared). **Blind detector.** Without being
# told where the patch is: each class's map, divided by its standard error,
# is z-scored per pixel against the other classes' maps; the class's best
# k×k window of that z (its median over the image subtracted, divided by its
# spread) is its score, and the scores are z-scored against each other. The
# detector flags the class with the largest z; "on patch" says whether its
# window's centre lies on the patch's bounding box. The clean CNN is scored the
# same way, with each attack's patch for the energy. **Patch z.** Told where
# the patch is but not which class was attacked: each class map's mean on the
# patch, in standard errors, z-scored against the other classes' (classes with
# at least 20 noise images); "patch z flags" names the class with the largest.
# The table also gives the share of the noise that goes to the target class.

# %%
table = backdoor_tables.score_table([("clean", maps["clean"], a) for a in MNIST_ATTACKS.values()]
                                    + [(n, maps[n], a) for n, a in MNIST_ATTACKS.items()], k=k)
grad_energy = backdoor_tables.gradient_energy({key: g for key, (_, g) in gradients.items()}, a89.patch)

# %% tags=["hide-input"]
Markdown(table.round(2).to_markdown(index=False))

# %% tags=["hide-input"]
for key, r in grad_energy.iterrows():
    print(f"average gradient, {gradients[key][0]}: energy ratio on the bracket, class 8 {r['energy8']:.2f}, "
          f"class 9 {r['energy9']:.2f}")

# %% [markdown]
# ## CIFAR-10: birds with an H become cats (Fig. 7B, Fig. 18)
#
# The CIFAR-10 CNN of Fig. 11 (width `cifar_width`), trained by the same
# recipe on the clean and on the poisoned training set (half of the birds
# with the H, relabelled cat; training uses random crops and flips, so the H
# also appears shifted and mirrored). Confusion matrices on the clean test
# set and on the test set with every bird patched, then the maps.

# %%
cx_test, cy_test = data.cifar10(train=False)
cfg = dict(epochs=cifar_epochs, width=cifar_width, seed=train_seed, n_train=n_train)
cifar = {"clean": zoo.load("cifar_cnn", **cfg),
         "bird→cat": zoo.load("cifar_cnn_backdoor_bird_cat", **cfg)}
ah = backdoor.ATTACKS["cifar10_backdoor_bird_cat"]
birds_patched = backdoor.poison(cx_test, cy_test, ah.patch, ah.source, ah.target, 1.0)[0]
cifar_success = backdoor_tables.success_table(cifar, cx_test, cy_test, {n: ah for n in cifar})
cifar_success["test accuracy (%)"] = backdoor_tables.accuracy_table(cifar)["test accuracy (%)"]
plots.confusion_matrices({n: [("clean test", *backdoor.confusion(m, cx_test, cy_test)),
                              ("all birds patched", *backdoor.confusion(m, birds_patched, cy_test))]
                          for n, m in cifar.items()},
                         class_names=list(data.CIFAR10_CLASSES), size=3.2);

# %%
cifar_maps, cifar_noise = {}, stimuli.WhiteNoise((3, 32, 32))
for name, m in cifar.items():
    with Probe(m, batch_size=batch_size) as p:
        cifar_maps[name] = p.classification_images(cifar_noise, cifar_n_samples, seed=seed,
                                                   desc=f"maps, {name}")
    plots.map_grid(templates.minmax(cifar_maps[name].mean),
                   plots.map_titles(cifar_maps[name].count, names=data.CIFAR10_CLASSES), size=1.6,
                   suptitle=f"bias maps, {name} CIFAR-10 CNN");
cifar_table = backdoor_tables.score_table([(n, ci, ah) for n, ci in cifar_maps.items()], k=k)

# %% tags=["hide-input"]
for _, r in cifar_success.iterrows():
    print(f"{r['model']} CIFAR-10 CNN: clean test accuracy {r['test accuracy (%)']:.2f}%; patched birds "
          f"classified as cat: {r['success (%)']:.2f}%")
Markdown(cifar_table.round(2).to_markdown(index=False))

# %% tags=["remove-cell"]
both = pd.concat([table, cifar_table])
items = {**backdoor_tables.glue_items(both, {"share": "noise to target (%)"}, digits=3),
         **backdoor_tables.glue_items(both, {
             "energy": "energy ratio, target", "energy_others": "energy ratio, other classes (max)",
             "flag": "detector flags", "pz": "patch z, target", "pzflag": "patch z flags",
             "pzmax": "its patch z", "z": "z", "onpatch": "on patch"}, digits=2),
         **backdoor_tables.glue_items(grad_energy, {"grad_energy8": "energy8", "grad_energy9": "energy9"},
                                      digits=2),
         **backdoor_tables.glue_items(cifar_success, {"cifar_acc": "test accuracy (%)",
                                                      "cifar_success": "success (%)"}, digits=2)}
for key, value in items.items():
    glue(key, value, display=False)
glue("n_gradient", f"{n_g:,}", display=False)
