"""Checks of what users hand the engine: seeds, devices, model outputs, files read back.

Each raises one ``ValueError`` that names the bad value, what was expected and
what to do, instead of a silently wrong answer or a raw error from deep
inside torch or numpy.

**Outputs that are not logits** (:func:`check_logits`, on the first batch a
process computes). The probe reads a model's outputs as logits: the argmax of
``(B, C)``, or for one column class 1 when the value is > 0. With the default
``outputs="auto"``:

- integer or boolean outputs (class indices, rounded values) are refused,
  whatever the option;
- outputs that *look like* probabilities are suspect: ``C > 1`` columns all
  within [0, 1] whose every row sums to 1 within 1e-4 (a softmax), or one
  column all within [0, 1] with some value in (0, 0.5] (a sigmoid: read as
  a logit such a value is class 1, read as a probability class 0). Not
  suspect: outputs that are all exactly 0 or 1 (one-hot rows, indicators)
  and ``C > 1`` rows that are all the same (constant logits such as
  ``(1, 0)``): both readings decide alike on them;
- a suspect batch is refused unless the model's output comes straight out
  of an affine operation (a linear or convolutional layer, a matrix product,
  an addition, a sum or mean, a scaling, seen through views and copies) on
  an autograd pass of two stimuli: then these are logits that happen to lie
  in [0, 1], such as a linear observer's (:func:`output_op`). A sigmoid or
  softmax (or anything else last, or a model that leaves no autograd graph)
  is refused.

A logit model refused so (its last operation is not affine, say) passes with
``outputs="logits"``, which skips these checks (integers are still refused).
``outputs="probabilities"`` reads the outputs as probabilities
(:class:`ProbabilitiesAsLogits`): ``log p`` per class, or for one column
``logit(p)``, so class 1 exactly when ``p > 0.5``.
"""

from __future__ import annotations

import numbers
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

OUTPUTS = ("auto", "logits", "probabilities")
SUMS_TO_ONE = 1e-4  # a row of C > 1 outputs within this of 1 sums to 1 (a softmax)
_TINY = torch.finfo(torch.float64).tiny


def check_seed(seed) -> int:
    """``seed`` as an int: Python or numpy integers >= 0 (not bool, float, str or None)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        integral = isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
        kind = "" if integral else f" ({type(seed).__name__})"
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}{kind}")
    return int(seed)


def available_devices() -> list[str]:
    """The devices this machine has: ``cpu``, then ``cuda:0`` ... and ``mps`` where present."""
    have = ["cpu"]
    if torch.cuda.is_available():
        have += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        have.append("mps")
    return have


def check_device(device) -> torch.device:
    """``device`` as a :class:`torch.device` that exists on this machine; else one clear ValueError."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        d = None
    if d is not None:
        if d.type == "cpu":
            return d
        if d.type == "cuda" and torch.cuda.is_available() and (d.index is None
                                                               or d.index < torch.cuda.device_count()):
            return d
        if d.type == "mps" and "mps" in available_devices():
            return d
    raise ValueError(f"device {str(device)!r} is not available; this machine has: "
                     f"{', '.join(available_devices())}")


def check_writable(path, what: str = "file") -> Path:
    """``path`` can be written: not a folder, and its nearest existing folder takes a new file.

    Checked before any work, so a run is never lost to a path that could not
    be written at its end. Raises ``ValueError`` (``IsADirectoryError`` for a
    folder) naming ``what`` and the path.
    """
    import os
    import tempfile

    p = Path(path).expanduser()
    if p.is_dir():
        example = p / ("checkpoint.pt" if "checkpoint" in what else "result.pt")
        raise IsADirectoryError(f"{what} {path} is a folder; give a file path (e.g. {example})")
    folder = p.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{what} {path} cannot be written: {folder} is a file, not a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{what} {path} cannot be written: the file is read-only")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"{what} {path} cannot be written: no new file can be made in {folder} "
                         f"({exc.strerror or exc})") from None
    return p


def check_outputs_option(outputs) -> str:
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
    return outputs


def _refuse_integers(out: torch.Tensor) -> None:
    if not out.is_floating_point():
        raise ValueError(f"the model returned {out.dtype} outputs, but the probe expects float logits "
                         "(B, C), or one logit column for a binary observer (class 1 when > 0): return "
                         "the logits, not class indices or rounded values")


# autograd ops (names without "Backward<n>") after which an output is a logit, and views and copies
AFFINE = ("Addmm", "Mm", "Mv", "Bmm", "Baddbmm", "Matmul", "Linear", "Convolution", "Add", "Sub", "Mul",
          "Sum", "Mean", "Neg")
VIEWS = ("View", "UnsafeView", "Reshape", "ReshapeAlias", "Squeeze", "Unsqueeze", "Select", "Slice", "Clone",
         "ToCopy", "Expand", "Alias", "T", "Transpose", "Permute", "AsStrided", "Index")


def _op(fn) -> str:
    return re.sub(r"Backward\d*$", "", fn.name())


def output_op(model, x: torch.Tensor) -> str | None:
    """The autograd operation that made ``model``'s output on the first two rows of ``x``, looking
    through views and copies (``"Addmm"`` for a final linear layer, ``"Sigmoid"``, ...); None when
    the model runs no autograd graph (or fails on a stimulus that requires grad)."""
    for grad_input in (True, False):
        try:
            with torch.inference_mode(False), torch.enable_grad():
                xi = x[:2].clone()
                if grad_input and xi.is_floating_point():
                    xi.requires_grad_(True)
                out = model(xi)
        except Exception:  # noqa: BLE001 - an in-place op on the input, say: try without its grad
            continue
        fn = getattr(out, "grad_fn", None)
        while fn is not None and _op(fn) in VIEWS:
            fn = next((f for f, _ in fn.next_functions if f is not None), None)
        if fn is not None:
            return _op(fn)
    return None


def _suspect(o: torch.Tensor) -> str | None:
    """"softmax" or "sigmoid" when outputs look like probabilities (module docstring), else None."""
    if not bool(((o >= 0) & (o <= 1)).all()) or bool(((o == 0) | (o == 1)).all()):
        return None
    if o.ndim == 2 and o.shape[1] > 1:
        sums_to_one = float((o.double().sum(1) - 1).abs().max()) <= SUMS_TO_ONE
        return "softmax" if sums_to_one and not bool((o == o[:1]).all()) else None
    return "sigmoid" if bool(((o > 0) & (o <= 0.5)).any()) else None


def check_logits(out: torch.Tensor, outputs: str = "auto", model=None, x: torch.Tensor | None = None) -> None:
    """Refuse outputs that are not logits (the rule: module docstring). ``model`` and its
    stimuli ``x``: to clear suspect outputs that come out of an affine operation."""
    _refuse_integers(out)
    if outputs != "auto" or len(out) == 0:
        return
    kind = _suspect(out.detach())
    if kind is None:
        return
    op = None if model is None or x is None else output_op(model, x)
    if op in AFFINE:
        return
    last = (f"its last operation is {op.lower()}" if op is not None
            else "it leaves no autograd graph to show a final linear layer")
    if kind == "softmax":
        raise ValueError(
            f"the model's outputs look like probabilities (all {out.shape[1]} columns in [0, 1], every row of "
            f"the first batch summing to 1; {last}), but the probe expects logits: drop the final softmax, or "
            "pass outputs='probabilities' to read them as probabilities; if these are logits, pass "
            "outputs='logits'")
    raise ValueError(
        f"the model's single output column looks like a probability (every value of the first batch in "
        f"[0, 1], some in (0, 0.5]; {last}), but the probe expects a logit (class 1 when > 0) and would put "
        "those stimuli in class 1: drop the final sigmoid, return p - 0.5 (a threshold at 0.5), or pass "
        "outputs='probabilities'; if these are logits, pass outputs='logits'")


class ProbabilitiesAsLogits(torch.nn.Module):
    """``model`` whose outputs are probabilities, read as float64 logits: ``log p`` per class
    ``(B, C)``, or ``logit(p) = log p - log(1 - p)`` for one column (class 1 exactly when
    ``p > 0.5``). Probabilities 0 and 1 give finite logits (clamped at the smallest float64);
    values outside [0, 1] are refused (on a GPU they become NaN, refused as non-finite)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        p = self.model(x)
        if not isinstance(p, torch.Tensor):
            return p  # the engine's output check names the problem
        _refuse_integers(p)
        q = p.to(torch.float64)
        outside = (q < 0) | (q > 1)
        if q.device.type == "cpu":
            if bool(outside.any()):
                raise ValueError(f"outputs='probabilities', but the model returned values outside [0, 1] "
                                 f"(from {float(q.min()):.4g} to {float(q.max()):.4g})")
        else:
            q = q.masked_fill(outside, float("nan"))
        if q.ndim == 1 or q.shape[1] == 1:
            return q.clamp_min(_TINY).log() - (1 - q).clamp_min(_TINY).log()
        return q.clamp_min(_TINY).log()


def _reason(path: Path, exc: BaseException) -> str:
    text = str(exc)
    if (isinstance(exc, EOFError) or "central directory" in text or "zip archive" in text
            or not zipfile.is_zipfile(path)):  # torch.save writes a zip archive
        return "truncated, or not written by torch.save"
    if isinstance(exc, pickle.UnpicklingError) and "Weights only" in text:
        return "it holds objects other than tensors and plain data"
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else 'unreadable'}"


def load_torch(path, what: str, todo: str, weights_only: bool = True):
    """``torch.load(path)`` on the CPU; a truncated or foreign file raises one ValueError naming
    ``path``, ``what`` it should have been and ``todo`` (a missing file: FileNotFoundError; a
    directory: IsADirectoryError)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a {what}: pass the path of a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ValueError(f"{path} is not a readable {what} ({_reason(path, exc)}); {todo}") from None
