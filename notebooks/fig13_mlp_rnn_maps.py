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
from myst_nb import glue

from wna import plots, probe, stimuli, zoo
from wna.paper import difference

plots.setup()
glue("profile", profile, display=False)
models = {
    "mlp": zoo.load("mnist_mlp", epochs=mlp_epochs, seed=train_seed, n_train=n_train),
    "rnn": zoo.load("mnist_rnn", epochs=rnn_epochs, seed=train_seed, n_train=n_train),
}
for name, model in models.items():
    print(f"{name.upper()} test accuracy: {100 * model.test_accuracy:.2f}%")
    glue(f"{name}_acc", round(100 * model.test_accuracy, 2), display=False)
    glue(f"{name}_acc_diff", difference(f"{name}_acc", 100 * model.test_accuracy), display=False)

# %%
noise = stimuli.WhiteNoise((1, 28, 28))
for name, model in models.items():
    ci = probe.classification_images(model, noise, n_samples=n_samples, batch_size=batch_size, seed=seed)
    counts = ci.count.tolist()
    plots.map_grid(probe.minmax(ci.mean), [f"{k}: {100 * f:.2f}%" for k, f in enumerate(ci.frequency.tolist())],
                   suptitle=f"{name.upper()} ({ci.n:,} noise images)")
    print(name.upper(), "noise images per class:", counts)
    glue(f"{name}_count_1", int(counts[1]), display=False)
    glue(f"{name}_top_class", int(ci.count.argmax()), display=False)
    glue(f"{name}_top_frac", round(100 * float(ci.frequency.max()), 1), display=False)
    glue(f"{name}_empty", int((ci.count == 0).sum()), display=False)
glue("n_samples", f"{n_samples:,}", display=False)
