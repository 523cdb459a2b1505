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
# # Figures 4 and 14: how many noise images does a classification image need?
#
# This notebook reproduces **Figure 4** and **Figure 14** (supplement) of
# Borji & Lin (2020): the MNIST CNN's classification images built from
# 10^3, 10^4, 10^5 and 10^6 white-noise images. The paper finds that "with
# 10K noise stimuli, the bias maps already start to look like the target
# digits". Beside the pictures we measure how fast the maps converge and set
# the measurement against the closed form for a linear observer.

# %% tags=["parameters"]
sizes = [1_000, 10_000, 100_000, 1_000_000]  # noise images N at which the maps are shown
batch_size = 1_000  # divides every N: the maps at N are the first N images of one stream
seed = 0
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
# ## One stream, every N
#
# The CNN is the one of Fig. 2 (same recipe, so the zoo reuses it). The
# maps at each N are not separate runs: they are snapshots of the running
# sums of one seeded stream of U[0, 1] noise, so the map at 10^4 is made
# of the first 10^4 images of the map at 10^5.

# %%
cnn = zoo.load("mnist_cnn", epochs=cnn_epochs, seed=train_seed, n_train=n_train)
noise = stimuli.WhiteNoise((1, 28, 28))
with Probe(cnn, batch_size=batch_size) as p:
    maps = p.classification_images(noise, max(sizes), seed=seed, snapshots=sizes)

# %% [markdown]
# Rows: N; columns: the digits. Each map is the mean noise image over the
# images the CNN assigned to that digit, min-max normalised; blank where no
# image was assigned. Figure 4 shows the first three columns.

# %%
grid = np.concatenate([templates.minmax(maps[n].mean).numpy() for n in sizes])
titles = [f"{d}: N={n:,}" for n in sizes for d in range(10)]
plots.map_grid(grid, titles, ncols=10, size=1.3);

# %% [markdown]
# ## How fast the maps converge
#
# For each digit, the cosine between its map at N and its map at the
# largest N (each map minus the mean of all noise images, so that the
# noise's own mean of 0.5 does not count as agreement). For a linear
# observer with D pixels the expected cosine of a map to the true template
# is ρ(N) = [1 + (π/2)(D/N)k]^(-1/2) ([Methods](../methods.md), known answer 4; k = 1 without
# internal noise), and to the map of a larger sample of the same stream
# ρ(N)/ρ(N_max). The CNN is not linear, and most noise goes to a few digits;
# we fit the one k that describes best the cosine averaged over digits with
# weights equal to their share of the noise (the map of a typical noise
# image).

# %%
ns, cos = probe.map_cosines(maps)
dim = 28 * 28
typical = probe.share_weighted(cos, maps[ns[-1]].count)
k_fit = probe.fit_k(ns[:-1], typical[:-1], dim, reference=ns[-1])
plots.convergence(ns, cos, dim, k=k_fit);

# %% [markdown]
# The same fit per digit: a digit that gets few noise images converges
# more slowly (a larger k). The last column is the number of images at which
# a linear observer with that k reaches ρ = 0.9 to its true template
# (N = (π/2)·D·k / (1/0.81 − 1)).

# %% tags=["hide-input"]
def n_for(rho, k):
    return int(round(np.pi / 2 * dim * k / (1 / rho**2 - 1)))


counts = maps[ns[-1]].count
k_digit = {}
print(f"{'digit':>5} {'share':>8} {'k':>8} {'N for rho=0.9':>14} {'rho at 10^4':>12}")
for d in range(10):
    c = cos[:-1, d].numpy()
    k_d = probe.fit_k(ns[:-1], c, dim, reference=ns[-1]) if np.isfinite(c).any() else float("nan")
    k_digit[d] = k_d
    n_d, r_d = "–", "–"
    if np.isfinite(k_d):
        n_d, r_d = n_for(0.9, k_d), f"{probe.expected_cosine(10_000, dim, k_d):.2f}"
    print(f"{d:>5} {100 * float(counts[d]) / ns[-1]:>7.2f}% {k_d:>8.3g} {n_d:>14} {r_d:>12}")
rho_10k = probe.expected_cosine(10_000, dim, k_fit)
print(f"weighted by share: k = {k_fit:.3g}, N for rho=0.9 = {n_for(0.9, k_fit):,}, "
      f"rho at 10^4 = {rho_10k:.2f}")

# %% [markdown]
# ## Standard error per pixel
#
# The engine keeps each class's sum of squares, so every map comes with its
# standard error per pixel. For U[0, 1] noise it is σ/√n_c with σ = √(1/12)
# and n_c the images assigned to the class: the measured median (dots) lies
# on that line (dashed) for every digit and N.

# %%
plots.standard_errors(maps);

# %% [markdown]
# ## Do the maps classify digits?
#
# Template matching of the MNIST test digits with the maps at each N
# (Fig. 2C's rule: raw dot product, min-max normalised maps).

# %% tags=["hide-input"]
x_test, y_test = data.mnist(train=False)
accuracy = {}
for n in ns:
    acc, _ = templates.template_accuracy(templates.minmax(maps[n].mean), x_test, y_test)
    accuracy[n] = 100 * acc
    empty = int((maps[n].count == 0).sum())
    print(f"N = {n:>9,}: template accuracy {accuracy[n]:5.2f}%, weighted cosine "
          f"{typical[ns.index(n)]:.3f}, empty classes {empty}")

# %% [markdown]
# ## Comparison with the paper
#
# The paper states no number beyond "with 10K noise stimuli, the bias maps
# already start to look like the target digits", judged by eye. Our
# measurable stand-in is stricter: the number of images at which the fitted
# linear observer reaches a cosine of 0.9 to its template. "Starting to look
# like" is a lower bar: the last column above gives the cosine the fitted
# observer reaches at 10^4 images.

# %% tags=["hide-input"]
print(paper.compare("fig4_samples", n_for(0.9, k_fit)))

# %% tags=["remove-cell"]
glue("k_fit", round(float(k_fit), 3), display=False)
glue("n_rho90", n_for(0.9, k_fit), display=False)
glue("rho_10k", round(float(rho_10k), 2), display=False)
top = int(counts.argmax())
glue("top_digit", top, display=False)
glue("top_share", round(100 * float(counts[top]) / ns[-1], 1), display=False)
glue("top_k", round(float(k_digit[top]), 3), display=False)
glue("top_rho_10k", round(probe.expected_cosine(10_000, dim, k_digit[top]), 2), display=False)
glue("top_n_rho90", n_for(0.9, k_digit[top]), display=False)
for n in ns:
    glue(f"tm_acc_{n}", round(float(accuracy[n]), 2), display=False)
    glue(f"typical_cos_{n}", round(float(typical[ns.index(n)]), 3), display=False)
glue("tm_acc_max", round(float(accuracy[ns[-1]]), 2), display=False)
n10k = 10_000 if 10_000 in ns else ns[0]
glue("n10k", f"{n10k:,}", display=False)
glue("typical_cos_10k", round(float(typical[ns.index(n10k)]), 3), display=False)
glue("tm_acc_10k", round(float(accuracy[n10k]), 2), display=False)
