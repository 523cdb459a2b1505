"""The full Gabor-PCA fits of the paper's Appendix: variance kept, time, memory.

    wna bench gabor --dataset mnist|fashion_mnist|cifar10 [--components N] [--images N]

Fits :class:`wna.stimuli.GaborPCANoise` on a data set's training images
(all of them by default; 250 components for MNIST and Fashion-MNIST, 600 per
channel for CIFAR-10, the paper's), then prints and returns the images,
wavelets, components, the variance kept per channel (the paper: 96.1% on
MNIST, 97.57/97.51/97.52% on CIFAR-10), the fit's seconds and peak resident
memory, the sampling rate and the held-out reconstruction error. A
benchmark: it prints, it never fails.

Peak memory is the process's resident high-water mark (``VmHWM``) during the
fit, the training images included: the mark is reset (``/proc/self/clear_refs``)
after the data are loaded, so the loader's own peak does not count. Where that
reset is impossible, it is ``ru_maxrss`` of the whole process (say so in the
``rss_kind`` field). By default the fit runs in a fresh subprocess.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess as sp
import sys
import time

import torch

COMPONENTS = {"mnist": 250, "fashion_mnist": 250, "cifar10": 600}


def _rss_mib(field: str) -> float | None:
    try:
        line = next(ln for ln in open("/proc/self/status") if ln.startswith(field + ":"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _load(dataset: str, train: bool):
    from .. import data

    if dataset not in COMPONENTS:
        raise ValueError(f"dataset must be one of {sorted(COMPONENTS)}, got {dataset!r}")
    return getattr(data, dataset)(train=train)[0]


def bench_gabor(dataset: str = "mnist", n_components: int | None = None, n_images: int | None = None, *,
                n_samples: int = 100_000, n_test: int = 10_000, subprocess: bool = True,
                progress: bool = True, out=None) -> dict:
    """Fit, time and print (see the module); ``subprocess=False`` fits in this process."""
    n_components = n_components or COMPONENTS.get(dataset, 250)
    if subprocess:
        code = ("import json\nfrom wna.bench.gabor import bench_gabor\n"
                f"r = bench_gabor({dataset!r}, {n_components}, {n_images!r}, n_samples={n_samples}, "
                f"n_test={n_test}, subprocess=False, progress={progress!r})\n"
                "print('WNA_JSON ' + json.dumps(r))\n")
        run = sp.run([sys.executable, "-c", code], stdout=sp.PIPE, text=True, check=True)
        res = json.loads(run.stdout.rsplit("WNA_JSON ", 1)[1])
        print(run.stdout.rsplit("WNA_JSON ", 1)[0], end="")
    else:
        res = _fit_here(dataset, n_components, n_images, n_samples, n_test, progress)
        _print(res)
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
    return res


def _fit_here(dataset, n_components, n_images, n_samples, n_test, progress) -> dict:
    from ..stimuli import GaborPCANoise

    x = _load(dataset, True)
    if n_images:
        x = x[:n_images].clone()
    gc.collect()
    rss_before = _rss_mib("VmRSS")
    reset = _reset_peak()
    load0 = os.getloadavg()[0]
    noise = GaborPCANoise(n_components).fit(x, progress=progress)
    peak = _rss_mib("VmHWM") if reset else None
    kind = "VmHWM during the fit (data included)"
    if peak is None:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss of the process"
    res = {"dataset": dataset, "images": int(x.shape[0]), "shape": list(noise.shape),
           "wavelets": noise.n_wavelets, "components": n_components,
           "variance_kept": list(noise.variance_kept_), "fit_s": noise.fit_seconds_,
           "peak_rss_mib": peak, "rss_before_fit_mib": rss_before, "rss_kind": kind,
           "load_avg_at_start": load0, "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "repr": repr(noise)}
    del x
    gen, batch = torch.Generator().manual_seed(0), 10_000
    noise.sample(100, gen)  # warm-up
    t = time.perf_counter()
    for i in range(0, n_samples, batch):
        noise.sample(min(batch, n_samples - i), gen)
    res["samples"], res["sample_img_s"] = n_samples, n_samples / (time.perf_counter() - t)
    test = _load(dataset, False)[:n_test]
    err = {}
    for name, tp in (("ridge", False), ("through_pca", True)):
        rec = noise.reconstruct(test, through_pca=tp)
        err[name] = float((rec - test).norm() / test.norm())
    res["test_images"], res["test_rel_l2"] = int(test.shape[0]), err
    return res


def _print(r: dict) -> None:
    kept = " / ".join(f"{100 * v:.2f}%" for v in r["variance_kept"])
    print(f"Gabor-PCA noise on {r['dataset']}: {r['images']:,} images {tuple(r['shape'])}, "
          f"{r['wavelets']:,} wavelets per channel, {r['components']} components per channel")
    print(f"  variance kept per channel: {kept}")
    print(f"  fit: {r['fit_s']:.1f} s on {r['threads']} threads ({r['cpus']} CPUs, load average "
          f"{r['load_avg_at_start']:.1f}); peak RSS {r['peak_rss_mib']:,.0f} MiB ({r['rss_kind']}; "
          f"{r['rss_before_fit_mib']:,.0f} MiB before the fit)")
    print(f"  sampling: {r['sample_img_s']:,.0f} img/s ({r['samples']:,} images, batches of 10,000)")
    e = r["test_rel_l2"]
    print(f"  held-out reconstruction ({r['test_images']:,} test images), relative L2 error: "
          f"ridge {e['ridge']:.4f}, through the PCA {e['through_pca']:.4f}")
