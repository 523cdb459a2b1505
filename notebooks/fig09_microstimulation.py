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
# # Figures 9, 23, 24 and 25: micro-stimulation and psychometric curves
#
# This notebook reproduces **Figure 9** of Borji & Lin (2020), Section 3.4, and its supplementary
# versions: **Figure 23** (biases increased in every layer, every digit), **Figure 24** (biases
# decreased) and **Figure 25** (binary CNNs, 1 vs 3 and 2 vs 8). A digit ``s`` of the target class
# is buried in U[0, 1] noise ``n``,
#
# $$t = g\, s + (1 - g)\, n \qquad \text{(Eq. 3)},$$
#
# and the psychometric curve is the fraction of stimuli the CNN classifies as the target, against
# the signal level g. "Micro-stimulation" raises the bias of each map ``m`` of a layer in proportion
# to that map's mean activation ``a_m`` over the training images of the target digit (Eq. 6):
#
# $$b_m \leftarrow b_m \pm \lambda_l\, k\, a_m / \max(a),$$
#
# with λ = 0.1 for conv1 and 1 for conv2; for the fully connected layer (fc1, the paper's "fc") the
# released code adds ``0.01 k a_m`` without the division by ``max(a)`` ([Methods](../methods.md)).
# The minus sign gives the "decreasing" panels. The paper reports that raising the fc biases shifts
# the curve to the left (more stimuli called the target at the same signal level) for every digit,
# lowering them shifts it to the right, and that stimulation of the convolutional layers has mixed
# effects.

# %% tags=["parameters"]
digits = list(range(10))  # target digits of the 10-way CNN
layers = ["fc1", "conv1", "conv2"]  # stimulated layers (Eq. 6's lambda: 0.01, 0.1, 1)
conv_digits = None  # target digits for conv1 and conv2 (None: the same as digits)
directions = ["increase", "decrease"]  # the sign in Eq. 6 (Figs. 23 and 24)
ks = list(range(11))  # stimulation magnitudes k of Eq. 6
n_levels = 21  # signal levels g from 0 to 1
n_per_level = 1000  # stimuli per (k, g) cell (not stated; about the test images of a digit)
n_activation = None  # training images of the target per mean activation (None: all of them)
binary_pairs = [[1, 3], [2, 8]]  # Fig. 25's binary CNNs (class 0 digit, class 1 digit)
binary_layers = ["fc1", "conv1", "conv2"]
cnn_epochs = 10
binary_epochs = 3
seed = 0
train_seed = 1
n_train = None
batch_size = 4096
profile = "paper"

# %%
import time

import numpy as np
from IPython.display import Markdown

from wna import Probe, data, paper, plots, zoo
from wna.shifts import (arrows, direction_counts, fit_counts, shift_grid, shift_table, sweep_totals,
                        without_threshold)
from wna.tables import glue_items
from wna.stimulation import paper_delta, psychometric_curves

plots.setup()
x_train, y_train = data.mnist(train=True)
x_test, y_test = data.mnist(train=False)
levels = np.linspace(0.0, 1.0, n_levels)
conv_digits = digits if conv_digits is None else conv_digits

# %% tags=["remove-cell"]
from myst_nb import glue

for key, value in {"profile": profile, "n_per_level": f"{n_per_level:,}", "n_levels": int(n_levels),
                   "ks_text": ", ".join(str(k) for k in ks), "k_max": int(max(ks))}.items():
    glue(key, value, display=False)

# %% [markdown]
# ## The sweep
#
# For each target digit, layer and direction, Eq. 6's shifts are computed once from the mean
# post-ReLU activations over the digit's training images, then every k is applied in turn to the
# same stimuli: level ``j`` draws its noise and its test digits from seed ``(seed, j)`` whatever k
# is, so the curves of one panel differ only by the stimulation. One `Probe` per model serves the
# whole sweep (its fast copy is shifted in place).

# %%
def sweep(p, layer, direction, digit, target):
    """The curves of one panel: every k of Eq. 6 for one layer, direction and target digit."""
    train = x_train[y_train == digit][:n_activation]
    deltas = paper_delta(p.model, layer, train, ks, direction=direction)
    return psychometric_curves(p, x_test[y_test == digit], target, layer=layer, deltas=deltas,
                               levels=levels, n_per_level=n_per_level, seed=seed, progress=False)

# %%
cnn = zoo.load("mnist_cnn", epochs=cnn_epochs, seed=train_seed, n_train=n_train)
t0 = time.perf_counter()
with Probe(cnn, batch_size=batch_size, fast="eager", progress=False) as p:
    curves = {(layer, di, d): sweep(p, layer, di, d, d) for di in directions for layer in layers
              for d in (digits if layer == "fc1" else conv_digits)}
seconds = time.perf_counter() - t0
table = shift_table(curves, ["layer", "direction", "digit"])
totals = sweep_totals(table).iloc[0]

# %% tags=["hide-input"]
n_stimuli, rate = int(totals.stimuli), totals.stimuli_per_second
print(f"MNIST CNN: test accuracy {100 * cnn.test_accuracy:.2f}%; {len(curves)} panels, {n_stimuli:,} stimuli "
      f"in {seconds:.0f} s with Eq. 6's mean activations; the sweeps alone: {rate:,.0f} stimuli/s")
for key, value in {"cnn_acc": round(100 * cnn.test_accuracy, 2), "n_stimuli": f"{n_stimuli:,}",
                   "sweep_seconds": int(round(seconds)), "stimuli_per_second": int(round(rate))}.items():
    glue(key, value, display=False)

# %% [markdown]
# ## Figures 9, 23 and 24: the curves
#
# One panel per target digit (columns) and stimulated layer (rows); redder curves are larger k.

# %%
for direction in directions:
    panels = {f"{layer} {d}": c for (layer, di, d), c in curves.items() if di == direction}
    plots.psychometric_grid(panels, ncols=len(digits), suptitle=f"biases {direction}d (Eq. 6)")

# %% [markdown]
# The first figure is Fig. 23 (its top row is Fig. 9A; Fig. 9B and C pick conv panels from it), the
# second Fig. 24.
#
# ## Threshold shifts
#
# Each curve is fitted with a cumulative Gaussian by psignifit 4 (Bayesian; guess, lapse and
# overdispersion fixed at 0, since a network does not lapse and its trials are exactly binomial; a
# grid fine enough for curves of thousands of trials: `wna.stimulation.fit_curve`). The shift is the MAP threshold (the g at which half the stimuli
# are called the target) at k = {glue:text}`k_max:d` minus that at k = 0, with a 95% interval from
# the two credible intervals; negative is a move to the left. Where psignifit cannot serve (a flat
# curve, or psignifit not installed) the maximum-likelihood fit (`fit_psychometric`) stands in: the
# lines above the table count the fits of each kind. Arrows mark shifts whose interval excludes 0 (←
# left, → right; · neither); "*" marks a threshold outside the sampled levels (its interval rests on
# the fitted shape). A flat curve (every stimulus called the target, or none) has no fitted shift;
# its direction comes from the change in the area under the curve ("flat ←", "flat →"). The first
# column is the share of pure noise (g = 0) the unstimulated CNN already calls the target: a curve
# that starts near 1 has no threshold for stimulation to move ("no fit").

# %% tags=["hide-input"]
print(fit_counts(table).to_string())
Markdown(shift_grid(table, ["digit"], ["layer", "direction"]).to_markdown())

# %%
counts = direction_counts(table, ["layer", "direction"])
counts

# %% tags=["hide-input"]
for key, value in glue_items(counts, ["left", "right", "n", "median"], digits=3).items():
    glue(key, value, display=False)
texts = {"fc1_nofit": without_threshold(table, "fc1", "increase"),
         "conv2_named": arrows(table, "conv2", "increase", (0, 1, 3))}
print(f"fc1 increased, digits without a threshold: {texts['fc1_nofit']}")
print(paper.compare("fc_left_digits", int(counts.at[("fc1", "increase"), "left"])))
print(paper.compare("fc_right_digits", int(counts.at[("fc1", "decrease"), "right"])))
print(f"conv2 increased, digits 0, 1, 3 (paper: right, right, left): {texts['conv2_named']}")
for key, value in texts.items():
    glue(key, value, display=False)

# %% [markdown]
# ## Figure 25: binary CNNs
#
# The same analysis on two binary observers (the Fig. 10 CNN with one logit, as in Figs. 1 and 12),
# 1 vs 3 and 2 vs 8. Each digit of a pair is the target in turn: Eq. 6's shifts come from that
# digit's training images, and the curve is the fraction of stimuli made of its test digits that the
# observer assigns to it.

# %%
binary = {}
for a, b in binary_pairs:
    model = zoo.load("mnist_binary_cnn", digits=(a, b), epochs=binary_epochs, seed=train_seed,
                     n_train=n_train)
    print(f"{a} vs {b}: test accuracy {100 * model.test_accuracy:.2f}%")
    with Probe(model, batch_size=batch_size, fast="eager", progress=False) as p:
        binary |= {(f"{a} vs {b}", layer, di, d): sweep(p, layer, di, d, target) for di in directions
                   for layer in binary_layers for target, d in enumerate((a, b))}

# %%
for pair in dict.fromkeys(key[0] for key in binary):
    panels = {f"{layer} {di[:3]}. {d}": c for (pr, layer, di, d), c in binary.items() if pr == pair}
    plots.psychometric_grid(panels, ncols=2 * len(binary_layers), suptitle=pair)

# %%
btable = shift_table(binary, ["pair", "layer", "direction", "digit"])
bcounts = direction_counts(btable, ["layer", "direction"])
Markdown(shift_grid(btable, ["pair", "digit"], ["layer", "direction"]).to_markdown())

# %% tags=["hide-input"]
print(bcounts.to_string())
print(fit_counts(btable).to_string())
for key, value in glue_items(bcounts, ["left", "right", "n"], name="binary_{row}_{column}").items():
    glue(key, value, display=False)
bnofit = without_threshold(btable, "fc1", "increase")
print(f"binary, fc1 increased, targets without a threshold: {bnofit}")
glue("binary_fc1_nofit", bnofit, display=False)

# %% [markdown]
# Raising the fc1 biases of the target's most active units makes the network call noise the target
# more often at every signal level, a shift to the left, and lowering them does the opposite, as the
# paper reports for Figs. 9, 24 and 25. The convolutional layers act on features shared by all
# digits, so their stimulation helps some targets and hurts others; the tables above say which for
# this training run. The reproduction report compares the counts with the paper's claims.
