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
# # Figure 13: classification images of an MLP and an RNN
#
# This notebook reproduces **Figure 13** of Borji & Lin (2020, supplement):
# the classification images of a two-layer perceptron (784 → 1000 → 10) and of
# a recurrent network (two tanh layers of 100 units reading the 28 image rows
# as time steps) trained on MNIST. Unlike the CNN's maps (Fig. 2), these do
# not look like digits, and the paper notes that neither model classifies any
# noise image as 1.

# %% tags=["parameters"]
n_samples = 1_000_000  # white-noise images per model
batch_size = 4096
seed = 0
mlp_epochs = 10
rnn_epochs = 10
train_seed = 1
n_train = None
profile = "paper"

# %%
from wna import paper, plots, probe, stimuli, templates, zoo

plots.setup()

# %% tags=["remove-cell"]
from myst_nb import glue

glue("profile", profile, display=False)
glue("n_samples", f"{n_samples:,}", display=False)

# %% [markdown]
# ## The models
#
# Both are trained like the CNN of Fig. 2 (Adam, lr 1e-3, batch 64, raw
# [0, 1] pixels); the zoo trains each once and caches it.

# %%
models = {
    "mlp": zoo.load("mnist_mlp", epochs=mlp_epochs, seed=train_seed, n_train=n_train),
    "rnn": zoo.load("mnist_rnn", epochs=rnn_epochs, seed=train_seed, n_train=n_train),
}

# %% [markdown]
# ## Classification images
#
# The same seeded U[0, 1] noise goes to both models; each map is the mean
# noise image over the stimuli a model assigned to that digit (min-max
# normalised for display). Titles: the digit and the share of the noise
# images classified as that digit.

# %%
noise = stimuli.WhiteNoise((1, 28, 28))
cis = {
    name: probe.classification_images(model, noise, n_samples=n_samples,
                                      batch_size=batch_size, seed=seed)
    for name, model in models.items()
}
for name, ci in cis.items():
    plots.map_grid(templates.minmax(ci.mean), plots.map_titles(ci.count, share=True),
                   suptitle=f"{name.upper()} ({ci.n:,} noise images)")

# %% [markdown]
# ## Comparison with the paper
#
# The paper's accuracies for these models come from the authors' released
# code (see the reproduction report); the paper's text says that neither
# model classifies any noise image as 1.

# %% tags=["hide-input"]
for name, model in models.items():
    print(paper.compare(f"{name}_acc", 100 * model.test_accuracy))
for name, ci in cis.items():
    print(paper.compare(f"{name}_count_1", int(ci.count[1])))
    print(f"{name.upper()} noise images per class:", ci.count.tolist())

# %% tags=["remove-cell"]
for name, ci in cis.items():
    glue(f"{name}_top_class", int(ci.count.argmax()), display=False)
    glue(f"{name}_top_frac", round(100 * float(ci.frequency.max()), 1), display=False)
    glue(f"{name}_empty", int((ci.count == 0).sum()), display=False)
