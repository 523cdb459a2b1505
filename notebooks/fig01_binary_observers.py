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
# # Figures 1 and 12: a CNN as a psychophysics observer
#
# This notebook reproduces **Figure 1** (B and C) and its supplementary
# version, **Figure 12**, of Borji & Lin (2020), Section 2.1. A binary CNN
# (the Fig. 10 architecture with one output logit) learns to tell two digits
# apart: 1 from 7, and 5 from 6. On each trial it sees a test digit ``s``
# buried in U[0, 1] noise ``n``,
#
# $$t = \gamma\, s + (1 - \gamma)\, n \qquad \text{(Eq. 3)},$$
#
# and answers one of the two digits. Sorting the trials into the four
# stimulus-response cells gives, per row (one γ): the mean stimulus of each
# cell ("a→b": signal a, answered b), the mean stimulus answered as the second
# digit minus the mean answered as the first, the classification image of
# Eq. 1 computed on the noise alone (the paper's "*" column), and the
# correlation map of Eq. 2 between noise and response. Yellow (blue) marks
# pixels whose brightness pushes the answer towards the second (first) digit.

# %% tags=["parameters"]
pairs = [[1, 7], [5, 6]]  # digit pairs (class 0, class 1)
gammas = [0.0, 0.1, 0.2, 0.3]  # signal weights of Eq. 3
n_trials = 10_000_000  # trials per pair and gamma (paper: about 10^7)
batch_size = 4096
seed = 0
epochs = 3
train_seed = 1
n_train = None
profile = "paper"

# %%
from wna import Probe, data, plots, stimuli, zoo
from wna.zoo import binary_subset

plots.setup()
x_test, y_test = data.mnist(train=False)
noise = stimuli.WhiteNoise((1, 28, 28))

# %% tags=["remove-cell"]
from myst_nb import glue

glue("profile", profile, display=False)
glue("n_trials", f"{n_trials:,}", display=False)

# %% [markdown]
# ## The binary observers
#
# Each CNN has one logit and is trained with a sigmoid cross-entropy
# (`BCEWithLogitsLoss`); it answers the second digit when its logit is
# positive. The authors' code passed a softmax output to the loss instead.

# %%
observers = {
    (a, b): zoo.load("mnist_binary_cnn", digits=(a, b), epochs=epochs, seed=train_seed,
                     n_train=n_train)
    for a, b in pairs
}

# %% tags=["hide-input"]
for (a, b), model in observers.items():
    print(f"{a} vs {b}: test accuracy {100 * model.test_accuracy:.2f}%")
    glue(f"acc_{a}v{b}", round(100 * model.test_accuracy, 2), display=False)

# %% [markdown]
# ## Stimulus-response cells across γ
#
# The signals are the test images of the two digits; every trial draws one
# at random and fresh noise, from a seed. One `Probe` per observer serves
# every γ (its fast copy of the model is built once).

# %%
results = {}
for (a, b), model in observers.items():
    signals, classes = binary_subset(x_test, y_test, (a, b))
    with Probe(model, batch_size=batch_size) as p:
        results[(a, b)] = {
            g: p.stimulus_response_cells(signals, classes, noise, g, n_trials, seed=seed)
            for g in gammas
        }

# %%
for (a, b), by_gamma in results.items():
    fig = plots.binary_cells_grid(by_gamma, (a, b))
    fig.suptitle(f"{a} vs {b}", y=1.02)

# %% tags=["hide-input"]
for (a, b), by_gamma in results.items():
    for g, cells in by_gamma.items():
        eq1, eq2 = cells.classification_image.flatten(), cells.correlation.flatten()
        cos = float(eq1 @ eq2 / (eq1.norm() * eq2.norm()))
        answered_b = 100 * float(cells.count[:, 1].sum()) / cells.n
        print(f"{a} vs {b}, γ={g:g}: observer correct on {100 * cells.accuracy:.1f}% "
              f"of trials; answered {b} on {answered_b:.1f}%; "
              f"cosine(Eq. 1, Eq. 2) = {cos:.3f}")
        tag = f"{a}v{b}_g{int(round(100 * g)):02d}"
        glue(f"trial_acc_{tag}", round(100 * cells.accuracy, 1), display=False)
        glue(f"cos_eq1_eq2_{tag}", round(cos, 3), display=False)

# %% [markdown]
# At γ = 0 the stimulus is pure noise, so the trial accuracy is chance and
# the maps show only the observer's bias; as γ grows the signals dominate the
# mean stimuli, while the noise-only maps (Eq. 1, Eq. 2) keep the template the
# observer uses, as the paper reports.
