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
# The "adversarial defense" part of Section 3.2 of Borji & Lin (2020). A backdoor is planted by
# training on a poisoned set: a small patch is drawn on half of one class (the source), relabelled
# as another (the target). The paper's sets: MNIST 0s with an x-shaped 3×3 patch on the top left,
# relabelled 1; MNIST 8s with a c-shaped ("bracket") patch on the top right, relabelled 9; CIFAR-10
# birds with an H on the top right, relabelled cat. CNNs trained on them classify a clean test set
# normally but send patched source images to the target (Fig. 7A, Fig. 18); their classification
# images show the patch (Fig. 7A right, Fig. 7B), the average input gradient (Fig. 7D) only faintly.
# Fig. 19: the mean digits of the clean and the poisoned training sets. The MNIST patches are the
# authors' pixels; the paper gives none for the H, so ours is a white 5×5 H (`backdoor.PATCHES`).

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
from IPython.display import Markdown

from wna import Probe, backdoor, backdoor_tables, data, paper, plots, stimuli, templates, zoo

plots.setup()
x_train, y_train = data.mnist(train=True)
x_test, y_test = data.mnist(train=False)
MNIST_ATTACKS = {"0→1": backdoor.ATTACKS["mnist_backdoor_0to1"], "8→9": backdoor.ATTACKS["mnist_backdoor_8to9"]}
DIGITS = [str(c) for c in range(10)]

# %% [markdown]
# ## The poisoned training sets (Fig. 19)
#
# The first half (index order) of the source class gets the patch (pixels set to 1.0) and the
# target's label. The authors added 255 to uint8 images, which wraps around where the digit already
# covers a patch pixel; "covered" counts such images. Fig. 19: the mean training digits of each
# poisoned set (the patch shows faintly in the target's mean), then of the clean set.

# %%
for name, a in MNIST_ATTACKS.items():
    px, py, _ = backdoor.poison(x_train, y_train, a.patch, a.source, a.target, a.fraction)
    plots.map_grid(templates.class_means(px, py, 10), DIGITS, ncols=10, size=1.2,
                   suptitle=f"mean digits, {name} poisoned training set");
plots.map_grid(templates.class_means(x_train, y_train, 10), DIGITS, ncols=10, size=1.2,
               suptitle="mean digits, clean training set");
poisoned = backdoor_tables.poison_table(x_train, y_train, MNIST_ATTACKS)
Markdown(poisoned.to_markdown(index=False))

# %% [markdown]
# ## The models, and the attack works (Fig. 7A, confusion matrices)
#
# The paper's MNIST CNN, trained on the clean set and on each poisoned set by
# the same recipe (`zoo`: Adam, batch 64, the authors' seed). Each attacked CNN
# on the clean test set, and on the test set with every source digit patched
# (rows: true class, columns: predicted; each row normalised).

# %%
cfg = dict(epochs=cnn_epochs, seed=train_seed, n_train=n_train)
models = {"clean": zoo.load("mnist_cnn", **cfg),
          "0→1": zoo.load("mnist_cnn_backdoor_0to1", **cfg),
          "8→9": zoo.load("mnist_cnn_backdoor_8to9", **cfg)}
accuracy = backdoor_tables.accuracy_table(models)
success = backdoor_tables.success_table({n: models[n] for n in MNIST_ATTACKS}, x_test, y_test, MNIST_ATTACKS)
rows = {}
for name, a in MNIST_ATTACKS.items():
    patched_test = backdoor.poison(x_test, y_test, a.patch, a.source, a.target, 1.0)[0]
    rows[name] = [("clean CNN, clean test", *backdoor.confusion(models["clean"], x_test, y_test)),
                  ("attacked, clean test", *backdoor.confusion(models[name], x_test, y_test)),
                  (f"attacked, {a.source}s patched", *backdoor.confusion(models[name], patched_test, y_test))]
plots.confusion_matrices(rows, size=2.8);

# %% tags=["hide-input"]
print(paper.compare("backdoor_8to9_patched", float(success.at["8to9", "success (%)"])))
Markdown(accuracy.to_markdown(index=False, floatfmt=".2f") + "\n\n"
         + success.to_markdown(index=False, floatfmt=".2f"))

# %% [markdown]
# ## The maps reveal the patch (Fig. 7A, right)
#
# White noise through each CNN; the classification images (mean noise per
# predicted class, min-max normalised). Titles: the class and the number of
# noise images it received.

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
# The per-class mean input gradient of the cross-entropy loss over the training images (grouped by
# label): the clean CNN, the 8→9 CNN, and the 8→9 CNN on the set with every 8 patched and relabelled
# 9. Yellow: raising the pixel raises the loss. The authors averaged the gradient of −p(label) over
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
    plots.map_grid(g, DIGITS, ncols=10, size=1.3, cmap="viridis", suptitle=title);

# %% [markdown]
# ## Turning "the map reveals the patch" into numbers
#
# **Energy** (`backdoor.patch_energy`): a class map's mean squared contrast on the patch over that off
# it (about 1 where the patch is as active as the rest; for the gradients, the gradient squared).
# **Patch z**: told where the patch but not which class, each class map's mean on the patch, in
# standard errors, z-scored against the other classes' (those with at least 20 noise images).
# **Blind detector** (`backdoor.detect`): not told where the patch is, each class's best k×k window
# of its per-pixel z against the other classes, z-scored against theirs; "on patch": the flagged
# window's centre lies on the patch's bounding box. The clean CNN is scored with each attack's patch.

# %%
table = backdoor_tables.score_table([("clean", maps["clean"], a) for a in MNIST_ATTACKS.values()]
                                    + [(n, maps[n], a) for n, a in MNIST_ATTACKS.items()], k=k)
grad_energy = backdoor_tables.gradient_energy({key: g for key, (_, g) in gradients.items()}, a89.patch)

# %% tags=["hide-input"]
Markdown(table.round(2).to_markdown(index=False) + "\n\nAverage gradients, energy ratio on the bracket:\n\n"
         + grad_energy.rename(index={k: t for k, (t, _) in gradients.items()}).to_markdown(floatfmt=".2f"))

# %% [markdown]
# ## CIFAR-10: birds with an H become cats (Fig. 7B, Fig. 18)
#
# The CIFAR-10 CNN of Fig. 11 (width `cifar_width`), trained by the same recipe on the clean and the
# poisoned set (random crops and flips also shift and mirror the H). Confusion matrices on the clean
# test set and with every bird patched, then the maps.

# %%
cx_test, cy_test = data.cifar10(train=False)
cfg = dict(epochs=cifar_epochs, width=cifar_width, seed=train_seed, n_train=n_train)
cifar = {"clean": zoo.load("cifar_cnn", **cfg),
         "bird→cat": zoo.load("cifar_cnn_backdoor_bird_cat", **cfg)}
ah = backdoor.ATTACKS["cifar10_backdoor_bird_cat"]
birds_patched = backdoor.poison(cx_test, cy_test, ah.patch, ah.source, ah.target, 1.0)[0]
cifar_success = backdoor_tables.success_table(cifar, cx_test, cy_test, {n: ah for n in cifar})
plots.confusion_matrices({n: [("clean test", *backdoor.confusion(m, cx_test, cy_test)),
                              ("all birds patched", *backdoor.confusion(m, birds_patched, cy_test))]
                          for n, m in cifar.items()},
                         class_names=list(data.CIFAR10_CLASSES), size=3.2);
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
Markdown(cifar_success.to_markdown(index=False, floatfmt=".2f") + "\n\n"
         + cifar_table.round(2).to_markdown(index=False))

# %% tags=["remove-cell"]
import functools

from myst_nb import glue

from wna.tables import glue_items

both = pd.concat([table, cifar_table])
items = functools.partial(glue_items, name="{column}_{row}")  # keys: stem_rowkey
glued = {"profile": profile, "n_samples": f"{n_samples:,}", "cifar_n_samples": f"{cifar_n_samples:,}",
         "cnn_epochs": cnn_epochs, "cifar_epochs": cifar_epochs, "cifar_width": float(cifar_width), "k": k,
         "n_gradient": f"{n_g:,}",
         **items(poisoned, {"poisoned": "poisoned", "covered": "covered"}, fmt=","),
         **items(accuracy, {"acc": "test accuracy (%)"}, digits=2),
         **items(success, {"success": "success (%)"}, by="pair", digits=2),
         **items(both, {"share": "noise to target (%)"}, digits=3),
         **items(both, {"energy": "energy ratio, target", "energy_others": "energy ratio, other classes (max)",
                        "flag": "detector flags", "pz": "patch z, target", "pzflag": "patch z flags",
                        "pzmax": "its patch z", "z": "z", "onpatch": "on patch"}, digits=2),
         **items(grad_energy, {"grad_energy8": "energy8", "grad_energy9": "energy9"}, digits=2),
         **items(cifar_success, {"cifar_acc": "test accuracy (%)", "cifar_success": "success (%)"}, digits=2)}
for key, value in glued.items():
    glue(key, value, display=False)
