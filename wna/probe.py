"""Classification images: the mean stimulus per predicted class.

The probe streams seeded batches of stimuli through a model, assigns each
stimulus to the class the model predicts (argmax of the logits; for a single
output column, class 1 when the logit is > 0) and accumulates, per class, the
float64 sum of the stimuli and their count. Memory does not grow with the
number of stimuli.

Batch ``i`` draws from its own generator seeded from ``(seed, i)``, so any
split of the batches between shards or processes merges into exactly the
result of one process (counts equal, means equal up to float64 rounding).

On the CPU the batches run in parallel, one Python thread per core, and their
sums are added in batch order (the result does not depend on the number of
threads); a ``checkpoint`` file keeps the running sums, so an interrupted run
continues where it stopped (see :func:`classification_images`).

Unlike the authors' code, a class that receives no stimulus has a NaN mean
(not 0), and class means are ratios of global sums and counts (not averages
of per-batch means, which bias classes that are rare in a batch).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from .models import binary_logit, decide
from .templates import assigned_classes, class_means, minmax, template_accuracy  # noqa: F401 (re-exported)

__all__ = [
    "ClassificationImages",
    "classification_images",
    "batch_generator",
    "predict",
    "template_accuracy",
    "minmax",
    "class_means",
    "assigned_classes",
    "StimulusResponseCells",
    "stimulus_response_cells",
]

WEIGHTINGS = ("none", "confidence")


def _save_atomic(obj, path) -> None:
    """``torch.save`` to ``path`` through a temporary file: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


@dataclass
class ClassificationImages:
    """Sums and counts of stimuli per predicted class.

    ``sums``: float64 ``(C, *shape)``; ``count``: int64 ``(C,)``; ``n``: total
    stimuli seen; ``weighting``: ``"none"`` or ``"confidence"`` (each stimulus
    multiplied by its max softmax probability before summing, the authors'
    variant; the mean is still divided by the count).
    """

    sums: torch.Tensor
    count: torch.Tensor
    n: int
    weighting: str = "none"
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.count.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.sums.shape[1:])

    @property
    def mean(self) -> torch.Tensor:
        """Mean stimulus per class, float64 ``(C, *shape)``; NaN where count == 0."""
        c = self.count.to(torch.float64).reshape(-1, *([1] * len(self.shape)))
        m = self.sums / c
        m[self.count == 0] = float("nan")
        return m

    @property
    def frequency(self) -> torch.Tensor:
        """Fraction of stimuli assigned to each class."""
        return self.count.to(torch.float64) / max(self.n, 1)

    def merge(self, other: "ClassificationImages") -> "ClassificationImages":
        """Combine the results of two disjoint shards (exact: sums and counts add)."""
        if not isinstance(other, ClassificationImages):
            raise TypeError(f"cannot merge with {type(other).__name__}")
        if self.sums.shape != other.sums.shape:
            raise ValueError(f"cannot merge maps of shape {tuple(self.sums.shape)} "
                             f"and {tuple(other.sums.shape)}")
        if self.weighting != other.weighting:
            raise ValueError(f"cannot merge weighting {self.weighting!r} with {other.weighting!r}")
        meta = dict(self.meta)
        meta["batches"] = sorted(set(self.meta.get("batches", [])) | set(other.meta.get("batches", [])))
        return ClassificationImages(self.sums + other.sums, self.count + other.count,
                                    self.n + other.n, self.weighting, meta)

    def save(self, path) -> None:
        """Save to ``path`` (written atomically)."""
        _save_atomic({"sums": self.sums, "count": self.count, "n": self.n,
                      "weighting": self.weighting, "meta": self.meta, "format": 1}, path)

    @classmethod
    def load(cls, path) -> "ClassificationImages":
        d = torch.load(Path(path), map_location="cpu", weights_only=False)
        return cls(d["sums"], d["count"], int(d["n"]), d["weighting"], d.get("meta", {}))

    def __repr__(self) -> str:
        return (f"ClassificationImages(n={self.n}, classes={self.num_classes}, shape={self.shape}, "
                f"weighting={self.weighting!r}, count={self.count.tolist()})")


def batch_generator(seed: int, index: int, device="cpu") -> torch.Generator:
    """The generator of batch ``index`` under ``seed``: independent streams per (seed, index)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return g


def _confidence(logits: torch.Tensor) -> torch.Tensor:
    logits = binary_logit(logits)
    if logits.ndim == 1:  # binary observer: probability of the chosen class
        p = torch.sigmoid(logits.double())
        return torch.maximum(p, 1 - p)
    return torch.softmax(logits.double(), dim=1).amax(1)


NONFINITE = "the model returned non-finite outputs (NaN or inf)"


def _check_output(out, batch: int, shape, finite: bool = True) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the model must return a tensor of logits, got {type(out).__name__}"
                         " (read inner activations with wna.models.record instead of returning tuples)")
    if out.ndim not in (1, 2) or out.shape[0] != batch:
        raise ValueError(f"model output must be (B,), (B, 1) or (B, C) for a batch of B={batch} "
                         f"stimuli of shape {tuple(shape)}; got {tuple(out.shape)}")
    if out.ndim == 2 and out.shape[1] < 1:
        raise ValueError("model output has no class column")
    if finite and not torch.isfinite(out).all():
        raise ValueError(NONFINITE)
    return out


def predict(model: Callable, x: torch.Tensor, shape=None, finite: bool = True) -> torch.Tensor:
    """Model outputs for a batch, with clear errors for bad shapes or outputs.

    ``finite=False`` leaves out the check for NaN or inf (it waits for a GPU).
    """
    try:
        out = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"the model rejected stimuli of shape {tuple(x.shape[1:])} "
                         f"(batch {tuple(x.shape)}): {exc}") from exc
    return _check_output(out, x.shape[0], x.shape[1:] if shape is None else shape, finite)


@contextlib.contextmanager
def _eval_mode(model):
    was = getattr(model, "training", None)
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        yield
    finally:
        if isinstance(model, torch.nn.Module) and was:
            model.train(was)


def _dist():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


FAST_CHUNK = 256  # rows per forward pass on the fast CPU path (fits the caches)
TIE_TOLERANCE = 1e-4  # relative top-2 margin below which the plain model decides
COMPILE_FREEZING = True  # fast="compile": weights frozen into the compiled graph
FAST_PATHS = (True, False, "compile", "onnx")


class _OnnxModel:
    """``model`` exported to ONNX (batch size free) and run by onnxruntime's CPU kernels.

    Each call runs on the calling thread (one onnxruntime thread per session
    run, the GIL released meanwhile), so the probe's worker threads run
    chunks side by side on one session. Takes and returns float32 tensors.
    """

    def __init__(self, model: torch.nn.Module, example: torch.Tensor):
        import warnings
        import onnxruntime as ort
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"the exported model has {len(inputs)} inputs and {len(outputs)} outputs, not 1 and 1")
        self.input = inputs[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise TypeError(f"the ONNX fast path takes float32 CPU tensors, got {x.dtype} on {x.device}")
        try:
            out = self.session.run(None, {self.input: x.contiguous().numpy()})[0]
        except Exception as exc:  # onnxruntime's own exception types
            raise RuntimeError(f"onnxruntime: {exc}") from exc
        return torch.from_numpy(out)


class _Engine:
    """Runs the batches of a probe: fast where that is safe, in parallel, in a fixed order.

    **Forward.** On the CPU, a model with 2-D convolutions runs as a
    channels-last copy in chunks of :data:`FAST_CHUNK` rows (cache-sized;
    single-threaded oneDNN kernels on small convolutions beat one call
    driving all cores). Its logits differ from the plain model's only by float
    rounding (about 1e-6 relative), so every row whose top-2 margin is below
    :data:`TIE_TOLERANCE` x (1 + max |logit|) is recomputed with the plain
    model: the predictions equal the plain fp32 model's. :meth:`forward`
    returns the logits and how many rows were rechecked. ``fast="compile"``
    runs a ``torch.compile``-d copy of it instead (frozen weights, every chunk
    padded to one size); ``fast="onnx"`` runs the model exported to ONNX on
    onnxruntime's CPU kernels (:class:`_OnnxModel`), the chunks in the
    ordinary layout. Any of these is first compared with the plain model on
    a test chunk and dropped if it disagrees; the near-tie recheck applies to
    all of them. Other models, devices or ``fast=False`` run the plain model
    on the whole batch.

    **Parallel batches.** On the CPU with ``fast``, :meth:`map` runs whole
    batches (drawing the stimuli, the forward pass, the per-batch float64
    sums) on one Python thread per core, each with single-threaded torch
    kernels, and yields the per-batch results in batch order, so that the
    caller adds them in the same order whatever the number of threads: the
    result is bitwise the same. With fewer than two batches per thread, the
    batches run one after the other and each batch's chunks are spread over
    the threads instead. On a GPU everything runs on the calling thread,
    asynchronously, with no copy to the host inside the loop.

    While :meth:`map` runs worker threads, torch runs one intra-op thread
    per worker; the caller's thread count is restored afterwards.
    """

    def __init__(self, model, device, fast, shape=None):
        if fast not in FAST_PATHS:
            raise ValueError(f"fast must be True, False, 'compile' or 'onnx', got {fast!r}")
        self.model = model
        self.fast_model = None
        self.kind = None  # the fast path that runs: "eager", "compile", "onnx" or None (the plain model)
        self.workers = 1
        self._pool = None
        self._lazy = device.type != "cpu"  # check for NaN/inf without waiting for the device
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=device) if self._lazy else None
        if (fast and isinstance(model, torch.nn.Module) and device.type == "cpu"
                and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())):
            import copy
            self.fast_model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
            self.kind = "eager"
            if shape is not None:
                self._check_fast(shape, "eager" if fast is True else fast)
        if fast and device.type == "cpu":
            self.workers = max(1, torch.get_num_threads())

    @property
    def compiled(self) -> bool:
        return self.kind == "compile"

    @contextlib.contextmanager
    def _threads(self):
        """A pool of one Python thread per worker, torch single-threaded meanwhile."""
        from concurrent.futures import ThreadPoolExecutor
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="wna-probe")
        try:
            yield self._pool
        finally:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
            torch.set_num_threads(threads)

    def _check_fast(self, shape, kind: str) -> None:
        """Compile or export if asked, then keep the fast model only if it agrees with the plain one on a test chunk.

        Runs as the workers will (one torch thread, inference mode, the chunk
        shape and layout): dynamo guards on all of these, and a compiled
        model would otherwise be recompiled, without frozen weights.
        """
        import warnings
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            x = torch.rand((FAST_CHUNK, *shape), generator=torch.Generator().manual_seed(0))
            try:
                with torch.inference_mode():
                    want = self.model(x)
            except Exception:  # noqa: BLE001 - the plain model will give the clear error
                self.fast_model, self.kind = None, None
                return
            if kind == "onnx":
                try:
                    self.fast_model, self.kind = _OnnxModel(self.model, x), "onnx"
                except Exception as exc:  # noqa: BLE001 - no onnxruntime, an unexportable model, ...
                    warnings.warn(f"the ONNX export or onnxruntime failed ({type(exc).__name__}: "
                                  f"{str(exc)[:200]}); the probe uses the eager fast path",
                                  RuntimeWarning, stacklevel=4)
            with torch.inference_mode():
                if kind == "compile":
                    try:
                        import torch._inductor.config as inductor_config
                        fn = torch.compile(self.fast_model, dynamic=False)
                        with inductor_config.patch(freezing=COMPILE_FREEZING):  # read when compiling, not options=
                            fn(x.contiguous(memory_format=torch.channels_last))  # compiles now, here
                        self.fast_model, self.kind = fn, "compile"
                    except Exception as exc:  # noqa: BLE001 - no compiler, unsupported model, ...
                        warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                                      "the probe uses the eager fast path", RuntimeWarning, stacklevel=4)
                try:
                    got = self._chunks(x)  # as the probe will call it
                    ok = (isinstance(got, torch.Tensor) and got.shape == want.shape
                          and bool(((got - want).abs() <= 1e-3 * (1 + want.abs().amax())).all()))
                except Exception:  # noqa: BLE001
                    ok = False
        finally:
            torch.set_num_threads(threads)
        if not ok:
            warnings.warn("the fast path disagrees with the plain model; the probe runs the plain model",
                          RuntimeWarning, stacklevel=4)
            self.fast_model, self.kind = None, None

    def _chunks(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # inference mode is per thread
            outs = []
            layout = torch.contiguous_format if self.kind == "onnx" else torch.channels_last
            for i in range(0, len(x), FAST_CHUNK):
                c = x[i:i + FAST_CHUNK].contiguous(memory_format=layout)
                if self.compiled and len(c) < FAST_CHUNK:  # one chunk size: no recompilation
                    pad = c.new_zeros((FAST_CHUNK - len(c), *c.shape[1:]))
                    c = torch.cat([c, pad]).contiguous(memory_format=torch.channels_last)
                    outs.append(self.fast_model(c)[:len(x) - i])
                else:
                    outs.append(self.fast_model(c))
            return torch.cat(outs)

    def forward(self, x: torch.Tensor, shape, split: bool = False) -> tuple[torch.Tensor, int]:
        """Logits of a batch and the number of rows recomputed by the plain model.

        ``split``: spread the chunks over the worker threads (only from the
        calling thread, never from inside :meth:`map`'s workers).
        """
        if self._lazy:
            out = predict(self.model, x, shape, finite=False)
            self._nonfinite |= ~torch.isfinite(out).all()
            return out, 0
        if self.fast_model is None or x.ndim != 4:
            return predict(self.model, x, shape), 0
        try:
            if not split or self._pool is None or len(x) <= FAST_CHUNK:
                out = self._chunks(x)
            else:  # contiguous parts of whole chunks: the same chunks as unsplit
                per = -(-len(x) // (self.workers * FAST_CHUNK)) * FAST_CHUNK
                out = torch.cat(list(self._pool.map(self._chunks, x.split(per))))
        except (RuntimeError, ValueError, TypeError, IndexError):
            return predict(self.model, x, shape), 0  # the plain model gives the clear error
        out = _check_output(out, len(x), shape)
        close = _near_ties(out)
        n = int(close.sum())
        if n:
            idx = close.nonzero()[:, 0]
            out[idx] = predict(self.model, x[idx], shape).to(out.dtype)
        return out, n

    def check(self) -> None:
        """Raise if any output so far was NaN or inf (on a GPU this waits for the device)."""
        if self._lazy and bool(self._nonfinite):
            raise ValueError(NONFINITE)

    def map(self, work: Callable, batches) -> Iterator:
        """``work(i, split)`` for each batch ``i``, results yielded in batch order.

        ``work`` runs under ``torch.inference_mode`` and passes ``split`` on to
        :meth:`forward`.
        """
        def run(i, split=False):
            with torch.inference_mode():
                return work(i, split)

        batches = list(batches)
        if self._lazy:  # a GPU: one thread, no waiting inside the loop
            for k, i in enumerate(batches, 1):
                yield run(i, False)
                if k % 64 == 0:
                    self.check()
            self.check()
        elif self.workers > 1 and len(batches) >= 2 * self.workers:
            with self._threads() as pool:
                yield from _in_order(pool, run, batches, ahead=self.workers + 1)
        elif self.workers > 1 and self.fast_model is not None:
            with self._threads():
                for i in batches:
                    yield run(i, True)
        else:
            for i in batches:
                yield run(i, False)


def _in_order(pool, fn, items, ahead: int) -> Iterator:
    """``fn(item)`` for each item on ``pool``, at most ``ahead`` in flight, results in order."""
    from collections import deque
    it = iter(items)
    pending = deque(pool.submit(fn, i) for _, i in zip(range(ahead), it))  # range first: zip drops no item
    try:
        while pending:
            result = pending.popleft().result()
            for i in it:
                pending.append(pool.submit(fn, i))
                break
            yield result
    finally:
        for f in pending:
            f.cancel()


def _near_ties(logits: torch.Tensor) -> torch.Tensor:
    """Rows whose decision could flip under float rounding of the logits."""
    logits = binary_logit(logits)
    if logits.ndim == 1:
        margin, scale = logits.abs(), logits.abs()
    elif logits.shape[1] < 2:
        return torch.zeros(len(logits), dtype=torch.bool, device=logits.device)
    else:
        top = logits.topk(2, dim=1).values
        margin, scale = top[:, 0] - top[:, 1], logits.abs().amax(1)
    return margin <= TIE_TOLERANCE * (1 + scale)


def _plan(n_samples, batch_size, shard):
    """Check the sizes; the batches this process handles (shard or torch.distributed rank)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    n_samples, batch_size = int(n_samples), int(batch_size)
    n_batches = math.ceil(n_samples / batch_size)
    rank, world = _dist()
    distributed = world > 1
    if shard is not None:
        if distributed:
            raise ValueError("pass either shard=... or run under torch.distributed, not both")
        k, K = shard
        if not (0 <= k < K):
            raise ValueError(f"shard must be (k, K) with 0 <= k < K, got {shard}")
        rank, world = int(k), int(K)
    return n_samples, batch_size, n_batches, range(rank, n_batches, world), distributed


SUM_ROWS = 1024  # rows converted to float64 at a time: bounded memory for large stimuli


def _class_sums(x: torch.Tensor, labels: torch.Tensor, C: int, weights: torch.Tensor | None = None,
                squares: bool = False):
    """Float64 sums of the rows of ``x`` per label, ``(C, D)``, each row times ``weights[row]`` if given.

    The rows are converted to float64 :data:`SUM_ROWS` at a time. With
    ``squares``, also returns the float64 sum of the squared rows ``(D,)``.
    """
    out = torch.zeros((C, x.shape[1]), dtype=torch.float64, device=x.device)
    sq = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device) if squares else None
    for i in range(0, len(x), SUM_ROWS):
        xs = x[i:i + SUM_ROWS].to(torch.float64)
        if squares:
            sq += (xs * xs).sum(0)
        if weights is not None:
            xs.mul_(weights[i:i + SUM_ROWS, None])
        out.index_add_(0, labels[i:i + SUM_ROWS], xs)
    return (out, sq) if squares else out


def _class_counts(labels: torch.Tensor, C: int) -> torch.Tensor:
    """How many labels equal each of 0..C-1 (int64; unlike bincount, no wait on a GPU)."""
    return torch.zeros(C, dtype=torch.int64, device=labels.device).index_add_(0, labels, torch.ones_like(labels))


def _digest(name: str, named_tensors) -> str:
    """A SHA-256 of a name and of ``(name, tensor)`` pairs, their values included."""
    import hashlib
    h = hashlib.sha256(name.encode())
    for k, v in named_tensors:
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _fingerprint(model) -> str:
    """A hash of a model's class and parameters (to tell checkpoints of different models apart)."""
    return _digest(type(model).__qualname__,
                   model.state_dict().items() if isinstance(model, torch.nn.Module) else ())


class _Checkpoint:
    """Atomic saves of a probe's running sums every ``every`` seconds, at the end and on
    interruption; :meth:`load` returns the saved state of the same run (``key``), or None.

    Under ``torch.distributed`` each rank keeps its own file (``<stem>.rank<r>-of-<w><suffix>``).
    """

    def __init__(self, path, key: dict, every: float):
        path = Path(path)
        rank, world = _dist()
        if world > 1:
            path = path.with_name(f"{path.stem}.rank{rank}-of-{world}{path.suffix}")
        self.path, self.key, self.every = path, key, float(every)
        self._last = time.monotonic()

    def load(self):
        if not self.path.exists():
            return None
        d = torch.load(self.path, map_location="cpu", weights_only=False)
        if not isinstance(d, dict) or d.get("key") != self.key:
            theirs = d.get("key") if isinstance(d, dict) else None
            diff = sorted(k for k in set(self.key) | set(theirs or {})
                          if (theirs or {}).get(k) != self.key.get(k))
            raise ValueError(f"checkpoint {self.path} was written by another run (differs in {diff}); "
                             "delete it or choose another checkpoint path")
        return d["state"]

    def save(self, state, force: bool = False) -> None:
        if not force and time.monotonic() - self._last < self.every:
            return
        total, done, seen, rechecked = state
        total = None if total is None else [t.cpu() for t in total]
        _save_atomic({"format": 1, "key": self.key, "state": (total, done, seen, rechecked)}, self.path)
        self._last = time.monotonic()


def _stream(engine: _Engine, work: Callable, mine: range, n_samples: int, batch_size: int, desc: str,
            unit: str, progress: bool, checkpoint: _Checkpoint | None = None, device="cpu"):
    """Run ``work`` over this process's batches; add up their parts in batch order.

    ``work(i, split)`` returns ``(parts, b, rechecked)``: a tuple of tensors
    (per-batch sums), the batch size and the rows the plain model recomputed.
    With a ``checkpoint``, the batches it holds are skipped and the running
    sums are saved as it asks: adding the rest in the same order gives
    bitwise the result of an uninterrupted run.
    Returns ``(parts summed, or None without batches, stimuli seen, rechecked, batches resumed)``.
    """
    state = (None, 0, 0, 0)  # running sums, batches done, stimuli seen, rechecked
    if checkpoint is not None:
        state = checkpoint.load() or state
        if state[0] is not None:
            state = ([t.to(device) for t in state[0]], *state[1:])
    resumed = state[1]
    with tqdm(total=sum(min(batch_size, n_samples - i * batch_size) for i in mine), initial=state[2],
              unit=unit, unit_scale=True, desc=desc, disable=not progress, dynamic_ncols=True,
              leave=False) as bar, contextlib.closing(engine.map(work, mine[resumed:])) as results:
        try:
            for parts, b, r in results:
                total, done, seen, rechecked = state
                total = ([p.clone() for p in parts] if total is None
                         else [t + p for t, p in zip(total, parts)])
                state = (total, done + 1, seen + b, rechecked + r)  # one assignment: consistent if interrupted
                bar.update(b)
                if checkpoint is not None:
                    checkpoint.save(state)
        except BaseException:
            if checkpoint is not None and state[1] > resumed:
                checkpoint.save(state, force=True)
            raise
    if checkpoint is not None:
        checkpoint.save(state, force=True)
    total, _, seen, rechecked = state
    return total, seen, rechecked, resumed


def _all_reduce(tensors, *counters: int) -> list[int]:
    """Sum ``tensors`` (in place) and the integer ``counters`` over the ranks; the summed counters."""
    import torch.distributed as dist
    total = torch.tensor(counters, dtype=torch.int64, device=tensors[0].device)
    for t in (*tensors, total):
        dist.all_reduce(t)
    return [int(v) for v in total.tolist()]


def classification_images(model: Callable, stimulus, n_samples: int, batch_size: int = 4096,
                          seed: int = 0, device="cpu", weighting: str = "none",
                          progress: bool = True, num_classes: int | None = None,
                          shard: tuple[int, int] | None = None, fast: bool | str = True,
                          checkpoint=None, checkpoint_every: float = 60.0) -> ClassificationImages:
    """Classification images of ``model`` under ``stimulus`` (Fig. 2 of the paper).

    Parameters
    ----------
    model: maps a batch ``(B, *stimulus.shape)`` to logits ``(B, C)``; a single
        output ``(B,)`` or ``(B, 1)`` is a binary observer (class 1 when > 0).
        A :class:`torch.nn.Module` is moved to ``device`` and run in eval mode
        (its training flag is restored afterwards).
    stimulus: a generator with ``.shape`` and ``.sample(n, generator)``, e.g.
        :class:`wna.stimuli.WhiteNoise`.
    n_samples: number of stimuli, >= 1; batch ``i`` holds stimuli
        ``[i * batch_size, (i + 1) * batch_size)``.
    seed: batch ``i`` draws from :func:`batch_generator` ``(seed, i)``.
    weighting: ``"none"`` (mean stimulus per predicted class) or
        ``"confidence"`` (each stimulus weighted by its max softmax probability,
        the authors' variant).
    num_classes: read from the first batch unless given.
    shard: ``(k, K)`` processes only the batches ``i`` with ``i % K == k``; the
        K shard results :meth:`~ClassificationImages.merge` into the full one.
        Under an initialised ``torch.distributed`` process group the batches
        are split between the ranks the same way, sums and counts are
        all-reduced and every rank returns the full result.
    fast: on the CPU, run a convolutional model channels-last in cache-sized
        chunks on one thread per core; the predictions stay those of the plain
        fp32 model, because near-ties are recomputed with it; whole batches
        run in parallel, one per core, and are added in batch order, so the
        result does not depend on the number of threads (see :class:`_Engine`).
        ``meta["rechecked"]`` counts the recomputed stimuli; ``fast=False``
        runs the plain model on whole batches, one after the other.
        ``fast="compile"`` runs a ``torch.compile``-d copy instead (weights
        frozen; needs a C++ compiler; 7-25 s to compile on 2 CPU cores, less
        when cached, then 10-20% faster there: worth it for long runs).
        ``fast="onnx"`` exports the model to ONNX and runs it with
        onnxruntime (needs the ``onnx`` extra: ``onnxruntime``, ``onnx``,
        ``onnxscript``; 2-6 s to export, then 15-30% faster than the eager
        fast path on the paper's CNN here: the fastest for long runs). Both
        fall back to the eager fast path with a warning if compiling or
        exporting fails. Every fast variant is first checked against the
        plain model on a test chunk and dropped if it disagrees;
        ``meta["fast_path"]`` says which one ran.
    checkpoint: a file path: the running sums are saved there (atomically)
        every ``checkpoint_every`` seconds, when the run ends and when it is
        interrupted (Ctrl-C, an error). Calling again with the same arguments
        and path skips the batches it holds, and the result is bitwise that of
        an uninterrupted run; a file from a different run (model, seed, sizes,
        stimulus, ...) raises ``ValueError``. Under ``torch.distributed`` each
        rank keeps its own file. ``meta["resumed_batches"]`` counts the batches
        taken from the file.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not hasattr(stimulus, "sample") or not hasattr(stimulus, "shape"):
        raise ValueError("stimulus must have .shape and .sample(n, generator)")
    shape = tuple(stimulus.shape)
    device = torch.device(device)
    n_samples, batch_size, n_batches, mine, distributed = _plan(n_samples, batch_size, shard)

    if isinstance(model, torch.nn.Module):
        model.to(device)
    engine = _Engine(model, device, fast, shape)
    D = math.prod(shape)

    def work(i, split):
        b = min(batch_size, n_samples - i * batch_size)
        x = stimulus.sample(b, batch_generator(seed, i, device))
        logits, rechecked = engine.forward(x, shape, split)
        pred, c = decide(logits)
        if num_classes is not None and c != num_classes:
            raise ValueError(f"num_classes={num_classes} but the model outputs {c} classes")
        weights = _confidence(logits).to(device) if weighting == "confidence" else None
        return (_class_sums(x.reshape(b, D), pred, c, weights), _class_counts(pred, c)), b, rechecked

    with _eval_mode(model):
        if num_classes is None and len(mine) == 0:
            # This rank has no batch: read the class count from one stimulus.
            with torch.inference_mode():
                probe_x = stimulus.sample(1, batch_generator(seed, 0, device))
                _, num_classes = decide(predict(model, probe_x, shape))
        ckpt = None if checkpoint is None else _Checkpoint(checkpoint, {
            "probe": "classification_images", "model": _fingerprint(model), "stimulus": repr(stimulus),
            "seed": int(seed), "batch_size": batch_size, "n_samples": n_samples, "weighting": weighting,
            "num_classes": num_classes, "batches": (mine.start, mine.stop, mine.step)}, checkpoint_every)
        parts, seen, rechecked, resumed = _stream(engine, work, mine, n_samples, batch_size, "probe", "img",
                                                  progress, ckpt, device)
    if parts is None:
        parts = (torch.zeros((num_classes, D), dtype=torch.float64, device=device),
                 torch.zeros(num_classes, dtype=torch.int64, device=device))
    sums, count = parts[0].reshape(-1, *shape), parts[1]

    if distributed:
        seen, rechecked, resumed = _all_reduce((sums, count), seen, rechecked, resumed)
    meta = {"seed": int(seed), "batch_size": batch_size, "n_samples": n_samples,
            "stimulus": repr(stimulus), "batches": list(mine) if not distributed else list(range(n_batches)),
            "fast": engine.fast_model is not None, "fast_path": engine.kind, "compiled": engine.compiled,
            "rechecked": rechecked, "resumed_batches": resumed}
    return ClassificationImages(sums.cpu(), count.cpu(), seen, weighting, meta)


# --------------------------------------------------------------------------
# Binary observers: the four stimulus-response cells, Eq. 1 and Eq. 2
# --------------------------------------------------------------------------


@dataclass
class StimulusResponseCells:
    """Sums over the four (signal, response) cells of a binary experiment (Fig. 1).

    Trial ``t = gamma * s + (1 - gamma) * n`` (Eq. 3): a signal ``s`` of class
    0 or 1 and a noise image ``n``. ``noise_sums[s, r]`` and ``stimulus_sums[s, r]``
    are float64 sums of ``n`` and of ``t`` over the trials with signal class
    ``s`` and response ``r``; ``count[s, r]`` their number. ``noise_sq`` is
    the per-pixel sum of ``n**2`` over all trials (for Eq. 2).
    """

    noise_sums: torch.Tensor
    stimulus_sums: torch.Tensor
    count: torch.Tensor
    noise_sq: torch.Tensor
    n: int
    gamma: float
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.noise_sums.shape[2:])

    def _cell_mean(self, sums: torch.Tensor) -> torch.Tensor:
        c = self.count.to(torch.float64).reshape(2, 2, *([1] * len(self.shape)))
        m = sums / c
        m[self.count == 0] = float("nan")
        return m

    @property
    def noise_means(self) -> torch.Tensor:
        """Mean noise per cell ``(2, 2, *shape)``: the paper's n̄_sr (NaN for an empty cell)."""
        return self._cell_mean(self.noise_sums)

    @property
    def stimulus_means(self) -> torch.Tensor:
        """Mean stimulus ``t`` per cell ``(2, 2, *shape)`` (Fig. 1's first four columns)."""
        return self._cell_mean(self.stimulus_sums)

    @property
    def classification_image(self) -> torch.Tensor:
        """Eq. 1 on the noise alone: ``(n̄_01 + n̄_11) - (n̄_00 + n̄_10)`` (Fig. 1's "*" column)."""
        m = self.noise_means
        return (m[0, 1] + m[1, 1]) - (m[0, 0] + m[1, 0])

    def _response_mean(self, sums: torch.Tensor, r: int) -> torch.Tensor:
        c = int(self.count[:, r].sum())
        return sums[:, r].sum(0) / c if c else torch.full(self.shape, float("nan"), dtype=torch.float64)

    @property
    def response_difference(self) -> torch.Tensor:
        """The simplified map n̄_·1 - n̄_·0 on the noise, whatever the signal."""
        return self._response_mean(self.noise_sums, 1) - self._response_mean(self.noise_sums, 0)

    @property
    def stimulus_difference(self) -> torch.Tensor:
        """Mean stimulus answered 1 minus mean stimulus answered 0 (Fig. 1's fifth column)."""
        return self._response_mean(self.stimulus_sums, 1) - self._response_mean(self.stimulus_sums, 0)

    @property
    def correlation(self) -> torch.Tensor:
        """Eq. 2: the per-pixel Pearson correlation between the noise and the response (1 or 0)."""
        n = float(self.n)
        p1 = float(self.count[:, 1].sum()) / n
        mean_n = self.noise_sums.sum((0, 1)) / n
        mean_nr = self.noise_sums[:, 1].sum(0) / n
        var_n = (self.noise_sq / n - mean_n ** 2).clamp_min(0)
        sd_r = math.sqrt(p1 * (1 - p1))
        return (mean_nr - mean_n * p1) / (var_n.sqrt() * sd_r)

    @property
    def accuracy(self) -> float:
        """Fraction of trials whose response equals the signal class."""
        return float(self.count[0, 0] + self.count[1, 1]) / max(self.n, 1)

    def merge(self, other: "StimulusResponseCells") -> "StimulusResponseCells":
        if self.noise_sums.shape != other.noise_sums.shape or self.gamma != other.gamma:
            raise ValueError("can only merge results of the same shape and gamma")
        return StimulusResponseCells(self.noise_sums + other.noise_sums,
                                     self.stimulus_sums + other.stimulus_sums,
                                     self.count + other.count, self.noise_sq + other.noise_sq,
                                     self.n + other.n, self.gamma, dict(self.meta))

    def save(self, path) -> None:
        _save_atomic({k: getattr(self, k) for k in
                      ("noise_sums", "stimulus_sums", "count", "noise_sq", "n", "gamma", "meta")}, path)

    @classmethod
    def load(cls, path) -> "StimulusResponseCells":
        return cls(**torch.load(Path(path), map_location="cpu", weights_only=False))


def stimulus_response_cells(model: Callable, signals: torch.Tensor, signal_classes: torch.Tensor,
                            noise, gamma: float, n_samples: int, batch_size: int = 4096,
                            seed: int = 0, device="cpu", progress: bool = True,
                            shard: tuple[int, int] | None = None, fast: bool | str = True,
                            checkpoint=None, checkpoint_every: float = 60.0) -> StimulusResponseCells:
    """A binary classification-image experiment (Eqs. 1-3, Fig. 1).

    Each trial draws a signal uniformly from ``signals`` (its class, 0 or 1,
    from ``signal_classes``) and a noise image from ``noise``, shows the
    observer ``t = gamma * s + (1 - gamma) * n`` and records its response
    (class 1 when its single logit is > 0, or the argmax of two logits).
    Seeding, sharding and ``torch.distributed`` work as in
    :func:`classification_images`: batch ``i`` draws signals and noise from
    :func:`batch_generator` ``(seed, i)``; so do ``fast`` and ``checkpoint``.
    """
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    shape = tuple(noise.shape)
    device = torch.device(device)
    signals = torch.as_tensor(signals, dtype=torch.float32).to(device)
    signal_classes = torch.as_tensor(signal_classes).long().to(device)
    if tuple(signals.shape[1:]) != shape:
        raise ValueError(f"signals have shape {tuple(signals.shape[1:])}, the noise {shape}")
    if signal_classes.shape != (len(signals),) or len(signals) == 0:
        raise ValueError("need one class (0 or 1) per signal, and at least one signal")
    if not bool(((signal_classes == 0) | (signal_classes == 1)).all()):
        raise ValueError("signal classes must be 0 or 1")
    n_samples, batch_size, n_batches, mine, distributed = _plan(n_samples, batch_size, shard)
    gamma = float(gamma)
    if isinstance(model, torch.nn.Module):
        model.to(device)
    engine = _Engine(model, device, fast, shape)
    D = math.prod(shape)

    def work(i, split):
        b = min(batch_size, n_samples - i * batch_size)
        g = batch_generator(seed, i, device)
        idx = torch.randint(len(signals), (b,), generator=g, device=device)
        n = noise.sample(b, g)
        t = gamma * signals[idx] + (1.0 - gamma) * n
        logits, rechecked = engine.forward(t, shape, split)
        resp, c = decide(logits)
        if c != 2:
            raise ValueError(f"a binary observer needs one logit or two classes, got {c}")
        cell = signal_classes[idx] * 2 + resp  # 0..3 = (s, r) row-major
        noise_sums, noise_sq = _class_sums(n.reshape(b, D), cell, 4, squares=True)
        parts = (noise_sums, _class_sums(t.reshape(b, D), cell, 4), _class_counts(cell, 4), noise_sq)
        return parts, b, rechecked

    with _eval_mode(model):
        ckpt = None if checkpoint is None else _Checkpoint(checkpoint, {
            "probe": "stimulus_response_cells", "model": _fingerprint(model), "noise": repr(noise),
            "signals": _digest("signals", [("signals", signals), ("classes", signal_classes)]),
            "gamma": gamma, "seed": int(seed), "batch_size": batch_size, "n_samples": n_samples,
            "batches": (mine.start, mine.stop, mine.step)}, checkpoint_every)
        parts, seen, rechecked, resumed = _stream(engine, work, mine, n_samples, batch_size,
                                                  f"trials γ={gamma:g}", "trial", progress, ckpt, device)
    if parts is None:
        parts = (torch.zeros((4, D), dtype=torch.float64, device=device),
                 torch.zeros((4, D), dtype=torch.float64, device=device),
                 torch.zeros(4, dtype=torch.int64, device=device),
                 torch.zeros(D, dtype=torch.float64, device=device))
    noise_sums, stim_sums, count, noise_sq = parts
    noise_sums, stim_sums, count = noise_sums.view(2, 2, D), stim_sums.view(2, 2, D), count.view(2, 2)
    if distributed:
        seen, rechecked, resumed = _all_reduce((noise_sums, stim_sums, count, noise_sq), seen, rechecked, resumed)
    meta = {"seed": int(seed), "batch_size": batch_size, "n_samples": n_samples,
            "noise": repr(noise), "batches": list(range(n_batches)) if distributed else list(mine),
            "fast": engine.fast_model is not None, "fast_path": engine.kind, "compiled": engine.compiled,
            "rechecked": rechecked, "resumed_batches": resumed}
    return StimulusResponseCells(noise_sums.reshape(2, 2, *shape).cpu(), stim_sums.reshape(2, 2, *shape).cpu(),
                                 count.cpu(), noise_sq.reshape(shape).cpu(), seen, gamma, meta)
