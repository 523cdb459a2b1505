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
# # The speed of this build
#
# The paper's method needs millions of noise images per model, so how fast
# the probe pushes them through a network decides what a reader can rerun.
# This chapter runs the package's benchmarks (`wna bench probe` and
# `wna bench models`) at a small scale each time the book is built, on the
# machine that builds it. Its numbers measure that machine at that moment:
# they change from run to run and from machine to machine, and they stay
# out of the [reproduction report](../report.md). The paper prints no
# timings to compare. The [Performance](../performance.md) page keeps the
# latest full runs, with their commands and machine.

# %% tags=["parameters"]
n = 200_000  # noise images per timed probe call
n_ref = 50_000  # noise images through the reference loop
n_check = 20_000  # noise images for "same counts and sums as the plain model"
compile_ = True  # time fast="compile"
onnx = True  # time fast="onnx" (needs onnxruntime)
cnn_epochs = 10
n_train = None
model_n = 4096  # noise images per torchvision model and variant
model_names = ["resnet18", "mobilenet_v3_small", "squeezenet1_1", "googlenet"]
sizes = [32, 64]
profile = "paper"

# %%
import torch

from wna import bench, training, zoo

machine = training.environment(torch.get_num_threads())
cnn = zoo.load("mnist_cnn", epochs=cnn_epochs, n_train=n_train)

# %% [markdown]
# ## The probe on the paper's MNIST CNN
#
# The reference loop is written the way the authors' notebooks did it:
# batches of 10,000, a softmax inside the model, and per-batch
# confidence-weighted class means. The probe draws the same kind of noise
# in seeded batches through a fast copy of the model. Each fast path must
# give the plain fp32 model's counts and sums, and the run checks that.

# %%
res = bench.bench_probe(n=n, n_ref=n_ref, n_check=n_check, rss=False, compile_=compile_, onnx=onnx,
                        model=cnn)
probe_rows = bench.probe_table(res)
probe_rows.round(2)

# %% tags=["remove-cell"]
from myst_nb import glue

glue("perf_profile", profile, display=False)
glue("perf_cpu", machine["cpu"], display=False)
glue("perf_threads", int(machine["threads"]), display=False)
glue("perf_torch", machine["torch"], display=False)
glue("perf_n", f"{n:,}", display=False)
for row in probe_rows.index:  # keys from the table's rows
    glue(f"perf_{row}_img_s", f"{probe_rows.loc[row, 'images_per_s']:,.0f}", display=False)
    glue(f"perf_{row}_x", f"{probe_rows.loc[row, 'x_reference']:.2f}", display=False)
fastest = probe_rows["images_per_s"].idxmax()
glue("perf_fastest", probe_rows.loc[fastest, "what"], display=False)
glue("perf_fastest_x", f"{probe_rows.loc[fastest, 'x_reference']:.2f}", display=False)
same = res["identical_to_plain"]
glue("perf_identical", "every one" if all(same.values()) else
     "not all: " + ", ".join(k for k, v in same.items() if not v), display=False)

# %% [markdown]
# On this build's machine ({glue:text}`perf_cpu:s`, {glue:text}`perf_threads:d`
# torch threads, torch {glue:text}`perf_torch:s`, profile
# {glue:text}`perf_profile:s`), the reference loop ran
# {glue:text}`perf_reference_img_s:s` images/s and the default probe
# {glue:text}`perf_probe_none_img_s:s` images/s, {glue:text}`perf_probe_none_x:s`×
# the reference. The fastest was the {glue:text}`perf_fastest:s`
# ({glue:text}`perf_fastest_x:s`× the reference). Fast paths that gave the
# plain model's counts and sums: {glue:text}`perf_identical:s`.

# %% [markdown]
# ## Real architectures
#
# The probe on untrained torchvision models (10 classes) under white noise,
# each as the plain model, through the default fast path and through ONNX
# Runtime. `setup_s` is the time to build the fast copy, which a probe
# pays once per input shape. `same_as_plain` says whether the counts and
# sums equal the plain model's.

# %%
models_out = bench.bench_models(n=model_n, sizes=sizes, names=model_names, onnx=onnx)
bench.models_table(models_out).round(2)
