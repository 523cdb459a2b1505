"""The streaming driver's pieces: seeded batches, shards and ranks, ordered sums, checkpoints.

Batch ``i`` draws from its own generator seeded from ``(seed, i)``
(:func:`batch_generator`), so any split of the batches between shards or
``torch.distributed`` ranks sees exactly the stimuli of the single-process
run, and their sums merge into its result (counts bitwise; float64 sums up to
the rounding of the additions across batches, see :meth:`wna.engine.Result.merge`).
:func:`stream` adds the per-batch sums of a run in batch order and keeps them
in a :class:`Checkpoint`, so an interrupted run continues where it stopped
and gives bitwise the uninterrupted result.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ._checks import check_seed, check_writable, load_torch

CHECKPOINT_FORMAT = 2


def batch_generator(seed: int, index: int, device="cpu") -> torch.Generator:
    """The generator of batch ``index`` under ``seed``: independent streams per (seed, index).

    ``seed``: an integer >= 0 (Python or numpy; anything else raises ValueError).
    """
    state = np.random.SeedSequence([check_seed(seed), int(index)]).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return g


def dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return int(v)


def plan(n_samples, batch_size, shard):
    """Check the sizes; ``(n_samples, batch_size, n_batches, this process's batches, distributed)``."""
    n_samples = positive_int("n_samples", n_samples)
    batch_size = positive_int("batch_size", batch_size)
    n_batches = math.ceil(n_samples / batch_size)
    rank, world = dist_rank_world()
    distributed = world > 1
    if shard is not None:
        if distributed:
            raise ValueError("pass either shard=... or run under torch.distributed, not both")
        try:
            k, K = (int(v) for v in shard)
        except (TypeError, ValueError):
            raise ValueError(f"shard must be (k, K) with 0 <= k < K, got {shard!r}") from None
        if not (0 <= k < K):
            raise ValueError(f"shard must be (k, K) with 0 <= k < K, got {shard}")
        rank, world = k, K
    return n_samples, batch_size, n_batches, range(rank, n_batches, world), distributed


def digest(name: str, named_tensors) -> str:
    """A SHA-256 of a name and of ``(name, tensor)`` pairs, their values included."""
    h = hashlib.sha256(name.encode())
    for k, v in named_tensors:
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint(model) -> str:
    """A hash of a model's class and parameters (to tell checkpoints of different models apart)."""
    return digest(type(model).__qualname__,
                  model.state_dict().items() if isinstance(model, torch.nn.Module) else ())


@functools.lru_cache(maxsize=512)
def _code(obj) -> str:
    name = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
    try:
        return f"{name}\n{inspect.getsource(obj)}"
    except (OSError, TypeError):  # defined in `python -c` or built in: its name alone
        return name


def model_fingerprint(model) -> str:
    """A SHA-256 of what a model computes, recorded in every result (``meta["model"]``).

    For an ``nn.Module``: the module path, qualified name and source code of
    the class of each of its modules, and the name, dtype, shape and values
    of every parameter and buffer (non-persistent buffers included); for
    another callable: its code (a function's, or its class's). Results of
    two models differ in it, and so do those of one model before and after
    its weights or its code change (as the zoo's checkpoint key does for
    training code). Forward hooks are not part of it.
    """
    h = hashlib.sha256()
    if isinstance(model, torch.nn.Module):
        codes = dict.fromkeys(type(m) for m in model.modules())
        tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    else:
        codes = [model if inspect.isfunction(model) or inspect.ismethod(model) else type(model)]
        tensors = []
    for c in codes:
        h.update(_code(c).encode())
    for k, v in tensors:
        if torch.nn.parameter.is_lazy(v):  # not initialised yet: no shape, no values
            h.update(f"{k}:uninitialised".encode())
            continue
        h.update(f"{k}:{v.dtype}:{tuple(v.shape)}".encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_atomic(obj, path) -> None:
    """``torch.save`` to ``path`` through a temporary file: a reader never sees half a file, and a
    failed save leaves neither half a file nor the temporary one. A directory ``path`` is refused."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot save to {path}: it is a directory; pass a file path "
                                f"(e.g. {path / 'result.pt'})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Checkpoint:
    """Atomic saves of a run's running sums every ``every`` seconds, at the end and on
    interruption; :meth:`load` returns the saved state of the same run (``key``), or None.

    Under ``torch.distributed`` each rank keeps its own file (``<stem>.rank<r>-of-<w><suffix>``).
    """

    def __init__(self, path, key: dict, every: float):
        path = check_writable(path, "checkpoint")  # before the first batch, not after the run
        rank, world = dist_rank_world()
        if world > 1:
            path = path.with_name(f"{path.stem}.rank{rank}-of-{world}{path.suffix}")
        self.path, self.key, self.every = path, key, float(every)
        self._last = time.monotonic()

    def load(self):
        if not self.path.exists():
            return None
        d = load_torch(self.path, "probe checkpoint",
                       "delete it to start the run over, or choose another checkpoint path")
        theirs = d.get("key") if isinstance(d, dict) else None
        if theirs != self.key or d.get("format") != CHECKPOINT_FORMAT:
            diff = sorted(k for k in set(self.key) | set(theirs or {})
                          if (theirs or {}).get(k) != self.key.get(k))
            raise ValueError(f"checkpoint {self.path} was written by another run (differs in {diff}); "
                             "delete it or choose another checkpoint path")
        total, done, seen, rechecked = d["state"]
        return total, int(done), int(seen), int(rechecked), dict(d.get("snapshots") or {})

    def save(self, state, force: bool = False) -> Path | None:
        """Save ``state`` (every ``every`` seconds, or now with ``force``); the file written.

        A save that fails (disk full, folder removed) never ends the run: a
        periodic one warns and is tried again later; a forced one (the end of
        the run, an interruption) is written to a fallback file in the
        temporary folder instead, with a warning naming it (the same run
        continues from it with ``checkpoint=`` that file). Returns the path
        written, or None.
        """
        if not force and time.monotonic() - self._last < self.every:
            return None
        total, done, seen, rechecked, snaps = state
        total = None if total is None else {k: t.cpu() for k, t in total.items()}
        snaps = {n: {k: t.cpu() for k, t in s.items()} for n, s in snaps.items()}
        obj = {"format": CHECKPOINT_FORMAT, "key": self.key,
               "state": (total, done, seen, rechecked), "snapshots": snaps}
        self._last = time.monotonic()
        try:
            save_atomic(obj, self.path)
            return self.path
        except OSError as exc:
            why = f"checkpoint {self.path} could not be written ({exc.strerror or exc})"
            if not force:
                warnings.warn(f"{why}; the run goes on and tries again", RuntimeWarning, stacklevel=3)
                return None
        fallback = Path(tempfile.gettempdir()) / f"wna-checkpoint-{os.getpid()}-{self.path.name}"
        try:
            save_atomic(obj, fallback)
        except OSError as exc2:
            warnings.warn(f"{why}, nor a fallback copy at {fallback} ({exc2.strerror or exc2}); "
                          "the batches done are not saved", RuntimeWarning, stacklevel=3)
            return None
        warnings.warn(f"{why}; the {done:,} batches done are saved in {fallback} instead: pass "
                      f"checkpoint={str(fallback)!r} to continue from there", RuntimeWarning, stacklevel=3)
        return fallback


def snapshot_cuts(snapshots, n_samples: int, batch_size: int, mine: range) -> dict[int, int]:
    """``{N: number of this process's batches that hold stimuli < N}`` for each snapshot N.

    A snapshot must end on a batch boundary (a multiple of ``batch_size``) or
    be ``n_samples``: the sums at N are then those of the first N stimuli, and
    bitwise those of a run of ``n_samples=N``.
    """
    cuts = {}
    for v in snapshots:
        n = positive_int("snapshot", v)
        if n > n_samples or (n % batch_size and n != n_samples):
            raise ValueError(f"snapshot {n} must be n_samples ({n_samples}) or a multiple of the "
                             f"batch size ({batch_size}) below it; choose a batch_size that divides "
                             "every snapshot")
        cuts[n] = sum(1 for i in mine if i < math.ceil(n / batch_size))
    return dict(sorted(cuts.items()))


def stream(engine, work: Callable, mine: range, n_samples: int, batch_size: int, desc: str,
           unit: str, progress: bool, checkpoint: Checkpoint | None = None, device="cpu",
           cuts: dict[int, int] | None = None):
    """Run ``work`` over this process's batches; add up their sums in batch order.

    ``work(i, split)`` returns ``(sums, b, rechecked)``: a dict of tensors
    (the batch's sums), the batch size and the rows the plain model
    recomputed. With a ``checkpoint``, the batches it holds are skipped and
    the running sums are saved as it asks: adding the rest in the same order
    gives bitwise the result of an uninterrupted run. ``cuts`` (from
    :func:`snapshot_cuts`): the running sums are also kept after the given
    numbers of batches (snapshots; also in the checkpoint).
    Returns ``(sums, or None without batches, stimuli seen, rechecked, batches resumed,
    stimuli resumed, {N: sums at snapshot N, or None where no batch came before it})``.
    """
    cuts = cuts or {}
    state = (None, 0, 0, 0, {})  # running sums, batches done, stimuli seen, rechecked, snapshots
    if checkpoint is not None:
        state = checkpoint.load() or state
        to_dev = (lambda d: None if d is None else {k: t.to(device) for k, t in d.items()})
        state = (to_dev(state[0]), *state[1:4], {n: to_dev(v) for n, v in state[4].items()})
    resumed, resumed_seen = state[1], state[2]
    with tqdm(total=sum(min(batch_size, n_samples - i * batch_size) for i in mine), initial=state[2],
              unit=unit, unit_scale=True, desc=desc, disable=not progress, dynamic_ncols=True,
              leave=False) as bar, contextlib.closing(engine.map(work, mine[resumed:])) as results:
        try:
            for sums, b, r in results:
                total, done, seen, rechecked, snaps = state
                total = ({k: v.clone() for k, v in sums.items()} if total is None
                         else {k: total[k] + sums[k] for k in total})
                # the new total is a fresh dict of fresh tensors: a snapshot can hold it as it is
                snaps = {**snaps, **{n: total for n, c in cuts.items() if c == done + 1}}
                state = (total, done + 1, seen + b, rechecked + r, snaps)  # one assignment: consistent if interrupted
                bar.update(b)
                if checkpoint is not None:
                    checkpoint.save(state)
        except BaseException:
            if checkpoint is not None and state[1] > resumed:
                checkpoint.save(state, force=True)
            raise
    if checkpoint is not None:
        checkpoint.save(state, force=True)
    total, _, seen, rechecked, snaps = state
    return total, seen, rechecked, resumed, resumed_seen, {n: snaps.get(n) for n in cuts}


def all_reduce(sums: dict, *counters: int) -> list[int]:
    """Sum the tensors of ``sums`` (in place) and the integer ``counters`` over the ranks."""
    import torch.distributed as dist
    first = next(iter(sums.values()))
    total = torch.tensor(counters, dtype=torch.int64, device=first.device)
    for k in sorted(sums):
        dist.all_reduce(sums[k])
    dist.all_reduce(total)
    return [int(v) for v in total.tolist()]
