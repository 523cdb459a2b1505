"""Notebook parameters: their defaults, and the check of every profile value and override.

A notebook's parameters are the names assigned in its cell tagged
``parameters``; each default fixes what a value for it may be
(:func:`check`):

* ``None``: ``None``, or a value of the kind the profiles
  (``notebooks/profiles/*.yml``) give it (``n_train = None`` with
  ``n_train: 2000`` in ``smoke.yml``: an integer or ``None``); where no
  profile sets it, anything (the notebook decides what it means), except
  that a count (a name starting with ``n_``) takes an integer or ``None``;
* an int: an int; a float or numeric string with a whole value (``1e6``) is
  taken as that int;
* a float: an int or a float (numeric strings such as ``1e-3`` too), taken as a float;
* a bool: ``true`` or ``false`` only;
* a str: a str;
* a list: a list; when the default's items are all of one kind, each item
  must be a value for the default's first item (so ``[[1, 7]]`` for
  ``[[1, 7], [5, 6]]``); an empty default takes any list;
* a dict: a dict whose keys are among the default's, each value checked
  against the default's value for that key (a ``None`` there, like a ``None``
  default, by what the profiles give that key).

Integers are range-checked by name: a count (``n_*``), ``batch_size`` and
``*epochs`` must be at least 1, a seed (``seed``, ``*_seed``) at least 0.
``profile`` is set by the runner and cannot be given. A name the notebook
does not assign is refused, with the names it has.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

__all__ = ["ParameterError", "defaults", "cell_defaults", "check", "check_all", "describe"]


class ParameterError(ValueError):
    """A notebook parameter (in a profile or an override) that the notebook does not have or
    that does not fit its default's type."""


_SAFE = {"list": list, "range": range, "tuple": tuple, "dict": dict, "set": set, "float": float,
         "int": int, "str": str, "bool": bool}
_UNKNOWN = object()  # a default that is not a literal: any value goes
_PROFILES = ("smoke", "ci", "paper")
_cache: dict[tuple, dict] = {}


class _OrNone:
    """A ``None`` default that the profiles set to values like ``template``."""

    def __init__(self, template):
        self.template = template

    def __repr__(self) -> str:
        return "None"


def defaults(path: Path) -> dict:
    """``{name: what a value must fit}`` for the notebook at ``path``, in order: its
    ``parameters`` cell's defaults, a ``None`` refined by the profiles next to it."""
    path = Path(path)
    observed: dict[str, list] = {}
    for profile in _PROFILES:
        f = path.parent / "profiles" / f"{profile}.yml"
        if f.is_file():
            import yaml

            entry = (yaml.safe_load(f.read_text()) or {}).get(path.stem) or {}
            for k, v in (entry.items() if isinstance(entry, dict) else ()):
                observed.setdefault(k, []).append(v)
    out = {k: _refine(v, observed.get(k, [])) for k, v in cell_defaults(path).items()}
    for k, v in out.items():
        if v is None and k.startswith("n_"):  # a count no profile sets: an integer or None
            out[k] = _OrNone(0)
    return out


def _at_least(name: str) -> int | None:
    """The smallest integer a parameter of this name takes (None: no bound)."""
    if name.startswith("n_") or name == "batch_size" or name.endswith("epochs"):
        return 1
    if name == "seed" or name.endswith("_seed"):
        return 0
    return None


def _refine(default, seen: list):
    """``default``, with each ``None`` in it turned into ``_OrNone`` of the kind of ``seen``."""
    if default is None:
        values = [v for v in seen if v is not None]
        kinds = {_kind(v) for v in values}
        if not values or (len(kinds) > 1 and kinds != {"int", "float"}):
            return None
        return _OrNone(0.0 if kinds == {"int", "float"} else _refine_any(values[0]))
    if isinstance(default, dict):
        return {k: _refine(v, [s[k] for s in seen if isinstance(s, dict) and k in s])
                for k, v in default.items()}
    return default


def _refine_any(value):
    """A template from a profile's value: its Nones (in a dict) stay open."""
    if isinstance(value, dict):
        return {k: _refine(v, []) if v is None else v for k, v in value.items()}
    return value


def cell_defaults(path: Path) -> dict:
    """``{name: default}`` of the notebook's ``parameters`` cell, in order (``_UNKNOWN`` for a
    default that is not a plain value)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        import jupytext

        cells = [c for c in jupytext.read(path).cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        if not cells:
            raise ValueError(f"{path.name} has no cell tagged 'parameters'")
        out = {}
        for node in ast.parse(cells[0].source).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and node.value is not None:
                        out[target.id] = _value(node.value)
        _cache[key] = out
    return dict(_cache[key])


def _value(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    try:  # list(range(10)) and the like, with a few builtins and nothing else
        return eval(compile(ast.Expression(node), "<parameters>", "eval"), {"__builtins__": _SAFE}, {})
    except Exception:
        return _UNKNOWN


def describe(default) -> str:
    """What :func:`check` accepts for ``default``, in words."""
    if default is None or default is _UNKNOWN:
        return "any value"
    if isinstance(default, _OrNone):
        return f"{describe(default.template)} or null"
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (list, tuple)):
        item = _item(default)
        return "a list" + ("" if item is _UNKNOWN else f" of {_plural(describe(item))}")
    if isinstance(default, dict):
        return f"a mapping with keys among {sorted(map(str, default))}"
    return f"a {type(default).__name__}"


def _plural(words: str) -> str:
    for a in ("an ", "a "):
        if words.startswith(a):
            head, _, rest = words[len(a):].partition(" ")
            return f"{head}s" + (f" {rest}" if rest else "")
    return words


def _item(default):
    """The default's item to check a list's items against (``_UNKNOWN``: no rule)."""
    if not default:
        return _UNKNOWN
    kinds = {_kind(v) for v in default}
    if kinds == {"int", "float"}:
        return 0.0
    if len(kinds) != 1 or None in default:
        return _UNKNOWN
    return default[0]


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return type(v).__name__


class _Misfit(Exception):
    def __init__(self, where: str, value, default):
        self.where, self.value, self.default = where, value, default


def _number(value):
    """A number from an int, float or numeric string; None if it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def _fit(value, default, where: str = ""):
    """``value`` as a value for ``default`` (ints for int defaults and so on), or raise _Misfit."""
    if default is None or default is _UNKNOWN:
        return value
    if isinstance(default, _OrNone):
        try:
            return None if value is None else _fit(value, default.template, where)
        except _Misfit as bad:
            raise _Misfit(bad.where, bad.value, default if bad.where == where else bad.default) from None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise _Misfit(where, value, default)
    if isinstance(default, (int, float)):
        x = _number(value)
        if x is None or not math.isfinite(x):
            raise _Misfit(where, value, default)
        if isinstance(default, float):
            return float(x)
        if isinstance(x, float):
            if not x.is_integer():
                raise _Misfit(where, value, default)
            return int(x)
        return x
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise _Misfit(where, value, default)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise _Misfit(where, value, default)
        item = _item(default)
        return [_fit(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise _Misfit(where, value, default)
        out = {}
        for k, v in value.items():
            if k not in default:
                raise ParameterError(f"key {k!r}{f' of {where}' if where else ''} is not one of "
                                     f"{sorted(map(str, default))}")
            out[k] = _fit(v, default[k], f"{where}[{k!r}]")
        return out
    return value


def check(notebook: str, name: str, value, params: dict, source: str):
    """``value`` for parameter ``name`` of ``notebook`` (defaults ``params``), converted as the
    rules above say; raises :class:`ParameterError` naming ``source`` (where it came from)."""
    if name == "profile":
        raise ParameterError(f"{source}: 'profile' is set by the runner (choose it with --profile), "
                             f"not a parameter to give")
    if name not in params:
        import difflib

        known = [n for n in params if n != "profile"]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ParameterError(f"{source}: notebook {notebook} has no parameter {name!r}{hint}; "
                             f"its parameters are: {', '.join(known)}")
    default = params[name]
    try:
        value = _fit(value, default)
    except _Misfit as bad:
        part = f"{name}{bad.where}"
        raise ParameterError(
            f"{source}: notebook {notebook}'s parameter {name} takes {describe(default)} "
            f"(its default is {default!r}), but {part} is {bad.value!r} ({type(bad.value).__name__}, "
            f"expected {describe(bad.default)})") from None
    except ParameterError as exc:
        raise ParameterError(f"{source}: notebook {notebook}'s parameter {name}: {exc}") from None
    low = _at_least(name)
    if low is not None and isinstance(value, int) and not isinstance(value, bool) and value < low:
        raise ParameterError(f"{source}: notebook {notebook}'s parameter {name} must be at least {low}, "
                             f"got {value}")
    return value


def check_all(path: Path, values: dict, source: str) -> dict:
    """Every ``{name: value}`` of ``values`` checked against the notebook at ``path``; the
    converted values."""
    params = defaults(path)
    return {k: check(Path(path).stem, k, v, params, source) for k, v in values.items()}
