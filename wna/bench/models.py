"""The engine on real architectures: torchvision models, plain against the fast path.

    wna bench models [--n 4096] [--no-onnx] [--models resnet18,efficientnet_lite0] [--sizes 32,224]

For each model (untrained, 10 classes, built after ``torch.manual_seed(0)``,
left in train mode as torchvision builds it: the probe must run it in eval
mode without being told) and each noise size, one :class:`wna.Probe` per
variant (``fast="off"``, ``"auto"``, ``"onnx"``) times its setup (copying,
exporting and checking the model) and then a call of ``n`` stimuli, after a
warm-up call. Prints images/s, the fast path that ran, whether counts and sums
equal the plain model's, and the near-ties the plain model recomputed. A
benchmark: it prints, it never fails (an error is printed in its row).
"""

from __future__ import annotations

import time
import warnings

import torch

from .. import stimuli
from ..engine import Probe

MODELS = ("resnet18", "mobilenet_v3_small", "squeezenet1_1", "googlenet")


def build(name: str) -> torch.nn.Module:
    """An untrained torchvision model with 10 classes (seeded construction, train mode), or a
    pretrained backbone of :mod:`wna.backbones` (1,000 ImageNet classes) by its name there; the
    names of :data:`MODELS` are always the untrained ones (no download)."""
    import torchvision

    from .. import backbones
    if name in backbones.BACKBONES and name not in MODELS:  # squeezenet1_1, googlenet: untrained here
        return backbones.load(name)
    torch.manual_seed(0)
    if name == "googlenet":
        return torchvision.models.googlenet(num_classes=10, aux_logits=False, init_weights=True)
    return getattr(torchvision.models, name)(num_classes=10)


def _time(model, size: int, n: int, fast) -> dict:
    noise = stimuli.WhiteNoise((3, size, size))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        p = Probe(model, fast=fast, batch_size=min(n, 1024), progress=False)
        p.classification_images(noise, 2, seed=1)  # builds the engine: the setup
        setup = time.perf_counter() - t
        p.classification_images(noise, min(n, 512), seed=2)  # warm-up
        t = time.perf_counter()
        ci = p.classification_images(noise, n, seed=0)
        rate = n / (time.perf_counter() - t)
    warned = any("disagrees" in str(w.message) for w in caught)
    return {"setup_s": setup, "img_s": rate, "ci": ci, "warned": warned}


def bench_models(n: int = 4096, sizes=(32, 64), names=MODELS, onnx: bool = True) -> dict:
    """Time the probe on each torchvision model and size; print a table, return the figures."""
    variants = [("plain", "off"), ("fast", "auto")] + ([("onnx", "onnx")] if onnx else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n={n:,} stimuli per timed call")
    head = (f"{'model':19s} {'size':>4s} {'variant':7s} {'img/s':>7s} {'x plain':>7s} {'setup s':>7s} "
            f"{'fast_path':9s} {'same as plain':13s} {'rechecked':>9s}")
    print(head + "\n" + "-" * len(head))
    out = {}
    for name in names:
        for size in sizes:
            plain = None
            for v, fast in variants:
                try:
                    r = _time(build(name), size, n, fast)
                except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not fail
                    print(f"{name:19s} {size:4d} {v:7s} error: {type(exc).__name__}: {str(exc)[:80]}")
                    continue
                ci = r.pop("ci")
                plain = plain or (r, ci)
                same = torch.equal(ci.count, plain[1].count) and torch.equal(ci.sums, plain[1].sums)
                r.update(fast_path=ci.meta["fast_path"], same=same, rechecked=ci.meta["rechecked"],
                         ratio=r["img_s"] / plain[0]["img_s"])
                out[(name, size, v)] = r
                print(f"{name:19s} {size:4d} {v:7s} {r['img_s']:7,.0f} {r['ratio']:7.2f} {r['setup_s']:7.2f} "
                      f"{str(r['fast_path']):9s} {('yes' if same else 'NO'):13s} {r['rechecked']:9,d}"
                      + ("  (warned: disagrees)" if r["warned"] else ""), flush=True)
    return out
