"""The ``wna`` command.

    wna run [NOTEBOOK ...] --profile {smoke,ci,paper} [-p NAME VALUE ...]
    wna list
    wna probe --model mnist_cnn --n-samples 1000000 --out maps.pt [--fast onnx]   (also under torchrun)
    wna bench probe | precision | models
    wna bench gabor --dataset mnist|fashion_mnist|cifar10 [--components N] [--images N]
"""

from __future__ import annotations

import argparse
import sys

import yaml

from . import run as runner

FAST = {"auto": "auto", "eager": "eager", "compile": "compile", "onnx": "onnx", "off": "off"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wna", description="White Noise Analysis of Neural Networks")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="execute notebooks into book/executed/")
    r.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    r.add_argument("--profile", default="ci", choices=runner.PROFILES)
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="override a parameter (VALUE parsed as YAML)")
    r.add_argument("--out", default=None, help="output folder (default book/executed)")
    r.add_argument("--no-progress", action="store_true")

    sub.add_parser("list", help="list the notebooks")

    pr = sub.add_parser("probe", help="classification images of a zoo model under U[0,1] noise; "
                        "under torchrun the ranks split the batches")
    pr.add_argument("--model", default="mnist_cnn", help="zoo model name")
    pr.add_argument("--epochs", type=int, default=None, help="training epochs of the zoo model")
    pr.add_argument("--n-train", type=int, default=None, help="train the zoo model on the first N images")
    pr.add_argument("--n-samples", type=int, default=1_000_000, help="number of noise images")
    pr.add_argument("--batch-size", type=int, default=4096)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--weighting", default="none", choices=["none", "confidence"])
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--fast", default="eager", choices=list(FAST),
                    help="CPU fast path: eager (channels-last chunks), compile (torch.compile, "
                         "seconds to compile), onnx (onnxruntime, seconds to export) or off (the plain "
                         "model); predictions are the plain model's")
    pr.add_argument("--out", default=None, help="save the result here (.pt)")
    pr.add_argument("--checkpoint", default=None,
                    help="keep the running sums here (every minute, at the end, on Ctrl-C); "
                         "the same command with the same file continues an interrupted run")
    pr.add_argument("--no-progress", action="store_true")

    b = sub.add_parser("bench", help="benchmarks (they print figures)")
    b.add_argument("what", choices=["probe", "precision", "models", "gabor"],
                   help="probe: the MNIST CNN against the authors' loop; precision: bf16/int8 against fp32; "
                        "models: torchvision architectures, plain against fast; gabor: the Appendix's "
                        "Gabor-PCA fit (variance kept, time, peak memory)")
    b.add_argument("--n", type=int, default=200_000, help="noise images for the probe timing")
    b.add_argument("--n-ref", type=int, default=50_000, help="noise images for the reference loop")
    b.add_argument("--epochs", type=int, default=4)
    b.add_argument("--no-rss", action="store_true", help="skip the peak-memory runs")
    b.add_argument("--no-compile", action="store_true", help="skip the torch.compile timing")
    b.add_argument("--no-onnx", action="store_true", help="skip the fast='onnx' timing")
    b.add_argument("--device", default="cpu", help="cpu, or cuda: the whole benchmark on the GPU")
    b.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist", "cifar10"],
                   help="gabor: the training images to fit")
    b.add_argument("--components", type=int, default=None,
                   help="gabor: PCA components per channel (default 250, CIFAR-10 600: the paper's)")
    b.add_argument("--images", type=int, default=None, help="gabor: fit the first N images (default all)")
    b.add_argument("--models", default=None,
                   help="models: comma-separated names: torchvision architectures (untrained) or "
                        "pretrained backbones of wna.backbones (e.g. efficientnet_lite0)")
    b.add_argument("--sizes", default=None, help="models: comma-separated noise sizes (default 32,64)")
    b.add_argument("--json", default=None, help="also write the figures here")
    return p


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM (a job scheduler's stop) into KeyboardInterrupt, so a checkpoint is saved."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _probe(args) -> int:
    import os
    import time

    import torch
    import torch.distributed as dist

    from . import probe, stimuli, zoo

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if args.device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(args.device)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if args.checkpoint:
        _interrupt_on_sigterm()
    try:
        config = {k: v for k, v in (("epochs", args.epochs), ("n_train", args.n_train)) if v is not None}
        model = zoo.load(args.model, progress=rank == 0 and not args.no_progress, **config)
        t = time.perf_counter()
        ci = probe.classification_images(model, stimuli.WhiteNoise((1, 28, 28)), args.n_samples,
                                         batch_size=args.batch_size, seed=args.seed, device=args.device,
                                         weighting=args.weighting, fast=FAST[args.fast],
                                         checkpoint=args.checkpoint,
                                         progress=rank == 0 and not args.no_progress)
        wall = time.perf_counter() - t
        if rank == 0 and ci.meta["resumed_batches"]:
            print(f"resumed {ci.meta['resumed_batches']:,} batches from {args.checkpoint}")
        if rank == 0:
            print(f"{ci.n:,} stimuli in {wall:.1f} s ({ci.n / wall:,.0f} img/s) on {world} process(es), "
                  f"fast path {ci.meta['fast_path'] or 'off'}; {ci.meta['rechecked']:,} near-ties recomputed by the plain model")
            print("count per class:", ci.count.tolist())
            if args.out:
                ci.save(args.out)
                print("saved", args.out)
    except KeyboardInterrupt:
        if rank == 0:
            print("wna: interrupted" + (f"; the batches done are in {args.checkpoint}: run the same command "
                                        "to continue" if args.checkpoint else ""), file=sys.stderr)
        return 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "list":
            for nb in runner.find_notebooks():
                print(nb.stem)
            return 0
        if args.cmd == "probe":
            return _probe(args)
        if args.cmd == "bench":
            from . import bench
            if args.what == "precision":
                bench.bench_precision(n=min(args.n, 20_000), epochs=args.epochs)
            elif args.what == "gabor":
                bench.bench_gabor(args.dataset, args.components, args.images, progress=True, out=args.json)
            elif args.what == "models":
                opts = {}
                if args.models:
                    opts["names"] = tuple(args.models.split(","))
                if args.sizes:
                    opts["sizes"] = tuple(int(v) for v in args.sizes.split(","))
                bench.bench_models(n=min(args.n, 8192), onnx=not args.no_onnx, **opts)
            else:
                bench.bench_probe(n=args.n, n_ref=args.n_ref, epochs=args.epochs, rss=not args.no_rss,
                                  compile_=not args.no_compile, onnx=not args.no_onnx, device=args.device,
                                  out=args.json)
            return 0
        if args.cmd == "run":
            overrides = {k: yaml.safe_load(v) for k, v in args.parameter}
            outs = runner.run_notebooks(args.notebooks, args.profile, overrides, args.out,
                                        progress=not args.no_progress)
            for o in outs:
                print(o)
            return 0
    except (runner.NotebookFailed, FileNotFoundError, ValueError) as exc:
        print(f"wna: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
