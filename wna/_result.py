"""Results of the engine's estimators: the :class:`Result` base (exact merges, save/load) and the
per-class float64 sums every estimator of classification images uses. Re-exported by
:mod:`wna.engine`, where they are documented for users."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import torch

from . import _stream
from ._checks import load_torch

RESULT_FORMAT = 3  # 3: meta records the model's fingerprint ("model") and each run's stimulus
READABLE_FORMATS = (2, 3)  # format 2 loads, but merges only with results that record no model either
SUM_ROWS = 1024  # rows converted to float64 at a time: bounded memory for large stimuli
RUN = ("seed", "batch_size", "n_samples", "stimulus", "batches")  # what a run's meta says it covers
STREAM = ("seed", "batch_size", "stimulus")  # equal in two runs: batch i holds the same stimuli


def _run_of(meta: dict) -> dict:
    run = {k: meta.get(k) for k in RUN}
    if run["stimulus"] is None:  # the mixing estimators keep the noise's repr as "noise"
        run["stimulus"] = meta.get("noise")
    return run


def _runs(meta: dict) -> list[dict]:
    return [{k: r.get(k) for k in RUN} for r in meta["runs"]] if "runs" in meta else [_run_of(meta)]


def _short(fp) -> str:
    return "none" if fp is None else f"{fp[:12]}…"


def _check_models(a: dict, b: dict) -> None:
    fa, fb = a.get("model"), b.get("model")
    if fa != fb:
        raise ValueError(f"cannot merge results of different models (fingerprint {_short(fa)} vs "
                         f"{_short(fb)}): a result holds one model's sums")
    if fa is None and any(r["seed"] is not None for r in _runs(a) + _runs(b)):
        raise ValueError("cannot merge these results: they record no model fingerprint (saved by a wna "
                         "older than result format 3), so nothing shows that one model made both; "
                         "re-run them")


def _merge_meta(a: dict, b: dict) -> dict:
    """Meta of two merged results: runs and batches joined. Refused for two models, or when both
    hold a batch of one stream (same seed, batch size and stimulus, whatever ``n_samples``)."""
    _check_models(a, b)
    runs = _runs(a)
    for rb in _runs(b):
        for ra in runs:
            if (ra["seed"] is not None and ra["batches"] is not None and rb["batches"] is not None
                    and all(ra[k] == rb[k] for k in STREAM)):
                both = set(ra["batches"]) & set(rb["batches"])
                if both:
                    raise ValueError(
                        f"both results hold batches {sorted(both)[:5]} of seed {ra['seed']} (batch size "
                        f"{ra['batch_size']}, stimulus {ra['stimulus']}; n_samples {ra['n_samples']} and "
                        f"{rb['n_samples']}): merging would count the same stimuli twice")
    for rb in _runs(b):  # a shard of a run already there joins it; another run is listed
        ra = next((r for r in runs if r["seed"] is not None and r["batches"] is not None
                   and rb["batches"] is not None and all(r[k] == rb[k] for k in RUN[:4])), None)
        if ra is None:
            runs.append(rb)
        else:
            ra["batches"] = sorted(set(ra["batches"]) | set(rb["batches"]))
    m = dict(a)
    for k in ("rechecked", "resumed_batches", "resumed_stimuli"):
        if k in a or k in b:
            m[k] = int(a.get(k, 0)) + int(b.get(k, 0))
    m.pop("runs", None)
    if len(runs) == 1:
        m.update({k: runs[0][k] for k in ("seed", "batch_size", "n_samples", "batches")})
    else:
        m["runs"] = runs
        for k in ("seed", "batch_size", "n_samples", "batches"):
            m.pop(k, None)
    for k in ("fast_path", "device"):
        if a.get(k) != b.get(k):
            m[k] = "mixed"
    for k in ("seconds", "stimuli_per_second"):  # timings of separate calls do not add up
        m.pop(k, None)
    return m


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)  # NaN == NaN


def _add(f: str, a, b):
    """``a + b`` of a summed field: tensors of one shape, or dicts of them with the same keys."""
    if a is None or b is None:
        return None
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or list(a) != list(b):
            raise ValueError(f"cannot merge {f} of {list(a) if isinstance(a, dict) else 'a tensor'} "
                             f"and {list(b) if isinstance(b, dict) else 'a tensor'}")
        return {k: _add(f"{f}[{k!r}]", a[k], b[k]) for k in a}
    if a.shape != b.shape:
        raise ValueError(f"cannot merge {f} of shape {tuple(a.shape)} and {tuple(b.shape)}")
    return a + b


class Result:
    """Base of every estimator's result (a dataclass): summed tensors, ``n``, identity, ``meta``.

    Subclasses name ``summed`` (tensor fields, or dicts of tensors, that add
    when merging; None stays None) and ``identity`` (fields that must be equal to merge).
    """

    kind: ClassVar[str] = "result"
    summed: ClassVar[tuple[str, ...]] = ()
    identity: ClassVar[tuple[str, ...]] = ()

    def merge(self, other: "Result") -> "Result":
        """Combine the results of disjoint shards or runs of one model: the sums add.

        Refused (ValueError) for results of different models (``meta["model"]``,
        the fingerprint of the model's code and weights) and for results that
        both hold a batch of one stream (same seed, batch size and stimulus,
        whatever their ``n_samples``): those stimuli would count twice. Runs
        of other seeds (other streams) merge; ``meta["runs"]`` then lists them.

        Shards of one run merge into the single-process result: counts
        bitwise; each float64 sum up to the rounding of its additions across
        batches (a batch's own sum is the same in every process, but float
        addition is not associative), so an entry differs by at most
        ``n_batches * 2**-52`` times the sum of the absolute values of the
        per-batch sums it adds: for sums of squares, of the entry itself. The
        sums of U[0, 1] float32 stimuli (multiples of 2**-24) involve no
        rounding, unweighted, and merge bitwise; their squares do not.
        """
        if type(other) is not type(self):
            raise ValueError(f"cannot merge {type(self).__name__} with {type(other).__name__}")
        for f in self.identity:
            if not _same(getattr(self, f), getattr(other, f)):
                raise ValueError(f"cannot merge results of {f} {getattr(self, f)!r} and {getattr(other, f)!r}")
        fields = {f: _add(f, getattr(self, f), getattr(other, f)) for f in self.summed}
        fields.update({f: getattr(self, f) for f in self.identity})
        return type(self)(**fields, n=self.n + other.n, meta=_merge_meta(self.meta, other.meta))

    def save(self, path) -> None:
        """Save to ``path`` (written atomically; :meth:`load` reads it back)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        _stream.save_atomic({"format": RESULT_FORMAT, "kind": self.kind, "fields": fields}, path)

    @classmethod
    def load(cls, path):
        """Read a result written by :meth:`save` (format 2 or 3); anything else raises a ValueError."""
        todo = "re-save the result with Result.save, or re-run it"
        d = load_torch(Path(path), "wna result file", todo)
        if not isinstance(d, dict) or "format" not in d or not isinstance(d.get("fields"), dict):
            raise ValueError(f"{path} is not a wna result file (it has no result format: Result.save did "
                             f"not write it); {todo}")
        if d["format"] not in READABLE_FORMATS:
            raise ValueError(f"{path} is a wna result of format {d['format']!r}; this wna reads formats "
                             f"{', '.join(map(str, READABLE_FORMATS))}: {todo}")
        if d.get("kind") != cls.kind:
            raise ValueError(f"{path} holds a {d.get('kind')!r} result, not {cls.kind!r}")
        return cls(**d["fields"])


def class_sums(x: torch.Tensor, labels: torch.Tensor, C: int, weights: torch.Tensor | None = None,
               squares: str | None = None):
    """Float64 sums of the rows of ``x`` ``(B, D)`` per label, ``(C, D)``; each row times ``weights[row]``.

    ``squares="per_class"`` also returns the per-label sums of the squared
    (weighted) rows ``(C, D)``; ``squares="total"`` the sum of the squared
    rows ``(D,)``. Rows are converted to float64 :data:`SUM_ROWS` at a time.
    """
    out = torch.zeros((C, x.shape[1]), dtype=torch.float64, device=x.device)
    sq = None
    if squares == "per_class":
        sq = torch.zeros_like(out)
    elif squares == "total":
        sq = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    elif squares is not None:
        raise ValueError(f"squares must be None, 'per_class' or 'total', got {squares!r}")
    for i in range(0, len(x), SUM_ROWS):
        xs = x[i:i + SUM_ROWS].to(torch.float64)
        if squares == "total":
            sq += (xs * xs).sum(0)
        if weights is not None:
            xs.mul_(weights[i:i + SUM_ROWS, None])
        out.index_add_(0, labels[i:i + SUM_ROWS], xs)
        if squares == "per_class":
            sq.index_add_(0, labels[i:i + SUM_ROWS], xs * xs)
    return out if squares is None else (out, sq)


def class_counts(labels: torch.Tensor, C: int) -> torch.Tensor:
    """How many labels equal each of 0..C-1 (int64; unlike bincount, no wait on a GPU)."""
    return torch.zeros(C, dtype=torch.int64, device=labels.device).index_add_(0, labels, torch.ones_like(labels))
