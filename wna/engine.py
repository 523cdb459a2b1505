"""One engine for every noise experiment: :class:`Probe`, estimators and their results.

Every experiment of the paper draws seeded stimuli in batches, runs them
through a model and adds up something per batch. :class:`Probe` is the one
streaming driver (seeded per-batch generators, a fast copy of the model built
once per stimulus shape, worker threads, shards and ``torch.distributed``,
ordered sums, checkpoints, progress, meta); an :class:`Estimator` says what to
add up:

>>> class MeanLogit(Estimator):                        # a whole new experiment
...     name = "mean_logit"
...     def update(self, stimuli, outputs):
...         return {"logits": outputs.double().sum(0)}
...     def finalize(self, sums, n, meta):
...         return sums["logits"] / n
>>> with Probe(model) as p:
...     p.run(MeanLogit(stimuli.WhiteNoise((1, 28, 28))), 100_000, seed=0)

``update`` must be a pure function of its batch (it runs on worker threads)
and return a dict of tensors that add across batches. Sharding, ranks,
checkpoints and determinism then come for free.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import math
import time
from typing import Callable

import torch

from . import _stream
from ._backends import FAST_CHUNK, Engine, eval_mode, fast_kind, predict
from ._cells import CellsEstimator
from ._checks import (ProbabilitiesAsLogits, check_device, check_logits, check_outputs_option, check_seed,
                      check_writable)
from ._classimages import ClassImageEstimator
from ._estimator import Estimator
from ._layers import LayerReader
from ._result import RESULT_FORMAT, SUM_ROWS, Result, class_counts, class_sums

__all__ = ["Probe", "probe_for", "Estimator", "Result", "class_sums", "class_counts", "SUM_ROWS", "RESULT_FORMAT"]


# --------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------


def _input(stimuli) -> torch.Tensor:
    return stimuli[0] if isinstance(stimuli, tuple) else stimuli


def _rows(stimuli, k: int):
    return tuple(s[:k] for s in stimuli) if isinstance(stimuli, tuple) else stimuli[:k]


def _part(stimuli, start: int, end: int):
    return tuple(s[start:end] for s in stimuli) if isinstance(stimuli, tuple) else stimuli[start:end]


def _state_token(model) -> tuple:
    """Changes when a parameter or buffer of ``model`` is replaced or modified in place, or when a
    forward (pre-)hook is registered or removed (the fast copy carries the hooks it was built with)."""
    if not isinstance(model, torch.nn.Module):
        return ()
    out = []
    for t in itertools.chain(model.parameters(), model.buffers()):
        try:
            out.append((t.data_ptr(), t._version))
        except RuntimeError:  # an inference tensor has no version counter
            out.append((t.data_ptr(), None))
    hooks = tuple(k for m in model.modules() for d in (m._forward_pre_hooks, m._forward_hooks) for k in d)
    return (tuple(out), hooks)


class Probe:
    """The streaming engine for one model: build it once, call it for every experiment.

    ``model`` maps a batch ``(B, *shape)`` to logits ``(B, C)``; one output
    column ``(B,)`` or ``(B, 1)`` is a binary observer (class 1 when > 0).
    The probe never moves, retrains or otherwise changes the caller's model:
    a model on another device than ``device`` is copied there, and the model
    runs in eval mode during a call (its training flag is restored).

    ``fast`` (CPU, models with 2-D convolutions): ``"auto"`` or ``"eager"`` (a
    channels-last copy in chunks), ``"compile"`` (``torch.compile``, seconds
    to compile), ``"onnx"`` (onnxruntime, seconds to export) or ``"off"``; the
    decisions are always the plain fp32 model's (see :mod:`wna._backends`).
    The fast copy is built at most once per stimulus shape and reused for
    every call; if the model's parameters change between calls, it is
    rebuilt (:meth:`edit_in_place` edits them without a rebuild); so is it when a forward hook
    is registered on the model or removed.

    ``outputs``: ``"auto"`` (logits; outputs that look like probabilities
    or integers are refused on the first batch), ``"logits"`` (no check but
    for integers: a logit model whose outputs happen to lie in [0, 1]) or
    ``"probabilities"`` (read as ``log p``, one column as ``logit(p)``: class 1
    when ``p > 0.5``); the rule is in :mod:`wna._checks`. ``device`` must exist
    on this machine.

    Same ``seed``, ``batch_size`` and ``n_samples`` give bitwise the same
    result on the CPU, whatever the number of threads.
    """

    def __init__(self, model: Callable, *, device="cpu", fast="auto", batch_size: int = 4096,
                 progress: bool = True, outputs: str = "auto"):
        self.fast = fast_kind(fast)
        self.device = check_device(device)
        self.batch_size = _stream.positive_int("batch_size", batch_size)
        self.progress = bool(progress)
        self.outputs = check_outputs_option(outputs)
        self.model = model
        self._engines: dict[tuple, Engine] = {}
        self._token = None
        self._copy = None
        self._fingerprint = None

    def __enter__(self) -> "Probe":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the fast copies (they are rebuilt if the probe is used again)."""
        self._engines.clear()
        self._copy = None
        self._fingerprint = None

    def fingerprint(self) -> str:
        """The SHA-256 of the model's code and weights as this probe runs it (``meta["model"]``;
        see :func:`wna._stream.model_fingerprint`), reading probabilities included."""
        plain = self._plain()
        if self._fingerprint is None:
            fp = _stream.model_fingerprint(plain)
            if self.outputs == "probabilities":
                fp = hashlib.sha256(f"{fp}|outputs=probabilities".encode()).hexdigest()
            self._fingerprint = fp
        return self._fingerprint

    def _plain(self):
        """The model on the probe's device (the caller's model itself when it is already there)."""
        token = _state_token(self.model)
        if token != self._token:
            self.close()
            self._token = token
        m = self.model
        if isinstance(m, torch.nn.Module):
            t = next(itertools.chain(m.parameters(), m.buffers()), None)
            if t is not None and t.device != self.device:
                if self._copy is None:
                    self._copy = copy.deepcopy(m).to(self.device)
                return self._copy
        return m

    def engine(self, shape, example=None) -> Engine:
        """The engine for stimuli of ``shape`` (built on first use; the model must be in eval mode)."""
        shape = tuple(shape)
        if shape not in self._engines:
            model = self._plain()
            if self.outputs == "probabilities":
                model = ProbabilitiesAsLogits(model)
            self._engines[shape] = Engine(model, self.device, self.fast, shape, example)
        return self._engines[shape]

    def run(self, estimator: Estimator, n_samples: int, *, seed: int = 0, shard=None,
            checkpoint=None, checkpoint_every: float = 60.0, desc: str | None = None, snapshots=None):
        """Stream ``n_samples`` seeded stimuli through the model into ``estimator``; its result.

        Batch ``i`` holds stimuli ``[i * batch_size, (i + 1) * batch_size)`` drawn
        from :func:`wna._stream.batch_generator` ``(seed, i)``. ``shard=(k, K)``
        processes only the batches with ``i % K == k`` (results merge into the
        full one); under an initialised ``torch.distributed`` process group the
        ranks split the batches the same way, and the sums are all-reduced so
        every rank returns the full result. ``checkpoint``: a file where the
        running sums are saved (atomically) every ``checkpoint_every`` seconds,
        at the end and on interruption; the same call with the same file skips
        the batches it holds and gives bitwise the uninterrupted result.

        ``snapshots``: sample counts N (multiples of the batch size, or
        ``n_samples``) at which the running sums are also kept; the call then
        returns ``{N: result}`` (``n_samples`` included), where the result at N
        is that of the first N stimuli of the same stream: bitwise the result
        of a run with ``n_samples=N``. One pass serves every N (Fig. 4).

        ``seed``: an integer >= 0 (anything else raises ValueError). The
        result's ``meta`` records the stream it covers (``seed``,
        ``batch_size``, ``stimulus``, ``batches``) and the model's fingerprint
        (``model``), so that :meth:`Result.merge` refuses to count stimuli
        twice or to mix models. ``meta["seconds"]`` is this call's wall time
        (setup included), ``meta["stimuli_per_second"]`` the stimuli this
        process computed in it (not those taken from a checkpoint, nor other
        ranks') per second, and ``meta["resumed_stimuli"]`` the stimuli taken
        from the checkpoint (``resumed_batches`` their batches).
        """
        if not isinstance(estimator, Estimator):
            raise ValueError(f"estimator must be a wna.engine.Estimator, got {type(estimator).__name__}")
        seed = check_seed(seed)
        if checkpoint is not None:  # before the fast copy is built or a batch runs
            check_writable(checkpoint, "checkpoint")
        t0 = time.perf_counter()
        n_samples, batch_size, n_batches, mine, distributed = _stream.plan(n_samples, self.batch_size, shard)
        cuts = None
        if snapshots is not None:
            cuts = _stream.snapshot_cuts([*snapshots, n_samples], n_samples, batch_size, mine)
            cuts.pop(n_samples)  # the full run is the result itself
        shape, device = estimator.shape, self.device
        plain = self._plain()
        check_at = mine[0] if len(mine) else None  # the first batch this process computes
        with eval_mode(plain):
            with torch.inference_mode():
                # a full test chunk for the fast copy's check, whatever n_samples is
                first = estimator.sample_at(0, FAST_CHUNK, _stream.batch_generator(seed, 0, device))
            engine = self.engine(shape, _input(first) if device.type == "cpu" else None)

            reader = None
            if estimator.layers():  # hooked for this call only, on the copies this engine runs
                reader = LayerReader(estimator.layers(), estimator.read)
                reader.attach(engine.model, *([engine.fast_model] if engine.kind == "eager" else []))

            def work(i, split):
                b = min(batch_size, n_samples - i * batch_size)
                stimuli = estimator.sample_at(i * batch_size, b, _stream.batch_generator(seed, i, device))
                if reader is None:
                    logits, rechecked = engine.forward(_input(stimuli), shape, split)
                    if i == check_at and estimator.reads_logits:
                        check_logits(logits, self.outputs, engine.model, _input(stimuli))
                    return estimator.update(stimuli, logits), b, rechecked
                sums, rechecked, step = None, 0, estimator.rows_per_update or b
                for s in range(0, b, step):  # parts of the batch, their sums added in order
                    part = _part(stimuli, s, s + step)
                    logits, r, acts = engine.forward_read(_input(part), shape, split, reader, estimator.reads_outputs)
                    if i == check_at and s == 0 and estimator.reads_logits and estimator.reads_outputs:
                        check_logits(logits, self.outputs, engine.model, _input(part))
                    u = estimator.update(part, logits, acts)
                    sums, rechecked = (u if sums is None else {k: sums[k] + u[k] for k in sums}), rechecked + r
                return sums, b, rechecked

            def empty():  # zero sums of the right shapes
                with torch.inference_mode():
                    if reader is None:
                        return estimator.update(_rows(first, 0), predict(engine.model, _input(first), shape)[:0])
                    logits, _, acts = engine.forward_read(_input(first), shape, False, reader, estimator.reads_outputs)
                    return estimator.update(_rows(first, 0), logits[:0], {k: v[:0] for k, v in acts.items()})

            try:
                zeros = empty() if len(mine) == 0 else None  # a rank or shard without batches
                ckpt = None if checkpoint is None else _stream.Checkpoint(checkpoint, {
                    "estimator": estimator.name, **estimator.key(), "model": _stream.fingerprint(plain),
                    "seed": seed, "batch_size": batch_size, "n_samples": n_samples,
                    "batches": (mine.start, mine.stop, mine.step), "snapshots": sorted(cuts or ()),
                    **({"outputs": self.outputs} if self.outputs == "probabilities" else {})},
                    checkpoint_every)
                sums, seen, rechecked, resumed, resumed_seen, snaps = _stream.stream(
                    engine, work, mine, n_samples, batch_size, desc or estimator.name.replace("_", " "),
                    estimator.unit, self.progress, ckpt, device, cuts)
                # own copies: a snapshot may share its tensors with the final sums (all-reduced in place)
                snaps = {n: None if v is None else {k: t.clone() for k, t in v.items()} for n, v in snaps.items()}
                if zeros is None and any(v is None for v in snaps.values()):
                    zeros = empty()
            finally:
                if reader is not None:
                    reader.remove()
            fingerprint = self.fingerprint()  # after the forward passes: lazy modules are initialised
        sums = zeros if sums is None else sums
        computed = seen - resumed_seen  # by this process in this call
        if distributed:
            seen, rechecked, resumed, resumed_seen = _stream.all_reduce(sums, seen, rechecked, resumed, resumed_seen)
        meta = {"estimator": estimator.name, "seed": seed, "batch_size": batch_size,
                "n_samples": n_samples, "stimulus": repr(estimator.stimulus),
                "batches": list(range(n_batches)) if distributed else list(mine), "model": fingerprint,
                "outputs": self.outputs, "fast": engine.fast_model is not None, "fast_path": engine.kind,
                "compiled": engine.compiled, "tie_tolerance": engine.tie_tolerance,
                "rechecked": rechecked, "resumed_batches": resumed, "resumed_stimuli": resumed_seen,
                "device": str(device), "seconds": time.perf_counter() - t0}
        if reader is not None:
            meta["layers"] = list(reader.names)
            meta["layers_from"] = "eager" if engine.kind == "eager" else "plain"  # compile/onnx: plain
        meta["stimuli_per_second"] = computed / max(meta["seconds"], 1e-9)
        result = estimator.finalize({k: v.cpu() for k, v in sums.items()}, seen, meta)
        if cuts is None:
            return result
        out = {}
        for n, s in snaps.items():
            c = math.ceil(n / batch_size)
            s = {k: v.clone() for k, v in zeros.items()} if s is None else s
            seen_n = sum(min(batch_size, n_samples - i * batch_size) for i in mine if i < c)
            if distributed:
                (seen_n,) = _stream.all_reduce(s, seen_n)
            m = {**meta, "n_samples": n, "snapshot_of": n_samples,
                 "batches": list(range(c)) if distributed else [i for i in mine if i < c]}
            for k in ("rechecked", "resumed_batches", "resumed_stimuli", "seconds", "stimuli_per_second"):
                m.pop(k)
            out[n] = estimator.finalize({k: v.cpu() for k, v in s.items()}, seen_n, m)
        return {**out, n_samples: result}

    def classification_images(self, stimulus, n_samples: int, *, seed: int = 0, weighting: str = "none",
                              num_classes: int | None = None, shard=None, checkpoint=None,
                              checkpoint_every: float = 60.0, snapshots=None, desc: str = "probe"):
        """Mean stimulus per predicted class (Fig. 2); see :func:`wna.probe.classification_images`.

        ``snapshots=[N1, N2, ...]`` returns ``{N: ClassificationImages}`` of the
        first N stimuli of the one stream (see :meth:`run`). ``desc`` labels
        the progress bar.
        """
        return self.run(ClassImageEstimator(stimulus, weighting, num_classes), n_samples, seed=seed,
                        shard=shard, checkpoint=checkpoint, checkpoint_every=checkpoint_every, desc=desc,
                        snapshots=snapshots)

    def stimulus_response_cells(self, signals, signal_classes, noise, gamma: float, n_samples: int, *,
                                seed: int = 0, shard=None, checkpoint=None, checkpoint_every: float = 60.0):
        """A binary experiment's four cells (Eqs. 1-3, Fig. 1); see :func:`wna.binary.stimulus_response_cells`."""
        est = CellsEstimator(signals, signal_classes, noise, gamma, self.device)
        return self.run(est, n_samples, seed=seed, shard=shard, checkpoint=checkpoint,
                        checkpoint_every=checkpoint_every, desc=f"trials γ={est.gamma:g}")

    def edit_in_place(self, fn: Callable[[torch.nn.Module], None]) -> None:
        """Apply the in-place edit ``fn(module)`` alike to the model and every copy of it this probe runs.

        The engines are kept (their eager fast copies get the same edit), so
        the next call sees the edited model without a rebuild: micro-stimulation
        (:func:`wna.stimulation.stimulate`) shifts biases so. Frozen fast copies
        (``"compile"``, ``"onnx"``) are dropped and rebuilt on the next call.
        """
        if not isinstance(self.model, torch.nn.Module):
            raise ValueError(f"only a torch.nn.Module can be edited in place, not a {type(self.model).__name__}")
        self._plain()  # an edit made directly to the model since the last call drops the engines first
        targets = [self.model] + ([self._copy] if self._copy is not None else [])
        for shape, e in list(self._engines.items()):
            if e.kind == "eager":
                fast = e.fast_model
                targets.append(fast.model if isinstance(fast, ProbabilitiesAsLogits) else fast)
            elif e.fast_model is not None:
                del self._engines[shape]
        with torch.no_grad():
            for m in targets:
                fn(m)
        self._token = _state_token(self.model)
        self._fingerprint = None

    def __repr__(self) -> str:
        built = {s: e.kind for s, e in self._engines.items()}
        return (f"Probe({type(self.model).__name__}, device={self.device}, fast={self.fast!r}, "
                f"outputs={self.outputs!r}, engines={built})")


SETTINGS = ("device", "fast", "batch_size", "progress", "outputs")  # what probe_for passes on


@contextlib.contextmanager
def probe_for(model, fresh: dict | None = None, **settings):
    """The one rule for functions that take "a model or a :class:`Probe`": yields a probe.

    ``settings`` are :class:`Probe`'s keywords (:data:`SETTINGS`); None means
    "not given". A probe given whose settings agree with every one given is
    yielded itself and left open (its fast copies serve later calls); a probe
    with a differing setting gives a new probe on its model with its settings
    so changed; any other model a new ``Probe(model, **settings)``. A probe
    made here is closed when the block ends, also on an exception. ``fresh``:
    settings of a probe made from a model only (e.g. ``progress=False`` for
    the per-cell runs of a sweep with a bar of its own).
    """
    given = {k: v for k, v in settings.items() if v is not None}
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise TypeError(f"probe_for got unknown settings {unknown}; known: {list(SETTINGS)}")
    if isinstance(model, Probe):
        mine = {"device": model.device, "fast": model.fast, "batch_size": model.batch_size,
                "progress": model.progress, "outputs": model.outputs}
        new = {"device": check_device(given.get("device", model.device)),
               "fast": fast_kind(given.get("fast", model.fast)), **{k: given[k] for k in given
                                                                     if k not in ("device", "fast")}}
        if all(mine[k] == v for k, v in new.items()):
            yield model
            return
        given = {**mine, **given}
        model = model.model
    else:
        given = {**(fresh or {}), **given}
    probe = Probe(model, **given)
    try:
        yield probe
    finally:
        probe.close()
