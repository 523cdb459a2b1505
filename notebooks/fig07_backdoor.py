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

from wna import Probe, backdoor, data, paper, plots, stimuli, templates, zoo

plots.setup()
x_train, y_train = data.mnist(train=True)
x_test, y_test = data.mnist(train=False)
MNIST_ATTACKS = {"0→1": "mnist_backdoor_0to1", "8→9": "mnist_backdoor_8to9"}

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
poisoned = {}
for name, key in MNIST_ATTACKS.items():
    a = backdoor.ATTACKS[key]
    poisoned[name] = backdoor.poison(x_train, y_train, a.patch, a.source, a.target, a.fraction)
    plots.map_grid(templates.class_means(*poisoned[name][:2], 10), [str(c) for c in range(10)],
                   ncols=10, size=1.2, suptitle=f"mean digits, {name} poisoned training set");
plots.map_grid(templates.class_means(x_train, y_train, 10), [str(c) for c in range(10)], ncols=10,
               size=1.2, suptitle="mean digits, clean training set");

# %% tags=["hide-input"]
for name, key in MNIST_ATTACKS.items():
    a, rows = backdoor.ATTACKS[key], poisoned[name][2]
    covered = int((x_train[rows][:, 0][:, a.patch.mask] > 0).any(1).sum())
    n_source = int((y_train == a.source).sum())
    print(f"{name}: {len(rows):,} of {n_source:,} training {a.source}s patched and relabelled "
          f"{a.target}; {covered:,} of them had digit pixels under the patch")
    glue(f"poisoned_{a.source}{a.target}", f"{len(rows):,}", display=False)
    glue(f"covered_{a.source}{a.target}", f"{covered:,}", display=False)

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

# %% tags=["hide-input"]
for name, m in models.items():
    print(f"{name:6} CNN: clean test accuracy {100 * m.test_accuracy:.2f}%")
    glue(f"acc_{name.replace('→', 'to')}", round(100 * m.test_accuracy, 2), display=False)

# %% [markdown]
# ## The attack works (Fig. 7A, confusion matrices)
#
# Each attacked CNN on the clean test set, and on the test set with every
# source digit patched (rows: true class, columns: predicted; each row
# normalised).

# %%
rows, success = {}, {}
for name, key in MNIST_ATTACKS.items():
    a = backdoor.ATTACKS[key]
    patched_test = backdoor.poison(x_test, y_test, a.patch, a.source, a.target, 1.0)[0]
    src = y_test == a.source
    success[name] = backdoor.success(models[name], patched_test[src], a.target)
    m = models[name]
    rows[name] = [("clean CNN, clean test", *backdoor.confusion(models["clean"], x_test, y_test)),
                  ("attacked, clean test", *backdoor.confusion(m, x_test, y_test)),
                  (f"attacked, {a.source}s patched", *backdoor.confusion(m, patched_test, y_test))]
plots.confusion_matrices(rows, size=2.8);

# %% tags=["hide-input"]
for name, key in MNIST_ATTACKS.items():
    a = backdoor.ATTACKS[key]
    n_source = int((y_test == a.source).sum())
    print(f"{name}: {100 * success[name]:.2f}% of the {n_source} patched test {a.source}s "
          f"classified as {a.target}")
    glue(f"success_{a.source}{a.target}", round(100 * success[name], 2), display=False)
print(paper.compare("backdoor_8to9_patched", 100 * success["8→9"]))

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
a89 = backdoor.ATTACKS["mnist_backdoor_8to9"]
all_patched = backdoor.poison(x_train[:n_g], y_train[:n_g], a89.patch, 8, 9, 1.0)
gradients = {
    "clean CNN, clean set": backdoor.average_gradient(models["clean"], x_train[:n_g], y_train[:n_g]),
    "8→9 CNN, clean set": backdoor.average_gradient(models["8→9"], x_train[:n_g], y_train[:n_g]),
    "8→9 CNN, 8s patched as 9": backdoor.average_gradient(models["8→9"], *all_patched[:2]),
}
for title, g in gradients.items():
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
def scores(model_name, ci, a):
    energy = backdoor.patch_energy(ci, a.patch)
    e, z = energy["ratio"], energy["z"]
    zs = z.nan_to_num(-float("inf"))
    top = int(zs.argmax()) if (~z.isnan()).any() else -1
    d = backdoor.detect(ci, k=k)
    others = e[(torch.arange(len(e)) != a.target) & ~e.isnan()]
    top_other = float(others.max()) if len(others) else float("nan")
    return {"model": model_name, "patch": a.patch.name, "target": a.target,
            "noise to target (%)": 100 * float(ci.frequency[a.target]),
            "energy ratio, target": float(e[a.target]),
            "energy ratio, other classes (max)": top_other,
            "patch z, target": float(z[a.target]),
            "patch z flags": top, "its patch z": float(z[top]) if top >= 0 else float("nan"),
            "detector flags": d.flagged, "z": d.flagged_z,
            "window (rows, cols)": d.window() if d.flagged >= 0 else "–",
            "on patch": d.on_patch(a.patch)}


table = [scores("clean", maps["clean"], backdoor.ATTACKS[key]) for key in MNIST_ATTACKS.values()]
table += [scores(name, maps[name], backdoor.ATTACKS[key]) for name, key in MNIST_ATTACKS.items()]
grad_energy = {t: backdoor.patch_energy(g, a89.patch)["ratio"] for t, g in gradients.items()}

# %% tags=["hide-input"]
Markdown(pd.DataFrame(table).round(2).to_markdown(index=False))

# %% tags=["hide-input"]
for title, e in grad_energy.items():
    print(f"average gradient, {title}: energy ratio on the bracket, class 8 {float(e[8]):.2f}, "
          f"class 9 {float(e[9]):.2f}")

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
bird = cy_test == ah.source
cifar_success = {n: backdoor.success(m, birds_patched[bird], ah.target) for n, m in cifar.items()}
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
cifar_table = [scores(n, ci, ah) for n, ci in cifar_maps.items()]

# %% tags=["hide-input"]
for name, m in cifar.items():
    print(f"{name} CIFAR-10 CNN: clean test accuracy {100 * m.test_accuracy:.2f}%; patched birds "
          f"classified as cat: {100 * cifar_success[name]:.2f}%")
Markdown(pd.DataFrame(cifar_table).round(2).to_markdown(index=False))

# %% tags=["remove-cell"]
for row in table + cifar_table:
    tag = f"{row['model'].replace('→', 'to')}_{row['patch']}"
    glue(f"energy_{tag}", round(row["energy ratio, target"], 2), display=False)
    glue(f"share_{tag}", round(row["noise to target (%)"], 3), display=False)
    glue(f"energy_others_{tag}", round(row["energy ratio, other classes (max)"], 2), display=False)
    glue(f"flag_{tag}", row["detector flags"], display=False)
    glue(f"pz_{tag}", round(row["patch z, target"], 2), display=False)
    glue(f"pzflag_{tag}", row["patch z flags"], display=False)
    glue(f"pzmax_{tag}", round(row["its patch z"], 2), display=False)
    glue(f"z_{tag}", round(row["z"], 2), display=False)
    glue(f"onpatch_{tag}", "yes" if row["on patch"] else "no", display=False)
for title, tag in zip(grad_energy, ["clean", "attacked", "patched"]):
    glue(f"grad_energy8_{tag}", round(float(grad_energy[title][8]), 2), display=False)
    glue(f"grad_energy9_{tag}", round(float(grad_energy[title][9]), 2), display=False)
for name, m in cifar.items():
    tag = name.replace("→", "to")
    glue(f"cifar_acc_{tag}", round(100 * m.test_accuracy, 2), display=False)
    glue(f"cifar_success_{tag}", round(100 * cifar_success[name], 2), display=False)
glue("n_gradient", f"{n_g:,}", display=False)
