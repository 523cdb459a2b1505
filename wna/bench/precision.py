"""Reduced precision on the probe's workload: how many predictions change, and is it faster?

    wna bench precision [--n 20000]

Compares, on the paper's MNIST CNN (ci profile, 4 epochs; or any model given
to :func:`bench_precision`) under U[0,1] noise, the plain fp32 model with (a)
bfloat16 autocast and (b) int8 static quantization (FX graph mode, fbgemm,
calibrated on 20 noise batches). Each variant runs through the real engine
(:class:`wna.Probe`, ``fast="off"``: whole batches; the fp32 model also on
its default fast path), so the rates are the probe's. Prints images/s and the
number of predictions that differ from fp32 on the same stimuli. A benchmark:
it prints, it never fails.
"""

from __future__ import annotations

import copy
import time
import warnings

import torch

from .. import stimuli
from ..engine import Probe

CHUNK = 256


def rate(model, n: int, fast="off") -> float:
    """Images/s of the engine probing ``model`` with ``n`` U[0,1] stimuli (after a warm-up)."""
    noise = stimuli.WhiteNoise((1, 28, 28))
    p = Probe(model, fast=fast, batch_size=1024, progress=False)
    p.classification_images(noise, 1024, seed=1)  # builds the fast copy, warms the caches
    t = time.perf_counter()
    p.classification_images(noise, n, seed=0)
    return n / (time.perf_counter() - t)


def bench_precision(n: int = 20_000, model=None, epochs: int = 4) -> dict:
    """Run the comparison and print it; ``model`` defaults to the zoo's MNIST CNN (``epochs``)."""
    if model is None:
        from .. import zoo
        model = zoo.load("mnist_cnn", epochs=epochs, progress=False)
    model = model.eval()
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return _compare(model, x, n)


def _compare(model, x, n):
    with torch.inference_mode():
        ref = torch.cat([model(x[i:i + CHUNK]) for i in range(0, n, CHUNK)])
    base, eager = rate(model, n), rate(model, n, "auto")
    top = ref.topk(2, 1).values
    res = {"fp32_img_s": base, "fp32_fast_img_s": eager}
    print(f"fp32, plain model: {base:8,.0f} img/s; default fast path {eager:,.0f} img/s; logits on noise: "
          f"median max|logit| {ref.abs().amax(1).median():.2f}, median top-2 margin "
          f"{(top[:, 0] - top[:, 1]).median():.3f}")
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def bf16(c):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return cl(c.contiguous(memory_format=torch.channels_last)).float()

    variants = [("bfloat16 autocast", bf16)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
            torch.backends.quantized.engine = "fbgemm"
            g = torch.Generator().manual_seed(1)
            qm = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("fbgemm"),
                            (torch.rand(CHUNK, 1, 28, 28, generator=g),))
            with torch.inference_mode():
                for _ in range(20):
                    qm(torch.rand(CHUNK, 1, 28, 28, generator=g))
            variants.append(("int8 (FX static, fbgemm)", convert_fx(qm)))
    except Exception as exc:  # noqa: BLE001 - report, do not fail
        print(f"int8: not available ({type(exc).__name__}: {exc})")
    for name, fn in variants:
        r = rate(fn, n)
        with torch.inference_mode():
            out = torch.cat([fn(x[i:i + CHUNK]) for i in range(0, n, CHUNK)])
        changed = int((out.argmax(1) != ref.argmax(1)).sum())
        res[name] = {"img_s": r, "changed": changed}
        print(f"{name:26s} {r:8,.0f} img/s ({r / base:.2f}x fp32 plain); predictions changed: {changed:,} of "
              f"{n:,} ({100 * changed / n:.2f}%); max |logit error| {(out - ref).abs().max():.3f}")
    return res
