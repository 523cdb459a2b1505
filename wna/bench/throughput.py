"""Benchmarks of the probe (``wna bench probe``): they print figures, they never fail.

Compares, in one run on this machine:

* ``probe.classification_images`` on the paper's MNIST CNN with U[0,1] noise;
* a reference loop written the way the authors' notebooks did it (batches of
  10^4, a softmax inside the model, per-batch confidence-weighted class means
  averaged over batches);
* the FLOP rate both achieve, beside a same-run fp32 matmul's.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from .. import stimuli
from ..engine import Probe

__all__ = ["forward_flops", "matmul_gflops", "reference_probe", "probe_rate", "peak_rss", "bench_probe"]


def forward_flops(model: torch.nn.Module, shape) -> int:
    """FLOPs (2 per multiply-add) of one forward pass of one stimulus, counting conv and linear layers."""
    macs = 0

    def conv_hook(m, inp, out):
        nonlocal macs
        macs += out[0].numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)

    def lin_hook(m, inp, out):
        nonlocal macs
        macs += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(lin_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *shape))
    finally:
        for h in hooks:
            h.remove()
    return 2 * macs


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(n: int = 2048, reps: int = 5, device="cpu") -> float:
    """GFLOP/s of an fp32 ``n x n`` matmul on ``device`` now (TF32 off: true fp32)."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a @ b
        _sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return reps * 2 * n ** 3 / (time.perf_counter() - t) / 1e9


@torch.no_grad()
def reference_probe(model, n_samples: int, shape=(1, 28, 28), batch_size: int = 10_000, seed: int = 0,
                    device="cpu"):
    """The authors' loop, for comparison only (it carries their biases; do not use it for maps).

    Softmax inside the model, the global RNG, per-batch class means of the
    confidence-weighted noise (a class absent from a batch contributes 0),
    then the mean over batches.
    """
    torch.manual_seed(seed)
    model = model.to(device)

    def net(x):
        return F.softmax(model(x), dim=1)
    acc = None
    n_batches = math.ceil(n_samples / batch_size)
    for _ in range(n_batches):
        noise = torch.rand(batch_size, *shape, device=device)
        h = net(noise)
        conf, pred = h.max(1)
        weighted = noise * conf.view(-1, *([1] * len(shape)))
        if acc is None:
            acc = torch.zeros(h.shape[1], *shape, device=device)
        for k in range(h.shape[1]):
            sel = weighted[pred == k]
            if len(sel):
                acc[k] += sel.mean(0)
    return (acc / n_batches).cpu()  # on a GPU: waits for the work to finish


def probe_rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


REFERENCE_LABEL = "reference loop (authors'):"


def peak_rss(n_samples: int, epochs: int = 4, batch_size: int = 4096, fast="auto", trained: bool = True) -> float:
    """Peak resident memory (MiB) of a fresh process that probes the MNIST CNN with ``n_samples``.

    ``trained=False`` probes an untrained CNN (no training, no data needed).

    Read from ``VmHWM`` in ``/proc/self/status`` where there is one: the
    process's own peak. ``ru_maxrss`` (the fallback elsewhere) also counts
    the benchmark process that started it, whose memory a child inherits on
    Linux until it execs.
    """
    code = (
        "import resource, torch\n"
        "from wna import models, probe, stimuli, zoo\n"
        + (f"m = zoo.load('mnist_cnn', epochs={epochs}, progress=False)\n" if trained
           else "torch.manual_seed(0)\nm = models.MnistCNN().eval()\n") +
        f"probe.classification_images(m, stimuli.WhiteNoise((1, 28, 28)), {n_samples}, "
        f"batch_size={batch_size}, seed=0, progress=False, fast={fast!r})\n"
        "try:\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "    print(int(hwm.split()[1]))\n"
        "except (OSError, IndexError):\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def bench_probe(n: int = 200_000, n_ref: int = 50_000, epochs: int = 4, batch_size: int = 4096,
                rss: bool = True, rss_n=(100_000, 1_000_000), compile_: bool = True, onnx: bool = True,
                n_check: int = 20_000, device="cpu", out=None, model=None) -> dict:
    """Run the probe benchmark and print its table; return the figures.

    ``model``: a ``(B, 1, 28, 28) -> (B, C)`` model to time (default: the
    zoo's MNIST CNN trained ``epochs`` epochs, the paper's; the peak-RSS rows
    always use that one).

    ``device="cuda"``: the reference loop, the probe (stimuli drawn on the
    GPU) and the matmul run there; the compiled, ONNX and peak-RSS rows are
    CPU-only. The ONNX rows need onnxruntime (the ``onnx`` extra).
    """
    device = torch.device(device)
    on_cpu = device.type == "cpu"
    compile_ = compile_ and on_cpu
    onnx = onnx and on_cpu
    rss = rss and on_cpu
    if model is None:
        from .. import zoo
        model = zoo.load("mnist_cnn", epochs=epochs, progress=False)
    shape = (1, 28, 28)
    noise = stimuli.WhiteNoise(shape)
    flops = forward_flops(model, shape)
    res = {"threads": torch.get_num_threads(), "torch": torch.__version__, "flops_per_image": flops,
           "device": str(device) if on_cpu else f"{device} ({torch.cuda.get_device_name(device)})"}
    res["matmul_gflops"] = matmul_gflops(device=device)
    res["matmul_bound_img_s"] = res["matmul_gflops"] * 1e9 / flops
    reference_probe(model, 10_000, shape, device=device)  # warm-up (GPU kernels, caches)
    res["reference_img_s"] = probe_rate(lambda k: reference_probe(model, k, shape, device=device), n_ref)

    probes = {}

    def run(k, weighting="none", fast="auto"):  # one engine per fast path, built on first use
        if fast not in probes:
            probes[fast] = Probe(model, device=device, fast=fast, batch_size=batch_size, progress=False)
        return probes[fast].classification_images(noise, k, seed=0, weighting=weighting)

    run(2 * batch_size)  # warm-up

    rows = [("none", "none", "auto"), ("confidence", "confidence", "auto")]
    # the fast paths that take seconds to set up: timed with their setup (a new engine), then without
    slow_setup = [kind for kind, on in (("compile", compile_), ("onnx", onnx)) if on]
    for kind in slow_setup:
        t = time.perf_counter()
        Probe(model, device=device, fast=kind, progress=False).engine(shape)  # the setup alone
        res[f"{kind}_s"] = time.perf_counter() - t
        t = time.perf_counter()
        first = run(n, fast=kind)  # a new engine: its setup included
        if first.meta["fast_path"] == kind:
            res[f"probe_{kind}_img_s"] = n / (time.perf_counter() - t)
            rows.append((kind, "none", kind))
            rows.append((f"{kind}_steady", "none", kind))
    for name, w, fast in rows:
        if f"probe_{name}_img_s" not in res:
            res[f"probe_{name}_img_s"] = probe_rate(lambda k: run(k, w, fast), n)
    for name, _, _ in rows:
        res[f"ratio_{name}"] = res[f"probe_{name}_img_s"] / res["reference_img_s"]
    for k in ["reference"] + [f"probe_{name}" for name, _, _ in rows]:
        res[f"{k}_gflops"] = res[f"{k}_img_s"] * flops / 1e9
    # the fast paths must give the plain fp32 model's predictions: same counts, same sums
    plain = run(n_check, fast="off")
    res["identical_to_plain"] = {}
    for name, w, fast in rows:
        if w == "none" and not name.endswith("_steady"):
            r = run(n_check, fast=fast)
            res["identical_to_plain"][name] = bool(torch.equal(r.count, plain.count)
                                                  and torch.equal(r.sums, plain.sums))
    if rss:
        res["peak_rss_mib"] = {str(k): peak_rss(k, epochs, batch_size) for k in rss_n}
        if any(r[0] == "onnx" for r in rows):
            res["peak_rss_onnx_mib"] = {str(k): peak_rss(k, epochs, batch_size, "onnx") for k in rss_n}
    labels = {"none": "probe, weighting='none':", "confidence": "probe, weighting='confidence':",
              "compile": "probe, fast='compile':", "compile_steady": "  the same, less its compile time:",
              "onnx": "probe, fast='onnx':", "onnx_steady": "  the same, less its export time:"}
    lines = [
        f"machine: {res['device']}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        f"MNIST CNN forward: {flops / 1e6:.2f} MFLOP per image",
        f"{'fp32 matmul 2048^3:':34s} {res['matmul_gflops']:8.1f} GFLOP/s "
        f"(bound {res['matmul_bound_img_s']:,.0f} img/s)",
        f"{REFERENCE_LABEL:34s} {res['reference_img_s']:8,.0f} img/s  "
        f"{res['reference_gflops']:6.1f} GFLOP/s",
    ]
    order = ["none", "confidence", "compile", "compile_steady", "onnx", "onnx_steady"]
    for name, _, _ in sorted(rows, key=lambda r: order.index(r[0])):
        lines.append(f"{labels[name]:34s} {res[f'probe_{name}_img_s']:8,.0f} img/s  "
                     f"{res[f'probe_{name}_gflops']:6.1f} GFLOP/s  x{res[f'ratio_{name}']:.2f} reference")
    what = {"compile": "torch.compile", "onnx": "ONNX export and onnxruntime session"}
    for kind in slow_setup:
        lines.append(f"{what[kind]}, first call: {res[f'{kind}_s']:.1f} s"
                     + ("" if any(r[0] == kind for r in rows) else " (failed: not timed)"))
    lines.append(f"same counts and sums as the plain fp32 model ({n_check:,} images): " + ", ".join(
        f"{k} {'yes' if v else 'NO'}" for k, v in res["identical_to_plain"].items()))
    if rss:
        for key, what in (("peak_rss_mib", ""), ("peak_rss_onnx_mib", ", fast='onnx'")):
            if key in res:
                lines.append(f"peak RSS{what}: " + ", ".join(f"N={int(k):,}: {v:.0f} MiB"
                                                             for k, v in res[key].items()))
    print("\n".join(lines))
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=2)
    return res
