"""Results of the engine's estimators: the :class:`Result` base (exact merges, save/load) and the
per-class float64 sums every estimator of classification images uses. Re-exported by
:mod:`wna.engine`, where they are documented for users."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import torch

from . import _stream

RESULT_FORMAT = 2
SUM_ROWS = 1024  # rows converted to float64 at a time: bounded memory for large stimuli


def _merge_meta(a: dict, b: dict) -> dict:
    """Meta of two merged results: batches joined (refused if the same stimuli appear twice)."""
    m = dict(a)
    for k in ("rechecked", "resumed_batches"):
        if k in a or k in b:
            m[k] = int(a.get(k, 0)) + int(b.get(k, 0))
    same_run = all(a.get(k) == b.get(k) for k in ("seed", "batch_size", "n_samples"))
    if same_run and "batches" in a and "batches" in b:
        both = set(a["batches"]) & set(b["batches"])
        if both:
            raise ValueError(f"both results hold batches {sorted(both)[:5]} of seed {a.get('seed')}: "
                             "merging would count the same stimuli twice")
        m["batches"] = sorted(set(a["batches"]) | set(b["batches"]))
    else:
        m["runs"] = a.get("runs", [_run_of(a)]) + b.get("runs", [_run_of(b)])
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


def _run_of(meta: dict) -> dict:
    return {k: meta.get(k) for k in ("seed", "batch_size", "n_samples", "batches")}


class Result:
    """Base of every estimator's result (a dataclass): summed tensors, ``n``, identity, ``meta``.

    Subclasses name ``summed`` (tensor fields that add when merging; None
    stays None) and ``identity`` (fields that must be equal to merge).
    """

    kind: ClassVar[str] = "result"
    summed: ClassVar[tuple[str, ...]] = ()
    identity: ClassVar[tuple[str, ...]] = ()

    def merge(self, other: "Result") -> "Result":
        """Combine the results of disjoint shards or runs (exact: the sums add)."""
        if type(other) is not type(self):
            raise ValueError(f"cannot merge {type(self).__name__} with {type(other).__name__}")
        for f in self.identity:
            if not _same(getattr(self, f), getattr(other, f)):
                raise ValueError(f"cannot merge results of {f} {getattr(self, f)!r} and {getattr(other, f)!r}")
        fields = {}
        for f in self.summed:
            a, b = getattr(self, f), getattr(other, f)
            if a is not None and b is not None and a.shape != b.shape:
                raise ValueError(f"cannot merge {f} of shape {tuple(a.shape)} and {tuple(b.shape)}")
            fields[f] = None if a is None or b is None else a + b
        fields.update({f: getattr(self, f) for f in self.identity})
        return type(self)(**fields, n=self.n + other.n, meta=_merge_meta(self.meta, other.meta))

    def save(self, path) -> None:
        """Save to ``path`` (written atomically; :meth:`load` reads it back)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        _stream.save_atomic({"format": RESULT_FORMAT, "kind": self.kind, "fields": fields}, path)

    @classmethod
    def load(cls, path):
        d = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or d.get("format") != RESULT_FORMAT:
            raise ValueError(f"{path} is not a result file of format {RESULT_FORMAT}")
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
