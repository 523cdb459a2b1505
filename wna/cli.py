"""The ``wna`` command.

    wna run [NOTEBOOK ...] --profile {smoke,ci,paper} [-p NAME VALUE ...]
    wna list
    wna probe --model mnist_cnn --n-samples 1000000 --out maps.pt [--fast onnx]   (also under torchrun)
    wna bench probe | precision | models
    wna bench gabor --dataset mnist|fashion_mnist|cifar10 [--components N] [--images N]

Arguments are checked before anything is trained or run; a bad one ends with
``wna: error: ...`` (or argparse's own message) and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from . import run as runner

FAST = {"auto": "auto", "eager": "eager", "compile": "compile", "onnx": "onnx", "off": "off"}

RUN_HELP = """Execute notebooks into book/executed/.

Every parameter, from the profile (notebooks/profiles/PROFILE.yml) or from
-p NAME VALUE, is checked before anything runs, against the default in the
notebook's cell tagged 'parameters':

  default None     any value
  int              an integer (1e6 or 1000000.0 taken as 1000000)
  float            an integer or a number
  bool             true or false
  str              a string
  list             a list; its items checked against the default's items
                   when those are all of one kind ([[1, 3]] for [[1, 7], [5, 6]])
  dict             a mapping whose keys are among the default's, each
                   value checked against the default's value for that key

VALUE is read as YAML (1000, 0.5, true, "[1, 2]", "{mnist: 2000}", null). An
override goes to every named notebook that has that parameter; a name none of
them has is refused, as is 'profile' (use --profile)."""


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (``1e6`` and ``1_000_000`` accepted)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = float("nan")
            if not f.is_integer():
                raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
            value = int(f)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wna", description="White Noise Analysis of Neural Networks")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="execute notebooks into book/executed/", description=RUN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    r.add_argument("--profile", default="ci", choices=runner.PROFILES)
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="override a parameter (VALUE parsed as YAML; checked against the notebook's "
                        "default, see above)")
    r.add_argument("--out", default=None, help="output folder (default book/executed)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("-j", "--jobs", type=_int_at_least(1), default=1,
                   help="notebooks run side by side, each kernel on cores/JOBS torch threads "
                        "(same numbers; the timing chapter runs alone after them); default 1")

    sub.add_parser("list", help="list the notebooks")

    pr = sub.add_parser("probe", help="classification images of a zoo model under U[0,1] noise; "
                        "under torchrun the ranks split the batches")
    pr.add_argument("--model", default="mnist_cnn", help="zoo model name")
    pr.add_argument("--epochs", type=_int_at_least(1), default=None, help="training epochs of the zoo model")
    pr.add_argument("--n-train", type=_int_at_least(1), default=None,
                    help="train the zoo model on the first N images")
    pr.add_argument("--n-samples", type=_int_at_least(1), default=1_000_000, help="number of noise images")
    pr.add_argument("--batch-size", type=_int_at_least(1), default=4096)
    pr.add_argument("--seed", type=_int_at_least(0), default=0)
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


class _Refused(Exception):
    """A bad argument found before any work: ``wna: error: ...``, exit code 2."""


# The noise shape of each data set a zoo classifier is trained on.
_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def _probe_setup(args):
    """Check every ``wna probe`` argument before anything trains; the stimulus shape.

    Raises :class:`_Refused` for an unknown or generative model, options the
    recipe refuses, a device that is not here, or ``--out`` / ``--checkpoint``
    paths that cannot be written.
    """
    from . import zoo

    if args.model not in zoo.RECIPES:
        raise _Refused(f"unknown model {args.model!r}; known: {', '.join(sorted(zoo.RECIPES))}")
    recipe = zoo.RECIPES[args.model]
    if recipe.arch in zoo.GENERATIVE:
        raise _Refused(f"{args.model} is a generative model (an autoencoder), not a classifier to probe")
    config = {k: v for k, v in (("epochs", args.epochs), ("n_train", args.n_train)) if v is not None}
    try:
        zoo.recipe(args.model, **config)
    except ValueError as exc:
        raise _Refused(str(exc)) from None
    _check_device(args.device)
    for flag, path in (("--out", args.out), ("--checkpoint", args.checkpoint)):
        if path is not None:
            _check_writable(flag, path)
    if args.out and args.checkpoint and Path(args.out).resolve() == Path(args.checkpoint).resolve():
        raise _Refused("--out and --checkpoint name the same file; give them different paths")
    return config, _SHAPES[zoo.base_dataset(recipe.dataset)]


def _check_device(name: str) -> None:
    from ._checks import check_device

    try:
        check_device(name)
    except ValueError as exc:
        raise _Refused(f"--device: {exc}") from None


def _check_writable(flag: str, path: str) -> None:
    from ._checks import check_writable

    try:
        check_writable(path, flag)
    except (ValueError, IsADirectoryError) as exc:
        raise _Refused(str(exc)) from None


def _save_or_fall_back(ci, out: str) -> int:
    """Save the result to ``out``; where that fails, to a fallback file (named on stderr), exit 1."""
    import tempfile
    import time

    try:
        ci.save(out)
    except OSError as exc:
        name = f"wna-probe-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.pt"
        for folder in (Path.cwd(), Path(tempfile.gettempdir())):
            try:
                ci.save(folder / name)
            except OSError:
                continue
            print(f"wna: could not write {out} ({exc}); the result is saved in {folder / name} instead",
                  file=sys.stderr)
            return 1
        print(f"wna: could not write {out} ({exc}), nor a fallback copy in the current folder or "
              f"{tempfile.gettempdir()}; the result is lost", file=sys.stderr)
        return 1
    print("saved", out)
    return 0


def _probe(args) -> int:
    import time

    import torch
    import torch.distributed as dist

    from . import probe, stimuli, zoo

    config, shape = _probe_setup(args)  # before any process group, training or batch
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
        model = zoo.load(args.model, progress=rank == 0 and not args.no_progress, **config)
        t = time.perf_counter()
        ci = probe.classification_images(model, stimuli.WhiteNoise(shape), args.n_samples,
                                         batch_size=args.batch_size, seed=args.seed, device=args.device,
                                         weighting=args.weighting, fast=FAST[args.fast],
                                         checkpoint=args.checkpoint,
                                         progress=rank == 0 and not args.no_progress)
        wall = time.perf_counter() - t
        if rank == 0 and ci.meta["resumed_batches"]:
            print(f"resumed {ci.meta['resumed_batches']:,} batches from {args.checkpoint}")
        if rank == 0:
            print(f"{ci.n:,} stimuli in {wall:.1f} s ({(ci.n - ci.meta['resumed_stimuli']) / wall:,.0f} img/s) on {world} process(es), "
                  f"fast path {ci.meta['fast_path'] or 'off'}; {ci.meta['rechecked']:,} near-ties recomputed by the plain model")
            print("count per class:", ci.count.tolist())
            if args.out and _save_or_fall_back(ci, args.out):
                return 1
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
            overrides = {}
            for name, text in args.parameter:
                try:
                    overrides[name] = yaml.safe_load(text)
                except yaml.YAMLError as exc:
                    raise _Refused(f"-p {name} {text!r}: not a YAML value ({exc})") from None
            outs = runner.run_notebooks(args.notebooks, args.profile, overrides, args.out,
                                        progress=not args.no_progress, jobs=args.jobs)
            for o in outs:
                print(o)
            return 0
    except (_Refused, runner.ParameterError) as exc:
        print(f"wna: error: {exc}", file=sys.stderr)
        return 2
    except (runner.NotebookFailed, FileNotFoundError, ValueError) as exc:
        print(f"wna: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
