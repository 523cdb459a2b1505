"""Reduced precision on the probe's workload: how many predictions change, and is it faster?

    WNA_DATA=../shared/data .venv/bin/python benchmarks/reduced_precision.py [--n 20000]

Compares, on the paper's MNIST CNN (ci profile, 4 epochs) under U[0,1] noise,
the plain fp32 model with (a) bfloat16 autocast and (b) int8 static
quantization (FX graph mode, fbgemm, calibrated on 20 noise batches), each run
as the probe runs (chunks of 256 rows, one thread per core). Prints images/s
and the number of predictions that differ from fp32. A benchmark: it prints,
it never fails.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

from wna import probe, zoo

CHUNK = probe.FAST_CHUNK


def rate(fn, x, workers):
    """Images/s of ``fn`` over ``x`` split between ``workers`` threads (best of 3)."""
    parts = x.chunk(workers)

    def job(p):
        with torch.inference_mode():
            return torch.cat([fn(p[i:i + CHUNK]) for i in range(0, len(p), CHUNK)])

    best = 0.0
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(3):
            t = time.perf_counter()
            out = torch.cat(list(pool.map(job, parts)))
            best = max(best, len(x) / (time.perf_counter() - t))
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args(argv)
    workers = torch.get_num_threads()
    model = zoo.load("mnist_cnn", epochs=4, progress=False).eval()
    x = torch.rand(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(1)  # one per worker thread, as the probe runs
    try:
        _compare(model, x, workers, args.n)
    finally:
        torch.set_num_threads(workers)


def _compare(model, x, workers, n):
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    base, ref = rate(lambda c: cl(c.contiguous(memory_format=torch.channels_last)), x, workers)
    top = ref.topk(2, 1).values
    print(f"fp32 (channels-last, {workers} threads): {base:8,.0f} img/s; logits on noise: median max|logit| "
          f"{ref.abs().amax(1).median():.2f}, median top-2 margin {(top[:, 0] - top[:, 1]).median():.3f}")

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
        r, out = rate(fn, x, workers)
        changed = int((out.argmax(1) != ref.argmax(1)).sum())
        print(f"{name:26s} {r:8,.0f} img/s ({r / base:.2f}x fp32); predictions changed: {changed:,} of "
              f"{n:,} ({100 * changed / n:.2f}%); max |logit error| {(out - ref).abs().max():.3f}")


if __name__ == "__main__":
    main()
