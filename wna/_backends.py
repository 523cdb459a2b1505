"""How a probe runs a model: the plain model, or a fast copy whose decisions equal the plain model's.

:class:`Engine` is built once per model and stimulus shape (by :class:`wna.Probe`)
and reused for every call. On the CPU a model with 2-D convolutions runs as a
fast copy in cache-sized chunks (:data:`FAST_CHUNK` rows, single-threaded
kernels): a channels-last ``deepcopy`` (``"eager"``), a ``torch.compile``-d
copy with frozen weights (``"compile"``) or the model exported to ONNX and run
by onnxruntime (``"onnx"``). Its logits differ from the plain model's only by
float rounding, so a row whose top-2 margin lies within the engine's tie
tolerance is recomputed by the plain model: the decisions are the plain fp32
model's.

The tie tolerance is set from a measurement, not assumed: on a test chunk the
fast copy's largest logit error (relative to ``unit + max |logit|`` of the row,
``unit`` the smaller of 1 and the model's largest logit there)
is measured, and the tolerance is ``max(TIE_TOLERANCE, 4 x that error)``, so
no row outside it can change its decision. A fast copy whose error would need
a tolerance above :data:`MAX_TIE_TOLERANCE`, or whose rechecked decisions
differ from the plain model's on the test chunk, is dropped with a warning.

:meth:`Engine.map` runs whole batches on one Python thread per core (torch
single-threaded meanwhile) and yields their results in batch order, so a
caller that adds them in that order gets bitwise the same result for any
number of threads. On a GPU everything runs on the calling thread,
asynchronously, and NaN/inf outputs are checked without waiting inside the loop.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Callable, Iterator

import torch

from .models import binary_logit, decide

FAST_CHUNK = 256  # rows per forward pass on the fast CPU path (fits the caches)
TIE_TOLERANCE = 1e-4  # smallest relative top-2 margin below which the plain model decides
MAX_TIE_TOLERANCE = 1e-2  # a fast copy needing more than this is not used
COMPILE_FREEZING = True  # fast="compile": weights frozen into the compiled graph
FAST_NAMES = {"auto": True, "eager": True, "compile": "compile", "onnx": "onnx", "off": False,
              True: True, False: False}
NONFINITE = "the model returned non-finite outputs (NaN or inf)"


def fast_kind(fast) -> bool | str:
    """The internal fast-path setting of a user's ``fast=`` (the CLI's names, or True/False)."""
    try:
        return FAST_NAMES[fast]
    except (KeyError, TypeError):
        raise ValueError(f"fast must be one of 'auto', 'eager', 'compile', 'onnx', 'off' "
                         f"(or True/False), got {fast!r}") from None


def check_output(out, batch: int, shape, finite: bool = True) -> torch.Tensor:
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
    return check_output(out, x.shape[0], x.shape[1:] if shape is None else shape, finite)


@contextlib.contextmanager
def eval_mode(model):
    """``model.eval()`` inside the block; its training flag restored afterwards."""
    was = getattr(model, "training", None)
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        yield
    finally:
        if isinstance(model, torch.nn.Module) and was:
            model.train(was)


def near_ties(logits: torch.Tensor, tolerance: float = TIE_TOLERANCE, unit: float = 1.0) -> torch.Tensor:
    """Rows whose decision could flip when each logit moves by ``tolerance / 2 x (unit + max |logit|)``.

    ``unit`` is 1, or the model's largest logit on the test chunk when that is
    below 1: an untrained network's logits can be 1e-10, and every row of it
    would otherwise count as a near-tie.
    """
    logits = binary_logit(logits)
    if logits.ndim == 1:
        margin, scale = logits.abs(), logits.abs()
    elif logits.shape[1] < 2:
        return torch.zeros(len(logits), dtype=torch.bool, device=logits.device)
    else:
        top = logits.topk(2, dim=1).values
        margin, scale = top[:, 0] - top[:, 1], logits.abs().amax(1)
    return margin <= tolerance * (unit + scale)


def relative_error(got: torch.Tensor, want: torch.Tensor, unit: float = 1.0) -> float:
    """Largest ``|got - want|`` of a row relative to ``unit + max |want|`` of that row."""
    got, want = binary_logit(got).double(), binary_logit(want).double()
    if want.ndim == 1:
        got, want = got[:, None], want[:, None]
    scale = unit + want.abs().amax(1, keepdim=True)
    return float(((got - want).abs() / scale).max()) if len(want) else 0.0


class OnnxModel:
    """``model`` exported to ONNX (batch size free) and run by onnxruntime's CPU kernels.

    Each call runs on the calling thread (one onnxruntime thread per session
    run, the GIL released meanwhile), so the probe's worker threads run
    chunks side by side on one session. Takes and returns float32 tensors.
    """

    def __init__(self, model: torch.nn.Module, example: torch.Tensor):
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


def _warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=5)


class Engine:
    """Runs the batches of a probe for one model and stimulus shape; see the module docstring.

    ``model`` must already be on ``device`` and in eval mode while the engine
    is built and used. ``example``: a batch of typical stimuli for the test
    chunk (U[0, 1] noise when None).
    """

    def __init__(self, model, device, fast=True, shape=None, example: torch.Tensor | None = None):
        fast = fast_kind(fast)
        self.model = model
        self.device = torch.device(device)
        self.fast_model = None
        self.kind = None  # the fast path that runs: "eager", "compile", "onnx" or None (the plain model)
        self.tie_tolerance = TIE_TOLERANCE
        self.unit = 1.0  # the logit scale of "relative" (see near_ties), set by the check
        self.fast_error = None  # the fast copy's measured relative logit error on the test chunk
        self.workers = 1
        self._pool = None
        self._lazy = self.device.type != "cpu"  # check for NaN/inf without waiting for the device
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.device) if self._lazy else None
        if (fast and isinstance(model, torch.nn.Module) and self.device.type == "cpu"
                and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())):
            self.fast_model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
            self.kind = "eager"
            if shape is not None:
                self._check_fast(shape, "eager" if fast is True else fast, example)
        if fast and self.device.type == "cpu":
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

    def _build(self, kind: str, x: torch.Tensor) -> None:
        """Compile or export the fast copy as the workers will run it (one thread, inference mode)."""
        if kind == "onnx":
            try:
                self.fast_model, self.kind = OnnxModel(self.model, x), "onnx"
            except Exception as exc:  # noqa: BLE001 - no onnxruntime, an unexportable model, ...
                _warn(f"the ONNX export or onnxruntime failed ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); the probe uses the eager fast path")
        elif kind == "compile":
            try:
                import torch._inductor.config as inductor_config
                fn = torch.compile(self.fast_model, dynamic=False)
                with torch.inference_mode(), inductor_config.patch(freezing=COMPILE_FREEZING):
                    fn(x.contiguous(memory_format=torch.channels_last))  # compiles now, here
                self.fast_model, self.kind = fn, "compile"
            except Exception as exc:  # noqa: BLE001 - no compiler, unsupported model, ...
                _warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                      "the probe uses the eager fast path")

    def _check_fast(self, shape, kind: str, example: torch.Tensor | None) -> None:
        """Build the fast copy, measure its logit error on a test chunk, set the tie tolerance.

        The fast copy is kept only if its error allows a tolerance of at most
        :data:`MAX_TIE_TOLERANCE` and, with near-ties rechecked, it decides
        every row of the test chunk as the plain model does. Runs as the
        workers will (one torch thread, inference mode, the chunk shape and
        layout): dynamo guards on all of these.
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        why = None
        try:
            if example is not None and len(example) >= 2:
                x = example[:FAST_CHUNK].to(torch.float32).contiguous()
            else:
                x = torch.rand((FAST_CHUNK, *shape), generator=torch.Generator().manual_seed(0))
            try:
                with torch.inference_mode():
                    want = check_output(self.model(x), len(x), shape)
            except Exception:  # noqa: BLE001 - the plain model will give the clear error
                self.fast_model, self.kind = None, None
                return
            self._build(kind, x)
            try:
                with torch.inference_mode():
                    got = self._chunks(x)  # as the probe will call it
                if not isinstance(got, torch.Tensor) or got.shape != want.shape:
                    why = f"its output has shape {tuple(getattr(got, 'shape', ()))}, not {tuple(want.shape)}"
                elif not bool(torch.isfinite(got).all()):
                    why = "it returned non-finite logits"
                else:
                    self.unit = min(1.0, float(want.abs().max())) or 1.0
                    self.fast_error = relative_error(got, want, self.unit)
                    self.tie_tolerance = max(TIE_TOLERANCE, 4 * self.fast_error)
                    if self.tie_tolerance > MAX_TIE_TOLERANCE:
                        why = f"its logits differ by up to {self.fast_error:.1e} (relative)"
                    else:
                        with torch.inference_mode():
                            got = self._recheck(got, x, shape)[0]
                        if not torch.equal(decide(got)[0], decide(want)[0]):
                            why = "its decisions differ on the test chunk"
            except Exception as exc:  # noqa: BLE001
                why = f"it failed ({type(exc).__name__}: {str(exc)[:200]})"
        finally:
            torch.set_num_threads(threads)
        if why is not None:
            _warn(f"the fast path disagrees with the plain model ({why}); the probe runs the plain model")
            self.fast_model, self.kind = None, None
            self.tie_tolerance, self.unit = TIE_TOLERANCE, 1.0

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

    def _recheck(self, out: torch.Tensor, x: torch.Tensor, shape) -> tuple[torch.Tensor, int]:
        close = near_ties(out, self.tie_tolerance, self.unit)
        n = int(close.sum())
        if n:
            idx = close.nonzero()[:, 0]
            out[idx] = predict(self.model, x[idx], shape).to(out.dtype)
        return out, n

    def forward(self, x: torch.Tensor, shape, split: bool = False) -> tuple[torch.Tensor, int]:
        """Logits of a batch and the number of rows recomputed by the plain model.

        ``split``: spread the chunks over the worker threads (only from the
        calling thread, never from inside :meth:`map`'s workers).
        """
        return self.forward_read(x, shape, split)[:2]

    def forward_read(self, x: torch.Tensor, shape, split: bool = False, reader=None, checked: bool = True):
        """:meth:`forward` and, with a :class:`wna._layers.LayerReader` (hooked on this engine's
        models), the layers' outputs: ``(logits, rechecked, {name: output} or None)``.

        The layers are read in the pass that computes the logits: the eager
        fast copy's chunks (a row rechecked by the plain model keeps its fast
        layer outputs); a frozen fast copy (``"compile"``, ``"onnx"``) has no
        layers to hook, so such batches run through the plain model.
        ``checked=False``: outputs neither checked nor rechecked (a feature map is fine).
        """
        def run(fn, *args):
            return (fn(*args), None) if reader is None else reader.run(lambda: fn(*args))

        if not checked:
            out, acts = run(self._chunks if self.kind == "eager" and x.ndim == 4 else self.model, x)
            return out, 0, acts
        if self._lazy:
            out, acts = run(predict, self.model, x, shape, False)
            self._nonfinite |= ~torch.isfinite(out).all()
            return out, 0, acts
        if self.fast_model is None or x.ndim != 4 or (reader is not None and self.kind != "eager"):
            return self._plain_read(x, shape, run)
        try:
            if not split or self._pool is None or len(x) <= FAST_CHUNK:
                out, acts = run(self._chunks, x)
            else:  # contiguous parts of whole chunks: the same chunks as unsplit
                per = -(-len(x) // (self.workers * FAST_CHUNK)) * FAST_CHUNK
                parts = list(self._pool.map(lambda p: run(self._chunks, p), x.split(per)))
                out = torch.cat([o for o, _ in parts])
                acts = None if reader is None else {k: torch.cat([a[k] for _, a in parts]) for k in parts[0][1]}
        except (RuntimeError, ValueError, TypeError, IndexError):
            return self._plain_read(x, shape, run)  # the plain model gives the clear error
        return (*self._recheck(check_output(out, len(x), shape), x, shape), acts)

    def _plain_read(self, x, shape, run):
        out, acts = run(predict, self.model, x, shape)
        return out, 0, acts

    def check(self) -> None:
        """Raise if any output so far was NaN or inf (on a GPU this waits for the device)."""
        if self._lazy and bool(self._nonfinite):
            raise ValueError(NONFINITE)

    def map(self, work: Callable, batches) -> Iterator:
        """``work(i, split)`` for each batch ``i``, results yielded in batch order.

        ``work`` runs under ``torch.inference_mode`` and passes ``split`` on to
        :meth:`forward`. With fewer than two batches per thread, the batches
        run one after the other and each batch's chunks are spread over the
        threads instead.
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
                yield from in_order(pool, run, batches, ahead=self.workers + 1)
        elif self.workers > 1 and self.fast_model is not None:
            with self._threads():
                for i in batches:
                    yield run(i, True)
        else:
            for i in batches:
                yield run(i, False)


def in_order(pool, fn, items, ahead: int) -> Iterator:
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
