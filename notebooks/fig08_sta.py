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
# # Figure 8: spike-triggered averages
#
# This notebook reproduces **Figure 8** of Borji & Lin (2020), Section 3.3,
# and its supplement **Figure 22**. A unit of a network is treated like a
# neuron: white-noise images (each pixel drawn from U[0, 1]) go through the
# network, and the spike-triggered average (STA) of a unit is the mean
# stimulus weighted by the unit's response. The paper shows the STAs of the
# first two conv layers of the MNIST CNN (receptive fields 5×5 and 14×14) and
# of four layers of a CIFAR-10 CNN whose conv layers use tanh ("as using ReLU
# activation resulted in some dead filters"; receptive fields 3×3, 5×5,
# 14×14 and 32×32), and says that, compared with the learned first-layer
# kernels (Fig. 22), "the two are exactly the same". Here that comparison is
# a number: the cosine between each STA and its kernel.

# %% tags=["parameters"]
n_samples = 1_000_000  # white-noise images per layer (the paper's count)
n_stc = 200_000  # noise images for the spike-triggered covariance (STC)
stc_units = None  # conv2 channels whose STC is computed (None: the 4 most active)
batch_size = 4096
seed = 0  # seed of the noise
cnn_epochs = 10
cifar_epochs = 30
cifar_width = 1.0  # channel multiplier of the CIFAR-10 CNN (1.0: the paper's Fig. 11)
train_seed = 1  # the authors' seed
n_train = None  # first n training images (None: all)
profile = "paper"  # the profile that set these parameters (filled in by `wna run`)

# %%
import torch

from wna import Probe, plots, sta, stimuli, zoo
from wna.templates import cosines

plots.setup()

# %% tags=["remove-cell"]
from myst_nb import glue

glue("profile", profile, display=False)
glue("n_samples", f"{n_samples:,}", display=False)
glue("n_stc", f"{n_stc:,}", display=False)
glue("cnn_epochs", cnn_epochs, display=False)
glue("cifar_epochs", cifar_epochs, display=False)
glue("cifar_width", float(cifar_width), display=False)

# %% [markdown]
# ## MNIST CNN: conv1 (Fig. 8 left, Fig. 22)
#
# The MNIST CNN of Section 3.1. For every channel of `conv1`, the unit at the
# centre of the feature map; its response is the post-ReLU activation, as in
# the authors' code. The STA is normalised by the number of stimuli (the
# authors' code) and centred: under U[0, 1] noise the raw STA is dominated by
# the noise mean (0.5 everywhere), so the response times the mean stimulus is
# subtracted; what remains is the covariance of the response with each pixel.
# It is cropped to the unit's receptive field, which is read from the model.

# %%
cnn = zoo.load("mnist_cnn", epochs=cnn_epochs, seed=train_seed, n_train=n_train)
noise = stimuli.WhiteNoise((1, 28, 28))
with Probe(cnn, batch_size=batch_size) as p:
    conv1 = sta.spike_triggered_average(p, "conv1", noise, n_samples, seed=seed,
                                        nonlinearity=torch.relu, normalize="count")
sta1 = conv1.crop(conv1.centred())  # (20, 1, 5, 5)
kernels1 = cnn.conv1.weight.detach()
cos1 = cosines(sta1, kernels1)

# %% tags=["hide-input"]
print(f"CNN test accuracy: {100 * cnn.test_accuracy:.2f}% ({cnn_epochs} epochs)")
print(f"conv1: unit {conv1.position}, receptive field {conv1.receptive_field.size}, "
      f"{conv1.n:,} noise images")
print(f"STA-kernel cosine: mean {cos1.mean():.4f}, min {cos1.min():.4f}")

# %% [markdown]
# Top: the learned `conv1` kernels (Fig. 22). Bottom: the STAs computed from
# noise alone (Fig. 8), each min-max normalised; the title gives the cosine
# between the STA and the kernel above it.

# %%
plots.map_grid(kernels1, [f"kernel {c}" for c in range(len(kernels1))], ncols=10,
               size=1.0, suptitle="conv1 kernels (Fig. 22)");
plots.map_grid(sta1, [f"STA {c}\ncos {v:.3f}" for c, v in enumerate(cos1.tolist())], ncols=10,
               size=1.0, suptitle=f"conv1 STAs ({conv1.n:,} noise images)");

# %% [markdown]
# ## MNIST CNN: conv2 (Fig. 8 left)
#
# The same for the 50 channels of `conv2`, whose units see 14×14 pixels. No
# single kernel to compare with here: a `conv2` unit combines the 20 `conv1`
# maps through two ReLUs and a max pooling. A channel whose unit never
# responded to the noise (its ReLU stayed at 0) has no STA and is drawn blank.

# %%
with Probe(cnn, batch_size=batch_size) as p:
    conv2 = sta.spike_triggered_average(p, "conv2", noise, n_samples, seed=seed,
                                        nonlinearity=torch.relu, normalize="count")
sta2 = conv2.crop(conv2.centred())  # (50, 1, 14, 14)
silent2 = int((conv2.r == 0).sum())  # channels that never responded
if stc_units is None:
    stc_units = conv2.r.argsort(descending=True)[:4].tolist()

# %%
titles2 = [f"STA {c}" + (" (silent)" if r == 0 else "") for c, r in enumerate(conv2.r.tolist())]
plots.map_grid(sta2, titles2, ncols=10, size=1.0,
               suptitle=f"conv2 STAs, receptive field {conv2.receptive_field.size}");

# %% [markdown]
# ## What the STA misses: the spike-triggered covariance
#
# A `conv2` unit is not linear-nonlinear, so its STA need not be its only
# filter. The paper leaves the STC (its Eq. 4) to future work; here the
# leading eigenvectors of the STC minus the prior covariance, over the 14×14
# patch, of a few `conv2` units, beside their STA. Each eigenvalue is judged
# against the spectra of 19 shuffles of the responses (a 5% permutation test).

# %%
with Probe(cnn, batch_size=batch_size) as p:
    cov2 = sta.spike_triggered_average(p, "conv2", noise, n_stc, seed=seed + 1,
                                       nonlinearity=torch.relu, channels=stc_units, stc=True)
eig = cov2.stc()
significant = eig.significant.sum(1)  # eigenvalues beyond every null, per unit

# %% tags=["hide-input"]
for c, k, v in zip(stc_units, significant.tolist(), eig.values[:, :4].tolist()):
    print(f"conv2 unit {c}: {k} significant eigenvalues; leading " +
          ", ".join(f"{x:+.4f}" for x in v))

# %% [markdown]
# One row per unit: its STA (same noise as the STC), then its three leading
# STC eigenvectors with their eigenvalues (* beyond every shuffled null).
# A negative eigenvalue is a direction along which the stimuli that drive the
# unit vary less than the noise does; the rectification puts one along the
# STA itself. Further significant directions are filters the STA misses.

# %%
rows, titles = [], []
for i, c in enumerate(stc_units):
    rows.append(cov2.crop(cov2.centred())[i])
    titles.append(f"unit {c}: STA")
    for k in range(3):
        rows.append(eig.vectors[i, k])
        star = "*" if bool(eig.significant[i, k]) else ""
        titles.append(f"STC {k + 1}: {eig.values[i, k]:+.3g}{star}")
plots.map_grid(torch.stack(rows), titles, ncols=4, size=1.4,
               suptitle=f"conv2 STA and STC ({cov2.n:,} noise images)");

# %% [markdown]
# ## CIFAR-10 CNN with tanh (Fig. 8 right)
#
# The CIFAR-10 CNN of the paper's Fig. 11 with tanh in place of ReLU (scaled
# by `cifar_width`), trained like the ReLU model of Fig. 3. The four layers
# whose receptive fields are the paper's 3×3, 5×5, 14×14 and 32×32: the
# first conv after its batch norm and tanh (`conv1.2`), and the output of
# each of the three blocks (`conv1`, `conv2`, `conv3`). The tanh is a module,
# so no `nonlinearity` is needed. A unit's window is cut where it reaches
# past the image.

# %%
tanh_cnn = zoo.load("cifar_cnn", activation="tanh", width=cifar_width, epochs=cifar_epochs,
                    seed=train_seed, n_train=n_train)
rgb = stimuli.WhiteNoise((3, 32, 32))
layers = ["conv1.2", "conv1", "conv2", "conv3"]
cifar = {}
with Probe(tanh_cnn, batch_size=batch_size) as p:
    for layer in layers:
        cifar[layer] = sta.spike_triggered_average(p, layer, rgb, n_samples, seed=seed,
                                                   normalize="count")

# %% tags=["hide-input"]
print(f"tanh CNN: width {cifar_width:g}, {cifar_epochs} epochs, "
      f"test accuracy {100 * tanh_cnn.test_accuracy:.2f}%")
for layer, res in cifar.items():
    print(f"{layer:8} unit {res.position}, receptive field {res.receptive_field.size}, "
          f"window {res.patch_shape[1:]}, {len(res.r)} channels")

# %% [markdown]
# The first layer beside its kernels (Fig. 22). After the batch norm, a
# channel's unit is its kernel scaled by `γ / σ`, so the kernel is compared
# with its sign flipped where `γ < 0`.

# %%
bn = tanh_cnn.conv1[1]
kernels_c = tanh_cnn.conv1[0].weight.detach() * bn.weight.detach().sign()[:, None, None, None]
sta_c = cifar["conv1.2"].crop(cifar["conv1.2"].centred())
cos_c = cosines(sta_c, kernels_c)
print(f"STA-kernel cosine: mean {cos_c.mean():.4f}, min {cos_c.min():.4f}")

# %%
plots.map_grid(kernels_c, [f"kernel {c}" for c in range(len(kernels_c))], ncols=8, size=1.0,
               suptitle="tanh CNN first-layer kernels (Fig. 22)");
plots.map_grid(sta_c, [f"STA {c}\ncos {v:.3f}" for c, v in enumerate(cos_c.tolist())], ncols=8,
               size=1.0, suptitle="conv1.2 STAs");

# %% [markdown]
# The STAs of the deeper layers (Fig. 8 right; up to 16 channels each), each
# patch min-max normalised over its three colour channels.

# %%
for layer in layers[1:]:
    res = cifar[layer]
    maps = res.crop(res.centred())[:16]
    plots.map_grid(maps, [f"{layer} {c}" for c in range(len(maps))], ncols=8, size=1.0,
                   suptitle=f"{layer}: receptive field {res.receptive_field.size}");

# %% tags=["remove-cell"]
glue("cnn_acc", round(100 * float(cnn.test_accuracy), 2), display=False)
glue("conv1_cos_mean", round(float(cos1.mean()), 4), display=False)
glue("conv1_cos_min", round(float(cos1.min()), 4), display=False)
glue("conv1_channels", len(cos1), display=False)
glue("conv2_silent", silent2, display=False)
glue("stc_units", len(stc_units), display=False)
glue("stc_significant", int(significant.sum()), display=False)
glue("stc_units_with_more", int((significant > 1).sum()), display=False)
glue("cifar_acc", round(100 * float(tanh_cnn.test_accuracy), 2), display=False)
glue("cifar_cos_mean", round(float(cos_c.mean()), 4), display=False)
glue("cifar_cos_min", round(float(cos_c.min()), 4), display=False)
glue("cifar_channels", len(cos_c), display=False)
